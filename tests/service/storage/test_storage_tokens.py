"""API tokens: random, hashed at rest, scoped, revocable."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import text

from trainyard.service.storage import repo

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


def test_create_and_verify(Session):
    with Session() as s, s.begin():
        plaintext, token = repo.create_token(session=s, scope="write", name="ci")
    assert plaintext.startswith("ty_") and len(plaintext) == 3 + 43
    assert (token.scope, token.name, token.last_used_at, token.revoked_at) == ("write", "ci", None, None)
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    with Session() as s, s.begin():
        found = repo.verify_token(session=s, token=plaintext, now=T0)
        assert found.id == token.id and found.scope == "write" and found.active
    with Session() as s:
        assert repo.list_tokens(session=s)[0].last_used_at == T0


def test_last_used_is_written_at_most_once_a_minute(Session):
    with Session() as s, s.begin():
        plaintext, token = repo.create_token(session=s, scope="read")
    for seconds, expected in ((0, 0), (30, 0), (60, 60), (61, 60), (200, 200)):
        with Session() as s, s.begin():
            repo.verify_token(session=s, token=plaintext, now=T0 + dt.timedelta(seconds=seconds))
        with Session() as s:
            assert repo.list_tokens(session=s)[0].last_used_at == T0 + dt.timedelta(seconds=expected)


def test_the_plaintext_is_stored_nowhere(Session, engine):
    with Session() as s, s.begin():
        plaintext, _ = repo.create_token(session=s, scope="admin", name="root")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM api_tokens")).all()
    dump = repr(rows)
    assert plaintext not in dump and plaintext[3:] not in dump and plaintext[3:20] not in dump


def test_wrong_and_revoked_tokens_are_refused(Session):
    with Session() as s, s.begin():
        plaintext, token = repo.create_token(session=s, scope="read")
        other, _ = repo.create_token(session=s, scope="read")
    with Session() as s, s.begin():
        for wrong in ("", "ty_", plaintext[:-1], plaintext + "x", plaintext.upper(), token.token_hash, token.id):
            assert repo.verify_token(session=s, token=wrong) is None
        assert repo.revoke_token(session=s, token_id=token.id) is True
    with Session() as s, s.begin():
        assert repo.verify_token(session=s, token=plaintext) is None
        assert repo.verify_token(session=s, token=other) is not None  # the other one still works
        revoked_at = repo.list_tokens(session=s)[0].revoked_at
        assert repo.revoke_token(session=s, token_id=token.id) is True  # again: still revoked, same time
        assert repo.revoke_token(session=s, token_id="0" * 32) is False
    with Session() as s:
        tokens = {t.id: t for t in repo.list_tokens(session=s)}
    assert tokens[token.id].revoked_at == revoked_at and not tokens[token.id].active


def test_tokens_are_unique_and_listed_oldest_first(Session):
    with Session() as s, s.begin():
        made = [repo.create_token(session=s, scope=scope) for scope in ("read", "write", "admin")]
    assert len({plaintext for plaintext, _ in made}) == 3
    with Session() as s:
        listed = repo.list_tokens(session=s)
    assert sorted(t.id for t in listed) == sorted(t.id for _, t in made)
    assert [t.created_at for t in listed] == sorted(t.created_at for t in listed)


def test_unknown_scope(Session):
    with Session() as s, s.begin():
        with pytest.raises(ValueError, match="scope must be one of read, write, admin"):
            repo.create_token(session=s, scope="root")
        assert repo.list_tokens(session=s) == []


def test_get_active_token(Session):
    with Session() as s, s.begin():
        _, kept = repo.create_token(session=s, scope="read")
        _, revoked = repo.create_token(session=s, scope="write")
        repo.revoke_token(session=s, token_id=revoked.id)
    with Session() as s:
        assert repo.get_active_token(session=s, token_id=kept.id).scope == "read"
        assert repo.get_active_token(session=s, token_id=revoked.id) is None
        assert repo.get_active_token(session=s, token_id="0" * 32) is None
