"""The security headers of every response, set in one place: :func:`init_app`, called by ``create_app``.

Every response (the API's JSON, ``/openapi.json``, ``/docs``, the dashboard,
errors, static files) gets:

- ``X-Content-Type-Options: nosniff``: a browser takes a response for what its
  ``Content-Type`` says, so no JSON answer or uploaded text is ever run as a
  script or shown as a page;
- framing refused, by ``X-Frame-Options: DENY`` and the policy's
  ``frame-ancestors 'none'``: no other site can show a page in a frame and
  trick clicks on it;
- ``Referrer-Policy: same-origin``: no address of this server goes to another site;
- a Content-Security-Policy saying what the response may load and run: the
  dashboard's pages (:data:`DASHBOARD_POLICY`), ``/docs``
  (:data:`DOCS_POLICY`), and for everything else nothing at all
  (:data:`DEFAULT_POLICY`), which is what a JSON answer or a file needs;
- and HTML pages ``Cache-Control: no-store``: they carry the session's CSRF
  value and the runs shown.

A header a view sets itself is kept (the login page's ``Referrer-Policy: no-referrer``).
"""

from __future__ import annotations

from flask import Flask, Response, request

#: The dashboard's pages: scripts, styles and images from this server only; no inline script; forms post here.
#: Inline styles are allowed for plotly.js, which styles its charts with style attributes.
DASHBOARD_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

#: ``/docs``: Swagger UI's files and its starting script from this server, the document fetched from here, images
#: also as data: URIs (the icons of its stylesheet). Swagger UI sets styles through the DOM, which needs no
#: 'unsafe-inline' (the browser test drives it under this policy: authorising, opening every operation, calling one).
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: Everything else (JSON, the document, scripts, stylesheets, downloads): were a browser to show it as a page,
#: nothing in it could load or run.
DEFAULT_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

#: The policies of the pages that load something, by endpoint (``blueprint.view``) or by blueprint.
_ENDPOINT_POLICIES = {"openapi.docs": DOCS_POLICY}
_BLUEPRINT_POLICIES = {"dashboard": DASHBOARD_POLICY}


def init_app(app: Flask) -> None:
    """Add the headers to every response of ``app``."""
    app.after_request(add_headers)


def policy() -> str:
    """The Content-Security-Policy of the current request's response."""
    endpoint = request.endpoint or ""
    return _ENDPOINT_POLICIES.get(endpoint) or _BLUEPRINT_POLICIES.get(request.blueprint or "", DEFAULT_POLICY)


def add_headers(response: Response) -> Response:
    """``response`` with the security headers it does not set itself."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", policy())
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        headers.setdefault("Cache-Control", "no-store")
    return response
