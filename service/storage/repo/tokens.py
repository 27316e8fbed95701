"""API tokens: only a token's SHA-256 is stored; the plaintext is shown once, when it is created."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from trainyard.service.storage.models import TOKEN_SCOPES, ApiToken, new_id, utcnow
from trainyard.service.storage.repo._common import _choice, _now

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

    Records the use in ``last_used_at``, at most once per :data:`LAST_USED_RESOLUTION`.
    """
    now = _now(now)
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_hash == _hash_token(token), ApiToken.revoked_at.is_(None))
    ).first()
    if row is not None and (row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION):
        row.last_used_at = now
        session.flush()
    return row


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
