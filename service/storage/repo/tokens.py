"""API tokens: only a token's SHA-256 is stored; the plaintext is shown once, when it is created."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from trainyard.service.storage.models import TOKEN_SCOPES, ApiToken, new_id, utcnow
from trainyard.service.storage.repo._common import _choice, _now, _utc

#: Every API token starts with this, so a leaked one is easy to recognise (and to scan for).
TOKEN_PREFIX = "ty_"
#: ``verify_token`` writes ``last_used_at`` at most this often per token, not on every request.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(*, session: Session, scope: str, name: str | None = None) -> tuple[str, ApiToken]:
    """A new token: ``(plaintext, row)``.  The plaintext (``ty_`` + 43 random characters) is shown once:
    only its SHA-256 is stored."""
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        id=new_id(),
        name=name,
        token_hash=_hash_token(plaintext),
        scope=_choice(scope, TOKEN_SCOPES, "scope"),
        created_at=utcnow(),
    )
    session.add(token)
    session.flush()
    return plaintext, token


def verify_token(*, session: Session, token: str, now: dt.datetime | None = None) -> ApiToken | None:
    """The active token with this plaintext, or None (unknown or revoked).

    Records the use in ``last_used_at``, at most once per :data:`LAST_USED_RESOLUTION`: a write, so on SQLite
    it needs a transaction that may write; a read alone is :func:`find_token`.
    """
    now = _now(now)
    row = find_token(session=session, token=token)
    if row is not None and use_to_record(row, now=now):
        row.last_used_at = now
        session.flush()
    return row


def find_token(*, session: Session, token: str) -> ApiToken | None:
    """The active token with this plaintext, or None (unknown or revoked); records nothing."""
    return session.scalars(
        select(ApiToken).where(ApiToken.token_hash == _hash_token(token), ApiToken.revoked_at.is_(None))
    ).first()


def use_to_record(token: ApiToken, *, now: dt.datetime | None = None) -> bool:
    """Whether a use of ``token`` at ``now`` is to be recorded (:func:`record_token_use`): its ``last_used_at``
    is unset or :data:`LAST_USED_RESOLUTION` old."""
    return token.last_used_at is None or _now(now) - token.last_used_at >= LAST_USED_RESOLUTION


def record_token_use(*, session: Session, token_id: str, now: dt.datetime | None = None) -> bool:
    """Set the token's ``last_used_at`` to ``now`` unless it is less than :data:`LAST_USED_RESOLUTION` old (a
    request beside this one recorded it); whether it was set."""
    now = _now(now)
    recorded = session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= _utc(now - LAST_USED_RESOLUTION)),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return recorded.rowcount == 1


def get_active_token(*, session: Session, token_id: str) -> ApiToken | None:
    """The token with this id if it is not revoked, else None (a dashboard session re-checks its token so)."""
    token = session.get(ApiToken, token_id)
    return token if token is not None and token.active else None


def list_tokens(*, session: Session) -> list[ApiToken]:
    """Every token, revoked ones included, oldest first."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)))


def revoke_token(*, session: Session, token_id: str, now: dt.datetime | None = None) -> bool:
    """Revoke a token; False if there is no such token.  Revoking twice keeps the first ``revoked_at``."""
    token = session.get(ApiToken, token_id)
    if token is None:
        return False
    if token.revoked_at is None:
        token.revoked_at = _now(now)
        session.flush()
    return True
