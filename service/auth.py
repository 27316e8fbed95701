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
- **Sessions** keep the token's *id* and scope, never the token; every request
  looks the token up again by id, so revoking it logs the browser out.
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
from trainyard.service.storage.models import TOKEN_SCOPES

#: Scopes from least to most allowed.
SCOPES = TOKEN_SCOPES

SECRET_KEY_FILE = "secret_key"
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
    """The scope of the request's bearer token (``admin`` with auth off); 401 for none, or an unknown one."""
    if not services().settings.auth:
        return "admin"
    token = bearer_token()
    with transaction(read_only=True) as s:
        row = repo.find_token(session=s, token=token)
        found = None if row is None else (row.scope, row.id if repo.use_to_record(row) else None)
    if found is None:
        raise _unauthorized("unknown or revoked token")
    granted, unrecorded = found
    if unrecorded is not None:
        _record_use(unrecorded)
    return granted


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
    """Start a session for ``token`` if it is active; whether it was."""
    with transaction() as s:
        row = repo.verify_token(session=s, token=token.strip())
        found = None if row is None else (row.id, row.scope)
    if found is None:
        return False
    session.clear()  # a new session: nothing (and no CSRF value) from before the login survives
    session["token_id"], session["scope"] = found
    csrf_token()
    return True


def log_out() -> None:
    session.clear()


def session_scope() -> str | None:
    """The scope the session may act with: ``admin`` with auth off, its token's, or None (not logged in).

    The token is looked up by id on every call, so revoking it ends the session.
    """
    if not services().settings.auth:
        return "admin"
    token_id = session.get("token_id")
    if not isinstance(token_id, str):
        return None
    with transaction(read_only=True) as s:
        row = repo.get_active_token(session=s, token_id=token_id)
        scope = None if row is None else row.scope
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
        path.parent.mkdir(parents=True, exist_ok=True)
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
