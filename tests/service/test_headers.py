"""Every response carries the security headers: the API's JSON and its errors, the OpenAPI document, ``/docs`` and
its files, the dashboard's pages, data and files, Flask's own errors and a crash."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from factories import xor
from flask import Flask
from flask.testing import FlaskClient

from trainyard.service.app import create_app
from trainyard.service.config import Settings
from trainyard.service.headers import DASHBOARD_POLICY, DEFAULT_POLICY, DOCS_POLICY


@pytest.fixture
def app(url: str, tmp_path) -> Iterator[Flask]:
    app = create_app(Settings(data_dir=tmp_path / "data", database_url=url, broker_url="memory://"))

    @app.get("/crash")  # a bug: Flask's handler answers 500
    def crash() -> None:
        raise RuntimeError("a bug")

    yield app
    app.extensions["trainyard"].engine.dispose()


def _logged_in(app: Flask, token: str) -> FlaskClient:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)[1]
    assert client.post("/login", data={"token": token, "csrf": csrf}).status_code == 303
    return client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_kind_of_response_has_the_security_headers(app, tokens, caplog) -> None:
    anonymous = app.test_client()
    browser = _logged_in(app, tokens["write"])
    api = {"headers": _bearer(tokens["write"])}
    run_id = anonymous.post("/api/runs", json=xor(), **api).get_json()["id"]
    # (client, method, path, request options, status, policy)
    cases = [
        (anonymous, "GET", "/api/runs", api, 200, DEFAULT_POLICY),
        (anonymous, "GET", f"/api/runs/{run_id}/epochs", api, 200, DEFAULT_POLICY),
        (anonymous, "GET", "/api/runs", {}, 401, DEFAULT_POLICY),
        (anonymous, "GET", "/api/runs/" + "0" * 32, api, 404, DEFAULT_POLICY),
        (anonymous, "POST", "/api/runs", {"json": {"name": "x"}, **api}, 422, DEFAULT_POLICY),
        (anonymous, "GET", "/healthz", {}, 200, DEFAULT_POLICY),
        (anonymous, "GET", "/openapi.json", {}, 200, DEFAULT_POLICY),
        (anonymous, "DELETE", "/openapi.json", {}, 405, DEFAULT_POLICY),
        (anonymous, "GET", "/nowhere", {}, 404, DEFAULT_POLICY),
        (anonymous, "GET", "/crash", {}, 500, DEFAULT_POLICY),
        (anonymous, "GET", "/docs", {}, 200, DOCS_POLICY),
        (anonymous, "GET", "/docs/docs.js", {}, 200, DEFAULT_POLICY),
        (anonymous, "GET", "/docs/static/swagger-ui-bundle.js", {}, 200, DEFAULT_POLICY),
        (anonymous, "GET", "/docs/static/swagger-ui.css", {}, 200, DEFAULT_POLICY),
        (anonymous, "GET", "/login", {}, 200, DASHBOARD_POLICY),
        (anonymous, "GET", "/runs", {}, 302, DASHBOARD_POLICY),
        (anonymous, "GET", "/ui/data/poll?runs=x", {}, 401, DEFAULT_POLICY),
        (browser, "GET", "/runs", {}, 200, DASHBOARD_POLICY),
        (browser, "GET", f"/runs/{run_id}", {}, 200, DASHBOARD_POLICY),
        (browser, "GET", "/runs/" + "0" * 32, {}, 404, DASHBOARD_POLICY),
        (browser, "GET", f"/ui/data/poll?runs={run_id}", {}, 200, DEFAULT_POLICY),
        (browser, "GET", f"/ui/data/runs/{run_id}/export.csv", {}, 200, DEFAULT_POLICY),
        (browser, "GET", "/ui/static/dashboard.css", {}, 200, DASHBOARD_POLICY),
        (browser, "GET", "/ui/vendor/plotly.min.js", {}, 200, DASHBOARD_POLICY),
    ]
    with caplog.at_level("CRITICAL"):  # the crash's traceback is logged, as it should be; not here
        for client, method, path, options, status, policy in cases:
            with client.open(path, method=method, **options) as response:
                where = f"{method} {path}"
                assert response.status_code == status, where
                assert response.headers["X-Content-Type-Options"] == "nosniff", where
                assert response.headers["X-Frame-Options"] == "DENY", where
                assert response.headers["Content-Security-Policy"] == policy, where
                assert "frame-ancestors 'none'" in policy
                assert response.headers["Referrer-Policy"] in ("same-origin", "no-referrer"), where
                if response.mimetype == "text/html":
                    assert response.headers["Cache-Control"] == "no-store", where


def test_the_policies_allow_nothing_from_elsewhere_and_no_inline_script() -> None:
    for policy in (DASHBOARD_POLICY, DOCS_POLICY, DEFAULT_POLICY):
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
        assert "http" not in policy and "*" not in policy and "unsafe-eval" not in policy
        assert "'unsafe-inline'" not in directives.get("script-src", "")
    assert DEFAULT_POLICY.startswith("default-src 'none';") and DOCS_POLICY.startswith("default-src 'none';")

