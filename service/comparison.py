"""Comparing runs' parameters: the spec paths whose values differ between runs and those all share.

Used by the JSON API (``GET /api/compare``) and the dashboard's compare page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trainyard.service.specpaths import flatten

#: Most runs one comparison takes.
MAX_RUNS = 100

#: Top-level spec keys that describe a run rather than configure it: not compared.
UNCOMPARED_KEYS = frozenset(("name", "tags", "notes"))


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: ``True`` is not ``1``."""
    return (type(a) is bool) == (type(b) is bool) and a == b


def compare_params(specs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Split the specs' dotted paths (not :data:`UNCOMPARED_KEYS`) into ``same`` and ``differ``.

    A path with one value in every spec goes into ``same`` (path → value);
    any other into ``differ`` (path → one value per spec, None where a spec
    lacks the path).  Paths come in the order they first appear.
    """
    flat = [dict(flatten({key: item for key, item in spec.items() if key not in UNCOMPARED_KEYS})) for spec in specs]
    paths = dict.fromkeys(path for leaves in flat for path in leaves)
    same: dict[str, Any] = {}
    differ: dict[str, list[Any]] = {}
    for path in paths:
        first = flat[0].get(path)
        if all(path in leaves and _equal(leaves[path], first) for leaves in flat):
            same[path] = first
        else:
            differ[path] = [leaves.get(path) for leaves in flat]
    return {"differ": differ, "same": same}
