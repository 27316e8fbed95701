"""Reading what a client sent: JSON bodies into pydantic models, query parameters into typed values.

Every refusal is an :class:`~trainyard.service.errors.ApiError` (or a pydantic
``ValidationError``, which the error handlers make a 422) naming the field or
parameter at fault, so no client input reaches the database unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.routing import BaseConverter

from trainyard.service.errors import ApiError, invalid_parameter
from trainyard.service.storage.models import ID_PATTERN

M = TypeVar("M", bound=BaseModel)

#: Bound of integer query parameters: a 32-bit signed int, what every database's INTEGER column holds.
MAX_INT_PARAMETER = 2**31 - 1

_INTEGER = re.compile(r"-?[0-9]{1,10}")


class IdConverter(BaseConverter):
    """URL part ``<id:run_id>``: an id as :func:`~trainyard.service.storage.models.new_id` makes them (else 404)."""

    regex = ID_PATTERN


def _nul_paths(value: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    """The JSON paths of the strings (keys included) in ``value`` holding a NUL character, which PostgreSQL refuses."""
    if isinstance(value, str):
        if "\x00" in value:
            yield ".".join(path) or "body"
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield ".".join(path) or "body"
            yield from _nul_paths(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_paths(item, (*path, str(index)))


def check_no_nul(value: Any) -> None:
    """Refuse (422) a JSON value with NUL characters in its strings."""
    fields = [{"field": path, "message": "must not contain NUL characters"} for path in _nul_paths(value)]
    if fields:
        raise ApiError(422, "invalid", f"{fields[0]['field']}: must not contain NUL characters", fields)


def json_body(model: type[M]) -> M:
    """The request's body parsed as strict JSON into ``model``.

    415 unless the content type is JSON, 400 for a body that is not JSON,
    422 (a ``ValidationError``) for JSON that does not fit the model.
    """
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "the body must be JSON, sent as 'Content-Type: application/json'")
    try:
        parsed = model.model_validate_json(request.get_data())
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc.errors()[0]['msg']}") from None
        raise
    check_no_nul(parsed.model_dump(mode="json"))
    return parsed


def str_param(name: str) -> str | None:
    """The query parameter ``name`` as given, or None when absent; 400 for an empty value or a NUL character."""
    value = request.args.get(name)
    if value is None:
        return None
    if not value or "\x00" in value:
        raise invalid_parameter(name, "must be a non-empty string without NUL characters")
    return value


def int_param(name: str, *, minimum: int = 0, maximum: int = MAX_INT_PARAMETER) -> int | None:
    """The query parameter ``name`` as an int in ``[minimum, maximum]``, or None when absent; 400 otherwise."""
    value = request.args.get(name)
    if value is None:
        return None
    if not _INTEGER.fullmatch(value) or not minimum <= int(value) <= maximum:
        raise invalid_parameter(name, f"must be an integer from {minimum} to {maximum}, not {value!r}")
    return int(value)


def choice_param(name: str, allowed: Sequence[str]) -> str | None:
    """The query parameter ``name`` if it is one of ``allowed``, or None when absent; 400 otherwise."""
    value = request.args.get(name)
    if value is not None and value not in allowed:
        raise invalid_parameter(name, f"must be one of {', '.join(allowed)}, not {value!r}")
    return value


def list_param(name: str, allowed: Sequence[str]) -> list[str] | None:
    """The comma-separated query parameter ``name``, each item one of ``allowed``; None when absent, 400 otherwise."""
    value = request.args.get(name)
    if value is None:
        return None
    items = value.split(",")
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise invalid_parameter(name, f"unknown {', '.join(map(repr, unknown))}: use {', '.join(allowed)}")
    return items
