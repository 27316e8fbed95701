"""The dashboard's sessions: a secret stored as its hash, ended by logging out, by expiry or by revoking the token,
and never more rows than the logins of one lifetime."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import func, select, text

from trainyard.service.storage import repo
from trainyard.service.storage.models import BrowserSession
from trainyard.service.storage.repo import browser_sessions

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def token(Session):
    """An active write token: ``(plaintext, id)``."""
    with Session() as s, s.begin():
        plaintext, row = repo.create_token(session=s, scope="write")
        return plaintext, row.id


def _start(Session, token_id: str, now: dt.datetime = T0, lifetime: dt.timedelta = HOUR) -> str:
    with Session() as s, s.begin():
        return repo.start_browser_session(session=s, token_id=token_id, lifetime=lifetime, now=now)


def _scope(Session, secret, now: dt.datetime = T0) -> str | None:
    with Session() as s:
        return repo.browser_session_scope(session=s, secret=secret, now=now)


def _count(Session) -> int:
    with Session() as s:
        return s.scalar(select(func.count()).select_from(BrowserSession))


def test_a_session_acts_with_its_tokens_scope_until_it_expires(Session, token):
    secret = _start(Session, token[1])
    assert _scope(Session, secret) == "write"
    assert _scope(Session, secret, now=T0 + HOUR - dt.timedelta(microseconds=1)) == "write"
    assert _scope(Session, secret, now=T0 + HOUR) is None
    assert _scope(Session, secret + "x") is None and _scope(Session, None) is None


def test_only_the_secrets_hash_is_stored(Session, engine, token):
    secret = _start(Session, token[1])
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM browser_sessions")).all()
    assert len(rows) == 1 and not any(secret in str(value) for value in rows[0])
    assert rows[0].id == hashlib.sha256(secret.encode()).hexdigest()


def test_ending_a_session_deletes_it(Session, token):
    kept, ended = _start(Session, token[1]), _start(Session, token[1])
    with Session() as s, s.begin():
        assert repo.end_browser_session(session=s, secret=ended)
        assert not repo.end_browser_session(session=s, secret=ended)
        assert not repo.end_browser_session(session=s, secret=None)
    assert _scope(Session, ended) is None and _scope(Session, kept) == "write"
    assert _count(Session) == 1


def test_revoking_the_token_ends_its_sessions(Session, token):
    secret = _start(Session, token[1])
    with Session() as s, s.begin():
        repo.revoke_token(session=s, token_id=token[1])
    assert _scope(Session, secret) is None


def test_a_login_deletes_every_expired_session(Session, token):
    with Session() as s, s.begin():
        other = repo.create_token(session=s, scope="read")[1].id
    for minutes in range(3):  # ending at T0 + 1 h, T0 + 1 h 10 min, T0 + 1 h 20 min
        _start(Session, other, now=T0 + dt.timedelta(minutes=10 * minutes))
    _start(Session, token[1], now=T0 + HOUR + dt.timedelta(minutes=10))  # the first two have ended
    assert _count(Session) == 2
    with Session() as s, s.begin():
        assert repo.purge_browser_sessions(session=s, now=T0 + 3 * HOUR) == 2
    assert _count(Session) == 0


def test_a_token_keeps_its_newest_sessions_up_to_the_limit(Session, token, monkeypatch):
    monkeypatch.setattr(browser_sessions, "MAX_SESSIONS_PER_TOKEN", 3)
    with Session() as s, s.begin():
        other = repo.create_token(session=s, scope="read")[1].id
    other_secret = _start(Session, other)
    secrets = [_start(Session, token[1], now=T0 + dt.timedelta(seconds=i)) for i in range(5)]
    assert [_scope(Session, secret) for secret in secrets] == [None, None, "write", "write", "write"]
    assert _scope(Session, other_secret) == "read"  # another token's are not counted
    assert _count(Session) == 4


def test_bad_lifetimes_are_refused(Session, token):
    for lifetime in (dt.timedelta(0), -HOUR, 12):
        with Session() as s, pytest.raises(ValueError, match="lifetime must be a positive timedelta"):
            repo.start_browser_session(session=s, token_id=token[1], lifetime=lifetime)
