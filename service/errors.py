"""One JSON shape for every failure, and the handlers that produce it.

Every error response is::

    {"error": {"code": "<short_code>", "message": "...", "fields": [{"field": "...", "message": "..."}]}}

with a 4xx status for anything a client sent, a 503 with ``Retry-After`` while
the database is unreachable (code ``unavailable``: a restart or failover) or
busy (code ``busy``: SQLite's write lock stayed taken past the API's busy
timeout), both worth trying again, and a 500 only for a bug, logged.
Views raise :class:`ApiError`; Flask's own HTTP errors (404 for an unknown
route, 405, 413 for a body over ``MAX_CONTENT_LENGTH``) and pydantic's
``ValidationError`` (422 with the fields' JSON paths) are converted here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from flask import Flask, Response, jsonify
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from typing_extensions import TypedDict
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from trainyard.service.storage.db import busy, unreachable
from trainyard.trainer.spec import field_errors

FieldError = Mapping[str, str]


class FieldFault(TypedDict):
    """One input at fault: a JSON path in the body (``optimizer.lr``) or a query parameter's name."""

    field: str
    message: str


class ErrorBody(TypedDict):
    """What went wrong: a short ``code`` (``not_found``, ``invalid``, ...), a message, the inputs at fault."""

    code: str
    message: str
    fields: list[FieldFault]


class Error(TypedDict):
    """Every error response's body."""

    error: ErrorBody

#: The ``Retry-After`` of a 503 while the database is unreachable.
RETRY_AFTER_SECONDS = 5

#: The ``Retry-After`` of a 503 while the database is busy: a write lock is held for moments, not for a restart.
BUSY_RETRY_AFTER_SECONDS = 1

#: Short codes of the HTTP errors Flask raises itself; others get ``http_<status>``.
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
}


#: A message that starts with a field's path: ``"early_stopping.monitor: needs held-out data"``.
_FIELD_PREFIX = re.compile(r"(?P<field>[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*): (?P<message>.+)", re.DOTALL)


class ApiError(Exception):
    """An error to send to the client: HTTP ``status``, a short ``code``, a ``message`` and the ``fields`` at fault."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = [dict(field) for field in fields]
        self.headers = dict(headers or {})


def invalid_parameter(name: str, message: str) -> ApiError:
    """A 400 naming the query parameter ``name``."""
    return ApiError(400, "invalid_parameter", f"{name}: {message}", [{"field": name, "message": message}])


def invalid_field(field: str, message: str) -> ApiError:
    """A 422 naming the body's field ``field`` (a JSON path such as ``dataset.upload``)."""
    return ApiError(422, "invalid", f"{field}: {message}", [{"field": field, "message": message}])


def not_found(message: str) -> ApiError:
    """A 404 with code ``not_found``."""
    return ApiError(404, "not_found", message)


def error_response(
    status: int, code: str, message: str, fields: Sequence[FieldError] = (), headers: Mapping[str, str] | None = None
) -> Response:
    """The JSON error response."""
    response = jsonify({"error": {"code": code, "message": message, "fields": [dict(f) for f in fields]}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)


def _http_error(exc: HTTPException) -> Response | HTTPException:
    status = exc.code
    if status is None or status < 400:  # not an error (a redirect): let Flask send it as it is
        return exc
    headers = {"Allow": ", ".join(exc.valid_methods)} if isinstance(exc, MethodNotAllowed) and exc.valid_methods else {}
    return error_response(status, HTTP_CODES.get(status, f"http_{status}"), exc.description or exc.name, (), headers)


def _whole_body(message: str) -> dict[str, str]:
    """An error of the whole document: its field is the path its message starts with (``"epochs: ..."``) or ``body``."""
    match = _FIELD_PREFIX.match(message)
    return {"field": match["field"], "message": match["message"]} if match else {"field": "body", "message": message}


def validation_fields(exc: ValidationError) -> list[dict[str, str]]:
    """The errors of ``exc`` as ``[{"field", "message"}]`` with JSON paths.

    A check across fields (a model validator) reports no location; the spec's
    checks start their message with the field's path, which becomes the field.
    """
    return [error if error["field"] else _whole_body(error["message"]) for error in field_errors(exc)]


def _validation_error(exc: ValidationError) -> Response:
    fields = validation_fields(exc)
    summary = "; ".join(f"{field['field']}: {field['message']}" for field in fields[:3])
    return error_response(422, "invalid", f"invalid request body: {summary}", fields)


def register_error_handlers(app: Flask) -> None:
    """Make every error of ``app`` a JSON error response."""

    def unexpected(exc: Exception) -> Response:
        if isinstance(exc, SQLAlchemyError) and busy(exc):
            app.logger.warning("the database is busy: %s", exc.orig or exc)
            message = "the database is busy with other writes; try again shortly"
            return error_response(503, "busy", message, headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)})
        if isinstance(exc, SQLAlchemyError) and unreachable(exc):
            app.logger.warning("the database is unreachable: %s", exc.orig or exc)
            message = "the database is unreachable; try again shortly"
            return error_response(503, "unavailable", message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        app.logger.exception("unexpected error")
        return error_response(500, "internal_error", "internal server error")

    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(ValidationError, _validation_error)
    app.register_error_handler(Exception, unexpected)
