"""Each API view declares its query, body and responses once; parsing, refusals and the document come from that.

    @bp.get("/runs")
    @requires("read")
    @declare(query=RunListQuery, responses={200: RunPage}, summary="List runs")
    def list_runs(query: RunListQuery) -> Response: ...

- ``query``: a pydantic model of the query string (``extra="forbid"``).  The
  view gets it as ``query=``.  A parameter it does not declare, a repeated
  one, one holding a NUL character or one that does not fit is a 400 naming
  it; a view that declares no query refuses every parameter.  Whole numbers
  are :data:`QueryInt` (digits only), lists :func:`comma_list` (``a,b,c``).
- ``body``: the JSON body's model, parsed from the raw bytes with pydantic's
  JSON mode (so a strict model stays strict): 415 unless the body is JSON,
  400 when it does not parse, 422 naming the JSON paths at fault.  The view
  gets it as ``body=``.  ``upload_limit`` raises its size limit (the app's
  ``MAX_CONTENT_LENGTH``, 1 MiB) for this view alone.
- ``form`` and ``files``: a multipart body's text fields (a model, given to
  the view as ``form=``) and the names of its file parts, up to
  ``upload_limit`` bytes (413 beyond it); the view reads ``request.files``.
- ``raw_body``: the media type of a binary body (``application/octet-stream``) the view reads itself, for the
  document.
- ``headers``: request headers the view reads itself, for the document.
- path parameters: ``<id:run_id>`` (:class:`IdConverter`) matches ids only; anything else is a 404.
- ``responses``: ``{status: type}``, the type a pydantic model, a TypedDict
  or anything pydantic's ``TypeAdapter`` takes; ``None`` for no body;
  ``{media type: type}`` for several (``bytes``: binary); for an error, the
  text saying when it happens (its body is the error document).  They are
  documented, never checked at run time: the tests check them.

:mod:`.openapi` builds the OpenAPI 3.1 document from these declarations.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from flask import request
from pydantic import BaseModel, BeforeValidator, Field, ValidationError
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import BaseConverter

from trainyard.service.errors import ApiError, invalid_body, invalid_parameter, too_large
from trainyard.service.storage.models import ID_PATTERN
from trainyard.trainer.spec import field_errors

M = TypeVar("M", bound=BaseModel)
V = TypeVar("V", bound=Callable[..., Any])

#: Bound of whole-number query parameters: a 32-bit signed int, what every database's INTEGER column holds.
MAX_INT_PARAMETER = 2**31 - 1

_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,10}")


def _whole_number(value: Any) -> Any:
    """A query string's whole number: digits only (no ``+``, ``_``, spaces or ``.0``, which ``int()`` would take)."""
    if isinstance(value, str):
        if not _WHOLE_NUMBER.fullmatch(value):
            raise ValueError(f"must be a whole number, not {value!r}")
        return int(value)
    return value


#: A whole number in a query string.
QueryInt = Annotated[int, BeforeValidator(_whole_number)]


def _split_commas(value: Any) -> Any:
    return value.split(",") if isinstance(value, str) else value


def comma_list(item: Any, *, max_length: int) -> Any:
    """A list in one query parameter, its items separated by commas (``fields=train_loss,val_loss``).

    Every list parameter of the API is written so: the document says ``style: form, explode: false``.
    """
    return Annotated[list[item], BeforeValidator(_split_commas), Field(min_length=1, max_length=max_length)]


class IdConverter(BaseConverter):
    """URL part ``<id:run_id>``: an id as the models make them (anything else matches no route: 404)."""

    regex = ID_PATTERN


@dataclass(frozen=True)
class Header:
    """A request header a view reads itself (``request.headers``), documented with ``schema``."""

    name: str
    description: str
    schema: Mapping[str, Any]


@dataclass(frozen=True)
class Declaration:
    """What a view takes and answers (see the module's description)."""

    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    form: type[BaseModel] | None = None
    files: tuple[str, ...] = ()
    upload_limit: int | None = None
    raw_body: str | None = None
    headers: tuple[Header, ...] = ()
    responses: Mapping[int, Any] = field(default_factory=dict)
    summary: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()


