"""JSON responses through orjson.

The API's largest responses are numeric: ``/api/compare`` returns 50 runs'
curves, a quarter of a million numbers, as numpy arrays.  orjson writes them
straight from the arrays (NaN and infinities as ``null``, which is also what
JSON needs) many times faster than the standard library writes the
equivalent lists; everything else it writes like ``json`` (keys in insertion
order, aware datetimes in ISO 8601).
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import JSONProvider

OPTIONS = orjson.OPT_SERIALIZE_NUMPY

#: The integers orjson writes; a JSON document read from the database may hold larger ones (PostgreSQL's JSONB gives
#: a float of 1e16 or more back as an integer, and rows stored before every number had a bound may hold one).
_INT64 = (-(2**63), 2**64 - 1)


def dumps(obj: Any) -> bytes:
    """``obj`` as JSON bytes; an integer orjson cannot write is written as the float it stands for, never an error."""
    try:
        return orjson.dumps(obj, option=OPTIONS)
    except orjson.JSONEncodeError:
        return orjson.dumps(_wide_ints_as_floats(obj), option=OPTIONS)


def _wide_ints_as_floats(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        return float(value)
    if isinstance(value, dict):
        return {key: _wide_ints_as_floats(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_wide_ints_as_floats(item) for item in value]
    return value


class OrjsonProvider(JSONProvider):
    """Flask's JSON provider on orjson (``app.json``: used by ``jsonify`` and ``request.get_json``)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return dumps(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """Like Flask's, but the body stays the bytes orjson made (no decode and encode of megabytes)."""
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(dumps(obj), mimetype="application/json")
