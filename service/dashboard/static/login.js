// Trainyard dashboard: the one-click login link, /login#token=ty_... A URL's fragment is never sent to a server, so
// the token reaches no access log, proxy log or Referer header. This script takes it out of the address bar (and
// the history entry) at once, then posts it through the page's login form, with the form's CSRF value, as if it had
// been pasted. It also drops a refused ?token= from the address bar (the server has already refused it).
"use strict";
(function () {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const query = new URLSearchParams(window.location.search);
  if (!fragment.has("token") && !query.has("token")) return;
  const token = fragment.get("token");
  fragment.delete("token");
  query.delete("token");
  const search = query.toString();
  const hash = fragment.toString();
  window.history.replaceState(null, "", window.location.pathname + (search ? "?" + search : "") +
                                        (hash ? "#" + hash : ""));
  const form = document.getElementById("login-form");
  if (!token || !form) return;
  form.elements.namedItem("token").value = token;
  form.submit();
})();
