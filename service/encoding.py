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


class OrjsonProvider(JSONProvider):
    """Flask's JSON provider on orjson (``app.json``: used by ``jsonify`` and ``request.get_json``)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, option=OPTIONS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """Like Flask's, but the body stays the bytes orjson made (no decode and encode of megabytes)."""
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(orjson.dumps(obj, option=OPTIONS), mimetype="application/json")