def declare(
    *,
    responses: Mapping[int, Any],
    summary: str,
    description: str = "",
    tags: Sequence[str] = (),
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    form: type[BaseModel] | None = None,
    files: Sequence[str] = (),
    upload_limit: int | None = None,
    raw_body: str | None = None,
    headers: Sequence[Header] = (),
) -> Callable[[V], V]:
    """Declare a view's input and output; the view is called with ``query=``, ``body=``, ``form=`` as declared."""
    declaration = Declaration(query, body, form, tuple(files), upload_limit, raw_body, tuple(headers),
                              dict(responses), summary, description, tuple(tags))

    def decorator(view: V) -> V:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            parsed = parse_query(query)
            if query is not None:
                kwargs["query"] = parsed
            if body is not None:
                if upload_limit is not None:
                    request.max_content_length = upload_limit
                kwargs["body"] = parse_body(body)
            if form is not None:
                kwargs["form"] = parse_form(form, declaration.files, upload_limit)
            return view(*args, **kwargs)

        wrapper.declaration = declaration  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


# --------------------------------------------------------------------------- parsing


def parse_query(model: type[M] | None) -> M | None:
    """The query string as ``model``; 400 naming the first parameter at fault (see the module's description)."""
    if model is None:
        for name in request.args:
            raise invalid_parameter(name, "unknown query parameter (this endpoint takes none)")
        return None
    values = _single_values(request.args)
    try:
        return model.model_validate_strings(values)
    except ValidationError as exc:
        raise _query_error(exc, model) from None


def _single_values(args: MultiDict[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in args:
        given = args.getlist(name)
        if len(given) > 1:
            raise invalid_parameter(name, "is given more than once")
        if "\x00" in given[0] or "\x00" in name:
            raise invalid_parameter(name, "must not contain NUL characters")
        values[name] = given[0]
    return values


def _query_error(exc: ValidationError, model: type[BaseModel]) -> ApiError:
    fields = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "query"
        if error["type"] == "extra_forbidden":
            message = f"unknown query parameter (this endpoint takes: {', '.join(model.model_fields)})"
        else:
            message = error["msg"].removeprefix("Value error, ")
        fields.append({"field": name, "message": message})
    first = fields[0]
    return ApiError(400, "invalid_parameter", f"{first['field']}: {first['message']}", fields)


def parse_body(model: type[M]) -> M:
    """The JSON body as ``model``: 415 unless JSON, 400 when it does not parse, 422 (``ValidationError``) otherwise."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "the body must be JSON, sent as 'Content-Type: application/json'")
    try:
        parsed = model.model_validate_json(request.get_data())
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc.errors()[0]['msg']}") from None
        raise invalid_body(exc, model) from None
    check_no_nul(parsed.model_dump(mode="json"))
    return parsed


def parse_form(model: type[M], files: Sequence[str], upload_limit: int | None) -> M:
    """A multipart body's text fields as ``model`` and its file parts: 415 for another body, 413 over
    ``upload_limit``, 422 naming a field that does not fit or a file part that is missing."""
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", f"send a multipart/form-data body with the file part "
                       f"{', '.join(map(repr, files))}")
    if upload_limit is not None:
        request.max_content_length = upload_limit
    try:
        text, parts = request.form.to_dict(), request.files
    except RequestEntityTooLarge:
        message = too_large("upload", request.content_length, upload_limit)
        raise ApiError(413, "too_large", f"file: {message}", [{"field": "file", "message": message}]) from None
    missing = [name for name in files if name not in parts]
    if missing:
        message = "a file part is required"
        raise ApiError(400, "missing_field", f"{missing[0]}: {message}", [{"field": missing[0], "message": message}])
    check_no_nul(text)
    try:
        return model.model_validate_strings(text)
    except ValidationError as exc:
        fields = field_errors(exc)
        raise ApiError(422, "invalid", f"{fields[0]['field']}: {fields[0]['message']}", fields) from None


def _nul_paths(value: Any, path: tuple[str, ...] = ()) -> list[str]:
    """The JSON paths of the strings (keys included) in ``value`` holding a NUL character, which PostgreSQL refuses."""
    if isinstance(value, str):
        return [".".join(path) or "body"] if "\x00" in value else []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                found.append(".".join(path) or "body")
            found += _nul_paths(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _nul_paths(item, (*path, str(index)))
    return found


def check_no_nul(value: Any) -> None:
    """Refuse (422) a JSON value with NUL characters in its strings."""
    fields = [{"field": path, "message": "must not contain NUL characters"} for path in _nul_paths(value)]
    if fields:
        raise ApiError(422, "invalid", f"{fields[0]['field']}: must not contain NUL characters", fields)
