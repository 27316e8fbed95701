"""The dashboard's logins: a browser's cookie holds a random secret, and only its SHA-256 is stored.

A session acts with its token's scope while the token is not revoked and until
it expires; logging out deletes it.  Rows are only added at a login, so that is
when the expired ones are deleted, and a token keeps at most
:data:`MAX_SESSIONS_PER_TOKEN` (its oldest end first): the table holds no more
than the logins of one lifetime, however long the service runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from trainyard.service.storage.models import ApiToken, BrowserSession
from trainyard.service.storage.repo._common import _now

#: Live sessions a token may have; a login beyond it ends that token's oldest.
MAX_SESSIONS_PER_TOKEN = 100

#: Deletes here name rows by id or time, never rows loaded in the session: nothing there to bring up to date.
_UNSYNCED = {"synchronize_session": False}


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def start_browser_session(
    *, session: Session, token_id: str, lifetime: dt.timedelta, now: dt.datetime | None = None
) -> str:
    """Start a session for the token ``token_id`` ending ``lifetime`` from now; the secret for the cookie.

    Deletes every expired session, and this token's oldest ones beyond
    :data:`MAX_SESSIONS_PER_TOKEN`.
    """
    if not isinstance(lifetime, dt.timedelta) or lifetime <= dt.timedelta(0):
        raise ValueError(f"lifetime must be a positive timedelta, not {lifetime!r}")
    now = _now(now)
    purge_browser_sessions(session=session, now=now)
    secret = secrets.token_urlsafe(32)
    key = _hash_secret(secret)
    session.add(BrowserSession(id=key, token_id=token_id, created_at=now, expires_at=now + lifetime))
    session.flush()
    surplus = (  # the token's other sessions, newest first, past the number it may keep besides this one
        select(BrowserSession.id)
        .where(BrowserSession.token_id == token_id, BrowserSession.id != key)
        .order_by(BrowserSession.created_at.desc(), BrowserSession.id)
        .offset(MAX_SESSIONS_PER_TOKEN - 1)
    )
    oldest = delete(BrowserSession).where(BrowserSession.id.in_(surplus.scalar_subquery()))
    session.execute(oldest, execution_options=_UNSYNCED)
    return secret


def browser_session_scope(*, session: Session, secret: str, now: dt.datetime | None = None) -> str | None:
    """The scope a session may act with: its token's, or None if it ended (logged out, expired, token revoked)."""
    if not isinstance(secret, str):
        return None
    return session.scalar(
        select(ApiToken.scope)
        .join(BrowserSession, BrowserSession.token_id == ApiToken.id)
        .where(
            BrowserSession.id == _hash_secret(secret),
            BrowserSession.expires_at > _now(now),
            ApiToken.revoked_at.is_(None),
        )
    )


def end_browser_session(*, session: Session, secret: str) -> bool:
    """Delete the session with this secret (logging out); whether there was one."""
    if not isinstance(secret, str):
        return False
    ended = delete(BrowserSession).where(BrowserSession.id == _hash_secret(secret))
    return session.execute(ended, execution_options=_UNSYNCED).rowcount > 0


def purge_browser_sessions(*, session: Session, now: dt.datetime | None = None) -> int:
    """Delete every expired session; how many there were."""
    ended = delete(BrowserSession).where(BrowserSession.expires_at <= _now(now))
    return session.execute(ended, execution_options=_UNSYNCED).rowcount
