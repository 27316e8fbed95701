"""Who may do what: API tokens, the dashboard's sessions and CSRF values, and scopes (read < write < admin).

Every view says what it needs with one decorator: ``@requires("read")`` for
the JSON API, whose clients send ``Authorization: Bearer <token>``, and
``@requires("write", via="session")`` for the dashboard, whose browser holds a
session cookie.  A token's scope allows what its scope and every lower one
allow.  With ``TRAINYARD_AUTH=off`` every request acts with scope ``admin``.
Failures are :class:`~trainyard.service.errors.ApiError`: 401 without valid
credentials, 403 when the scope is too low, 400 when a session's form lacks
its CSRF value; the dashboard renders them as pages.

- **Tokens** are compared by hash (``repo.find_token``) and never logged.  The
  check only reads; a token's ``last_used_at`` is written apart, at most once a
  minute, and skipped when another holds SQLite's write lock (a request that
  only reads then never waits for it).
- **Sessions** live in the database (``repo.start_browser_session``): the
  signed cookie holds only a random secret naming the session (and the CSRF
  value), never the token.  Every request looks the session and its token up
  again, so logging out (which deletes the session), its expiry
  (``TRAINYARD_SESSION_HOURS`` after the login, when the cookie expires too)
  and revoking the token each end it, whatever copy of the cookie is replayed.
- **CSRF**: each session holds a random value that every POST of it must send
  back (form field ``csrf`` or header ``X-CSRF-Token``), compared in constant
  time; the cookie is HttpOnly and SameSite=Lax besides.
- **The secret key** that signs the cookie is ``TRAINYARD_SECRET_KEY``, or one
  made once and kept in ``<data dir>/secret_key`` (:func:`persistent_secret_key`).
"""

from __future__ import annotations

import functools
import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from flask import current_app, g, request, session
from sqlalchemy.exc import SQLAlchemyError

from trainyard.service.context import services, transaction
from trainyard.service.errors import ApiError
from trainyard.service.storage import repo
from trainyard.service.storage.db import busy
from trainyard.service.storage.files import make_private_folder
from trainyard.service.storage.models import TOKEN_SCOPES

#: Scopes from least to most allowed.
SCOPES = TOKEN_SCOPES

SECRET_KEY_FILE = "secret_key"
#: The cookie's key holding the session's secret.
SESSION_KEY = "sid"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"

