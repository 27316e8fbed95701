"""The dashboard's sessions end when they should: a copy of the cookie replayed after logging out, after the
session's lifetime or after the token's revocation gets the login page (a page) or a 401 (the pages' JSON)."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from trainyard.service.config import Settings
from trainyard.service.storage import repo
from trainyard.service.storage.models import BrowserSession

COOKIE = "trainyard_session"
HOURS = 2.0


@pytest.fixture
def settings(url: str, tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=url, broker_url="memory://", session_hours=HOURS)


def _cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None, "no session cookie"
    return cookie.value


def _replayed(app: Flask, value: str) -> FlaskClient:
    """A new browser holding a copy of the cookie ``value`` (as whoever kept one would)."""
    other = app.test_client()
    other.set_cookie(COOKIE, value)
    return other


def _assert_logged_out(client: FlaskClient, run_id: str) -> None:
    page = client.get("/runs")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")
    poll = client.get(f"/ui/data/poll?runs={run_id}")
    assert poll.status_code == 401 and poll.get_json()["error"]["code"] == "unauthorized"


def _assert_logged_in(client: FlaskClient, run_id: str) -> None:
    assert client.get("/runs").status_code == 200
    assert client.get(f"/ui/data/poll?runs={run_id}").status_code == 200


def test_the_cookie_replayed_after_logout_is_refused(app, client, logged_in, make_run) -> None:
    run_id = make_run()
    csrf = logged_in("read")
    kept = _cookie(client)
    _assert_logged_in(_replayed(app, kept), run_id)  # a copy works while the session lasts
    assert client.post("/logout", data={"csrf": csrf}).status_code == 303
    _assert_logged_out(client, run_id)
    _assert_logged_out(_replayed(app, kept), run_id)


def test_the_cookie_holds_the_sessions_secret_and_csrf_value_only(app, client, logged_in, tokens, Session) -> None:
    logged_in("admin")
    content = app.session_interface.get_signing_serializer(app).loads(_cookie(client))
    assert set(content) == {"sid", "csrf", "_permanent"}  # Flask's mark of a cookie that expires
    with Session() as s:
        token = repo.verify_token(session=s, token=tokens["admin"])
        assert token.id not in str(content) and tokens["admin"] not in str(content)


def test_a_session_past_its_lifetime_is_refused(app, client, logged_in, make_run, Session) -> None:
    run_id = make_run()
    logged_in("read")
    _assert_logged_in(client, run_id)
    with Session() as s, s.begin():  # the cookie stays as signed: only the server's row says it ended
        s.execute(update(BrowserSession).values(expires_at=repo.utcnow() - dt.timedelta(seconds=1)))
    _assert_logged_out(client, run_id)


def test_the_session_and_its_cookie_last_session_hours_from_the_login(client, tokens, csrf, Session) -> None:
    page = client.get("/login")
    before = repo.utcnow()
    response = client.post("/login", data={"token": tokens["read"], "csrf": csrf(page.get_data(as_text=True))})
    after = repo.utcnow()
    assert response.status_code == 303
    with Session() as s:
        row = s.scalars(select(BrowserSession)).one()
    lifetime = dt.timedelta(hours=HOURS)
    assert before + lifetime <= row.expires_at <= after + lifetime
    expires = client.get_cookie(COOKIE).expires
    assert expires is not None and abs(expires - row.expires_at) <= dt.timedelta(seconds=2)
    later = client.get("/runs")  # using the session does not extend the cookie
    assert later.status_code == 200 and "Set-Cookie" not in later.headers


def test_revoking_the_token_ends_its_sessions_and_their_copies(app, client, Session, csrf, make_run) -> None:
    run_id = make_run()
    with Session() as s, s.begin():
        token, row = repo.create_token(session=s, scope="write")
    page = client.get("/login")
    assert client.post("/login", data={"token": token, "csrf": csrf(page.get_data(as_text=True))}).status_code == 303
    kept = _cookie(client)
    _assert_logged_in(client, run_id)
    with Session() as s, s.begin():
        repo.revoke_token(session=s, token_id=row.id)
    _assert_logged_out(client, run_id)
    _assert_logged_out(_replayed(app, kept), run_id)


def test_logging_in_again_ends_the_previous_session(app, client, logged_in, make_run, Session) -> None:
    run_id = make_run()
    logged_in("read")
    first = _cookie(client)
    logged_in("write")
    _assert_logged_in(client, run_id)
    _assert_logged_out(_replayed(app, first), run_id)
    with Session() as s:
        assert s.scalar(select(func.count()).select_from(BrowserSession)) == 1
