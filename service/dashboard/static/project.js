// The project picker: choosing a project opens the page for it, the choice kept in the address (?project=);
// "all projects" leaves the parameter out.
"use strict";
(function () {
  for (const select of document.querySelectorAll("select[data-project-picker]")) {
    select.addEventListener("change", () => {
      select.disabled = !select.value; // a disabled field is not sent
      select.form.submit();
    });
  }
})();
