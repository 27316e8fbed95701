"""Bearer tokens on the API: ``Authorization: Bearer <token>``, with scopes read < write < admin.

Views say what they need with ``@requires("read")`` or ``@requires("write")``;
with ``TRAINYARD_AUTH=off`` (``settings.auth`` False) no token is needed.
Tokens are compared by hash (``repo.verify_token``) and never logged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import request
from trainyard.service.context import services, transaction
from trainyard.service.errors import ApiError
from trainyard.service.storage import repo
from trainyard.service.storage.models import TOKEN_SCOPES

#: Scopes from least to most allowed; a token may do what its scope and every lower one may.
SCOPES = TOKEN_SCOPES

F = TypeVar("F", bound=Callable[..., Any])

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="trainyard"'}


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers=_CHALLENGE)


def bearer_token() -> str:
    """The token of the request's ``Authorization: Bearer`` header; 401 when there is none."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("this endpoint needs an 'Authorization: Bearer <token>' header")
    return token


def authorize(scope: str) -> None:
    """Check that the request carries an active token with at least ``scope``; 401 or 403 otherwise."""
    if not services().settings.auth:
        return
    token = bearer_token()
    with transaction() as s:
        row = repo.verify_token(session=s, token=token)
        granted = None if row is None else row.scope
    if granted is None:
        raise _unauthorized("unknown or revoked token")
    if SCOPES.index(granted) < SCOPES.index(scope):
        raise ApiError(403, "forbidden", f"this needs a token with scope {scope!r}; this token has {granted!r}")


def requires(scope: str) -> Callable[[F], F]:
    """Decorate a view so it runs only for a token with at least ``scope`` (see :func:`authorize`)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authorize(scope)
            return view(*args, **kwargs)

        wrapper.required_scope = scope  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator
