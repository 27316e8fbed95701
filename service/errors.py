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

import difflib
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from flask import Flask, Response, jsonify, request
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from typing_extensions import TypedDict
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

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
    if isinstance(exc, RequestEntityTooLarge):
        message = too_large("body", request.content_length, request.max_content_length)
        return error_response(413, "too_large", message, [{"field": "body", "message": message}])
    headers = {"Allow": ", ".join(exc.valid_methods)} if isinstance(exc, MethodNotAllowed) and exc.valid_methods else {}
    return error_response(status, HTTP_CODES.get(status, f"http_{status}"), exc.description or exc.name, (), headers)


def too_large(what: str, size: int | None, limit: int | None) -> str:
    """What a 413 says: ``the body is 2,202,009 bytes (2.1 MiB); the limit is 1,048,576 bytes (1 MiB)``."""
    shown = "" if limit is None else f"; the limit is {_bytes(limit)}"
    return f"the {what} is {_bytes(size)}{shown}" if size else f"the {what} is larger than the limit{shown}"


def _bytes(size: int) -> str:
    return f"{size:,} bytes ({size / (1024 * 1024):.3g} MiB)"


def _whole_body(message: str) -> dict[str, str]:
    """An error of the whole document: its field is the path its message starts with (``"epochs: ..."``) or ``body``."""
    match = _FIELD_PREFIX.match(message)
    return {"field": match["field"], "message": match["message"]} if match else {"field": "body", "message": message}


def validation_fields(exc: ValidationError, model: type[BaseModel] | None = None) -> list[dict[str, str]]:
    """The errors of ``exc`` as ``[{"field", "message"}]`` with JSON paths.

    A check across fields (a model validator) reports no location; the spec's
    checks start their message with the field's path, which becomes the field.
    A field ``model`` does not have is an ``unknown field``, with the nearest
    one it has at that place when one is near (``did you mean "optimizer"?``).
    """
    fields = []
    for error, raw in zip(field_errors(exc), exc.errors()):
        if raw["type"] == "extra_forbidden":
            error = {"field": error["field"], "message": _unknown_field(model, error["field"])}
        fields.append(error if error["field"] else _whole_body(error["message"]))
    return fields


def _unknown_field(model: type[BaseModel] | None, path: str) -> str:
    parent, _, name = path.rpartition(".")
    known = [] if model is None else known_fields(model, parent.split(".") if parent else [])
    near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f'unknown field; did you mean "{near[0]}"?' if near else "unknown field"


def known_fields(model: type[BaseModel], path: Sequence[str]) -> list[str]:
    """The fields an object at ``path`` (JSON path parts, list positions included) of ``model`` may have: those of
    every variant a union allows there.  Read from the model's JSON schema."""
    schema = _json_schema(model)
    nodes = _variants(schema, schema)
    for part in path:
        children = []
        for node in nodes:
            if part in node.get("properties", {}):
                children.append(node["properties"][part])
            elif part.isdigit() and "items" in node:
                children.append(node["items"])
        nodes = [variant for child in children for variant in _variants(child, schema)]
    return list(dict.fromkeys(name for node in nodes for name in node.get("properties", {})))


@functools.lru_cache(maxsize=32)
def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def _variants(node: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """``node`` with its ``$ref`` followed, or each option of its union (``anyOf``, ``oneOf``)."""
    if "$ref" in node:
        return _variants(schema["$defs"][node["$ref"].rsplit("/", 1)[-1]], schema)
    options = node.get("anyOf") or node.get("oneOf")
    if options:
        return [variant for option in options for variant in _variants(option, schema)]
    return [node]


def invalid_body(exc: ValidationError, model: type[BaseModel] | None = None) -> ApiError:
    """The 422 of a body that does not validate as ``model``, naming every field at fault."""
    fields = validation_fields(exc, model)
    summary = "; ".join(f"{field['field']}: {field['message']}" for field in fields[:3])
    return ApiError(422, "invalid", f"invalid request body: {summary}", fields)


def _validation_error(exc: ValidationError) -> Response:
    return _api_error(invalid_body(exc))


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
