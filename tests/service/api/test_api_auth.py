"""Tokens: every /api endpoint needs one, with a scope high enough; TRAINYARD_AUTH=off needs none."""

from __future__ import annotations

import logging
import re

import pytest

RUN = "0" * 32

#: Every /api endpoint: method, path, JSON body (None: no body), scope it needs.
ENDPOINTS = [
    ("POST", "/api/runs", {"dataset": {"name": "xor"}}, "write"),
    ("GET", "/api/runs", None, "read"),
    ("GET", f"/api/runs/{RUN}", None, "read"),
    ("PATCH", f"/api/runs/{RUN}", {"name": "x"}, "write"),
    ("DELETE", f"/api/runs/{RUN}", None, "write"),
    ("POST", f"/api/runs/{RUN}/cancel", None, "write"),
    ("GET", f"/api/runs/{RUN}/epochs", None, "read"),
    ("GET", f"/api/runs/{RUN}/weights", None, "read"),
    ("GET", f"/api/runs/{RUN}/export", None, "read"),
    ("POST", "/api/runs/track", {"name": "by hand"}, "write"),
    ("POST", f"/api/runs/{RUN}/epochs", [{"epoch": 1}], "write"),
    ("POST", f"/api/runs/{RUN}/weights?epoch=1", None, "write"),
    ("POST", f"/api/runs/{RUN}/finish", {"status": "succeeded"}, "write"),
    ("GET", "/api/projects", None, "read"),
    ("POST", "/api/datasets", None, "write"),
    ("GET", "/api/datasets", None, "read"),
    ("GET", f"/api/datasets/{RUN}", None, "read"),
    ("GET", f"/api/compare?runs={RUN}", None, "read"),
    ("POST", "/api/sweeps", {"name": "s"}, "write"),
    ("GET", "/api/sweeps", None, "read"),
    ("GET", f"/api/sweeps/{RUN}", None, "read"),
    ("POST", f"/api/sweeps/{RUN}/cancel", None, "write"),
]


def _call(client, method, path, body, headers):
    return client.open(path, method=method, json=body, headers=headers)


def test_every_api_route_declares_a_scope(app):
    api_rules = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/api")]
    assert len(api_rules) == len(ENDPOINTS)
    for rule in api_rules:
        assert getattr(app.view_functions[rule.endpoint], "required_scope", None) in {"read", "write"}, rule


def test_every_api_endpoint_is_listed_here(app):
    listed = {(method, path.replace(RUN, "<id>").partition("?")[0]) for method, path, _, _ in ENDPOINTS}
    routed = {
        (method, re.sub("<[^>]+>", "<id>", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert listed == routed


#: Authorization headers that carry no valid token.
BAD_HEADERS = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer    "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Token ty_abc"},
    {"Authorization": "Bearer ty_wrong"},
    {"Authorization": "Bearer " + "x" * 5000},
    {"Authorization": "Bearer \u00e9\u00e8"},
]


@pytest.mark.parametrize("method, path, body, scope", ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_missing_or_wrong_token_is_401(client, tokens, run_count, sent, assert_error, method, path, body, scope):
    for headers in BAD_HEADERS:
        response = _call(client, method, path, body, headers)

        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), headers
    assert run_count() == 0 and sent() == []


@pytest.mark.parametrize("method, path, body, scope", ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_revoked_token_is_401(client, tokens, assert_error, method, path, body, scope):
    assert_error(_call(client, method, path, body, {"Authorization": f"Bearer {tokens['revoked']}"}), 401)


@pytest.mark.parametrize(
    "method, path, body, scope",
    [e for e in ENDPOINTS if e[3] == "write"],
    ids=[f"{m} {p}" for m, p, _, s in ENDPOINTS if s == "write"],
)
def test_read_token_on_a_write_endpoint_is_403(
    client, tokens, run_count, sent, assert_error, method, path, body, scope
):
    assert_error(_call(client, method, path, body, {"Authorization": f"Bearer {tokens['read']}"}), 403, "forbidden")
    assert run_count() == 0 and sent() == []


@pytest.mark.parametrize("token", ["read", "write", "admin"])
@pytest.mark.parametrize("method, path, body, scope", ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_scopes_at_or_above_are_let_through(client, tokens, token, method, path, body, scope):
    response = _call(client, method, path, body, {"Authorization": f"Bearer {tokens[token]}"})

    allowed = ("read", "write", "admin").index(token) >= ("read", "write", "admin").index(scope)
    assert response.status_code not in (401, 403) if allowed else response.status_code == 403


def test_write_token_creates_a_run(client, tokens, sent):
    headers = {"Authorization": f"Bearer {tokens['write']}"}

    response = client.post("/api/runs", json={"dataset": {"name": "xor"}}, headers=headers)

    assert response.status_code == 201
    assert sent() == [("worker.tasks.train_run", [response.get_json()["id"]])]


def test_scheme_is_case_insensitive(client, tokens):
    assert client.get("/api/runs", headers={"Authorization": f"bearer {tokens['read']}"}).status_code == 200


def test_tokens_are_never_logged(client, tokens, caplog):
    caplog.set_level(logging.DEBUG)
    for token in tokens.values():
        client.get("/api/runs", headers={"Authorization": f"Bearer {token}"})
        client.post("/api/runs", json={"dataset": {"name": "xor"}}, headers={"Authorization": f"Bearer {token}"})

    assert not any(token in caplog.text for token in tokens.values())


class TestAuthOff:
    """With ``TRAINYARD_AUTH=off`` no token is needed, and a wrong one is ignored."""

    @pytest.fixture
    def auth_on(self) -> bool:
        return False

    def test_no_token_needed(self, client, sent):
        response = client.post("/api/runs", json={"dataset": {"name": "xor"}})

        assert response.status_code == 201
        run_id = response.get_json()["id"]
        assert client.get(f"/api/runs/{run_id}").status_code == 200
        assert client.patch(f"/api/runs/{run_id}", json={"name": "y"}).status_code == 200
        assert client.get("/api/runs", headers={"Authorization": "Bearer nonsense"}).status_code == 200
        assert client.delete(f"/api/runs/{run_id}").status_code == 204
        assert sent() == [("worker.tasks.train_run", [run_id])]
