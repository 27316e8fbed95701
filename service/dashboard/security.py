"""The dashboard's login, session and CSRF checks, and its secret key.

- **Secret key.** Flask signs the session cookie with ``SECRET_KEY``.  When
  ``TRAINYARD_SECRET_KEY`` is unset, :func:`persistent_secret_key` makes a
  random one once and keeps it in ``<data dir>/secret_key`` (mode 0600,
  created atomically: written to a private temporary file, then hard-linked
  into place, so of two processes starting at once exactly one creates it and
  the other reads it).  Every gunicorn worker and every restart thus share it.
- **Login.** A token is checked with ``repo.verify_token``; the session keeps
  the token's *id* and scope, never the token.  Every request looks the token
  up again by id: a revoked or deleted token logs the browser out.
- **CSRF.** Each session holds a random ``csrf`` value; every POST must send it
  back (form field ``csrf`` or header ``X-CSRF-Token``), compared in constant
  time.  The cookie is HttpOnly and SameSite=Lax besides.
- With ``TRAINYARD_AUTH=off`` nobody logs in and every page acts with scope
  ``admin``; CSRF is checked all the same.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from flask import session
from trainyard.service.auth import SCOPES
from trainyard.service.context import services, transaction
from trainyard.service.storage import repo

SECRET_KEY_FILE = "secret_key"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


def persistent_secret_key(data_dir: Path) -> str:
    """The secret key kept in ``data_dir/secret_key``, made (0600, atomically) on first use."""
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


def csrf_token() -> str:
    """The session's CSRF value (made on first use)."""
    value = session.get(CSRF_FIELD)
    if not value:
        value = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return value


def csrf_valid(sent: str | None) -> bool:
    """Whether ``sent`` is the session's CSRF value."""
    expected = session.get(CSRF_FIELD)
    return bool(expected and sent) and hmac.compare_digest(expected.encode(), sent.encode())


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


def current_scope() -> str | None:
    """The scope the request may act with: ``admin`` with auth off, the session token's, or None (not logged in).

    The token is looked up by id on every call, so revoking it ends the session.
    """
    if not services().settings.auth:
        return "admin"
    token_id = session.get("token_id")
    if not isinstance(token_id, str):
        return None
    with transaction() as s:
        row = repo.get_active_token(session=s, token_id=token_id)
        scope = None if row is None else row.scope
    if scope is None:
        session.clear()
    return scope


def allows(scope: str | None, needed: str) -> bool:
    """Whether ``scope`` includes ``needed`` (read < write < admin)."""
    return scope is not None and SCOPES.index(scope) >= SCOPES.index(needed)


def safe_next(target: str | None, default: str) -> str:
    """``target`` if it is a path on this site (no scheme, no host, not ``//``), else ``default``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    return default if parts.scheme or parts.netloc else target