F = TypeVar("F", bound=Callable[..., Any])
Via = Literal["token", "session"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="trainyard"'}


def allows(granted: str | None, needed: str) -> bool:
    """Whether a request acting with scope ``granted`` (None: no credentials) may do what needs ``needed``."""
    return granted is not None and SCOPES.index(granted) >= SCOPES.index(needed)


# --------------------------------------------------------------------------- the decorator


def requires(scope: str, *, via: Via = "token") -> Callable[[F], F]:
    """Decorate a view so it runs only for a request allowed ``scope`` (see :func:`authorize`)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authorize(scope, via=via)
            return view(*args, **kwargs)

        wrapper.required_scope = scope  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def authorize(scope: str, *, via: Via = "token") -> None:
    """Check the request's credentials for ``scope`` and keep the scope granted in ``g.scope``.

    ``via="token"``: the ``Authorization: Bearer`` header.  ``via="session"``:
    the dashboard's session, whose POSTs must carry its CSRF value.

    Raises
    ------
    ApiError
        401 without valid credentials, 400 for a session's POST without its
        CSRF value, 403 when the scope granted is below ``scope``.
    """
    granted = g.scope = _token_scope() if via == "token" else session_scope()
    if granted is None:
        raise ApiError(401, "unauthorized", "log in to the dashboard first")
    if via == "session" and request.method == "POST":
        check_csrf()
    if not allows(granted, scope):
        raise ApiError(403, "forbidden", f"this needs a token with scope {scope!r}; this one has {granted!r}")


# --------------------------------------------------------------------------- tokens in the header


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers=_CHALLENGE)


def bearer_token() -> str:
    """The token of the request's ``Authorization: Bearer`` header; 401 when there is none."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("this endpoint needs an 'Authorization: Bearer <token>' header")
    return token


def _token_scope() -> str:
    """The scope of the request's bearer token (``admin`` with auth off), its id kept in ``g.token_id``; 401 for
    none, or an unknown one."""
    if not services().settings.auth:
        return "admin"
    token = bearer_token()
    with transaction(read_only=True) as s:
        row = repo.find_token(session=s, token=token)
        found = None if row is None else (row.scope, row.id, repo.use_to_record(row))
    if found is None:
        raise _unauthorized("unknown or revoked token")
    granted, g.token_id, unrecorded = found
    if unrecorded:
        _record_use(g.token_id)
    return granted


def current_token_id() -> str | None:
    """The id of the token the request came with (None with auth off, or from a dashboard session)."""
    return g.get("token_id")


def _record_use(token_id: str) -> None:
    """Write the token's ``last_used_at``; bookkeeping, skipped rather than waited for while SQLite's write lock
    is taken (a later request writes it)."""
    try:
        with transaction(wait=False) as s:
            repo.record_token_use(session=s, token_id=token_id)
    except SQLAlchemyError as exc:
        if not busy(exc):
            raise
        current_app.logger.info("token %s: its use is not recorded, the database is busy", token_id)


# --------------------------------------------------------------------------- the dashboard's sessions


def log_in(token: str) -> bool:
    """Start a session for ``token`` if it is active; whether it was.

    The session the browser had before, if any, ends: nothing of it (no CSRF value) survives the login.
    """
    settings = services().settings
    with transaction() as s:
        row = repo.verify_token(session=s, token=token.strip())
        if row is None:
            return False
        repo.end_browser_session(session=s, secret=session.get(SESSION_KEY))
        secret = repo.start_browser_session(session=s, token_id=row.id, lifetime=settings.session_lifetime)
    session.clear()
    session[SESSION_KEY] = secret
    session.permanent = True  # the cookie expires with the session (PERMANENT_SESSION_LIFETIME)
    csrf_token()
    return True


def log_out() -> None:
    """End the session: its row is deleted, so a copy of the cookie kept by anyone no longer logs in."""
    secret = session.get(SESSION_KEY)
    if secret is not None:
        with transaction() as s:
            repo.end_browser_session(session=s, secret=secret)
    session.clear()


def session_scope() -> str | None:
    """The scope the session may act with: ``admin`` with auth off, its token's, or None (not logged in).

    The session and its token are looked up on every call, so logging out, the
    session's expiry and revoking the token each end it.
    """
    if not services().settings.auth:
        return "admin"
    secret = session.get(SESSION_KEY)
    if not isinstance(secret, str):
        return None
    with transaction(read_only=True) as s:
        scope = repo.browser_session_scope(session=s, secret=secret)
    if scope is None:
        session.clear()
    return scope


def csrf_token() -> str:
    """The session's CSRF value (made on first use)."""
    value = session.get(CSRF_FIELD)
    if not value:
        value = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return value


def check_csrf() -> None:
    """400 unless the request carries the session's CSRF value (form field ``csrf`` or header ``X-CSRF-Token``)."""
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    expected = session.get(CSRF_FIELD)
    if not (expected and sent and hmac.compare_digest(expected.encode(), sent.encode())):
        raise ApiError(400, "csrf_failed", "the form's CSRF token is missing or wrong: reload the page and try again")


def safe_next(target: str | None, default: str) -> str:
    """``target`` if it is a path on this site (no scheme, no host, not ``//``), else ``default``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    return default if parts.scheme or parts.netloc else target


# --------------------------------------------------------------------------- the secret key


def persistent_secret_key(data_dir: Path) -> str:
    """The secret key kept in ``data_dir/secret_key``, made (0600) on first use.

    Made atomically: written to a private temporary file, then hard-linked
    into place, so of two processes starting at once exactly one creates it
    and the other reads it.  Every gunicorn worker and every restart thus
    share it.
    """
    path = Path(data_dir) / SECRET_KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _unusable(path, exc) from exc
    temporary = path.with_name(f".{SECRET_KEY_FILE}.{secrets.token_hex(8)}")
    try:
        make_private_folder(path.parent)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise _unusable(path, exc) from exc
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(48) + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)  # fails if another process linked its key first: then read that one
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)
    return _read_key(path)


def _unusable(path: Path, exc: OSError) -> RuntimeError:
    return RuntimeError(
        f"cannot keep the dashboard's secret key in {path} ({exc.strerror}): "
        "set TRAINYARD_SECRET_KEY, or make the data folder writable"
    )


def _read_key(path: Path) -> str:
    key = path.read_text().strip()
    if len(key) < 32:
        raise RuntimeError(f"{path} holds no usable secret key; delete it to make a new one")
    return key
