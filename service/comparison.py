"""Comparing runs' parameters: the spec paths whose values differ between runs and those all share, and which runs
differ in nothing but their seed.

Used by the JSON API (``GET /api/compare``) and the dashboard's compare page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from trainyard.service.specpaths import flatten
from trainyard.trainer import TrainSpec

#: Most runs one comparison takes.
MAX_RUNS = 100

#: Top-level spec keys that describe a run rather than configure it: not compared.
UNCOMPARED_KEYS = frozenset(("name", "project", "tags", "notes"))


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: ``True`` is not ``1``."""
    return (type(a) is bool) == (type(b) is bool) and a == b


_ABSENT = object()


def compare_params(specs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Split the specs' dotted paths (not :data:`UNCOMPARED_KEYS`) into ``same`` and ``differ``.

    A path with one value in every spec goes into ``same`` (path → value); a
    path whose values differ into ``differ`` (path → one value per spec, None
    where a spec lacks the path), and the specs lacking it (their positions)
    into ``absent``.  A path that is null in some specs and absent from the
    others (``lr_schedule.t_max`` beside ``"lr_schedule": null``) is no
    difference, nor a shared value: it is left out.  Paths come in the spec
    schema's order (:func:`schema_order`), the same whatever order the
    database kept the keys in.
    """
    flat = [dict(flatten({key: item for key, item in schema_order(spec).items() if key not in UNCOMPARED_KEYS}))
            for spec in specs]
    same: dict[str, Any] = {}
    differ: dict[str, list[Any]] = {}
    absent: dict[str, list[int]] = {}
    for path in _merged_order(flat):
        values = [leaves.get(path, _ABSENT) for leaves in flat]
        present = [value for value in values if value is not _ABSENT]
        if all(value is None for value in present) and len(present) < len(values):
            continue
        if len(present) == len(values) and all(_equal(value, present[0]) for value in present):
            same[path] = present[0]
            continue
        differ[path] = [None if value is _ABSENT else value for value in values]
        if len(present) < len(values):
            absent[path] = [index for index, value in enumerate(values) if value is _ABSENT]
    return {"differ": differ, "same": same, "absent": absent}


def group_runs(specs: Sequence[Mapping[str, Any]], by: str = "seed") -> list[list[int]]:
    """The specs' positions, grouped: specs whose dotted paths (not :data:`UNCOMPARED_KEYS`, nor the top-level key
    ``by``) all hold equal values are one group.

    Equality is :func:`compare_params`'s: ``True`` is not ``1``, and a path
    null in one spec and absent from another is no difference.  Groups come
    in the order of their first spec, each in the order of ``specs``; a spec
    alike to no other is a group of one.
    """
    leaves = [{path: value for path, value in flatten({key: item for key, item in schema_order(spec).items()
                                                       if key not in UNCOMPARED_KEYS and key != by})
               if value is not None} for spec in specs]
    groups: list[list[int]] = []
    for index, mine in enumerate(leaves):
        for group in groups:
            theirs = leaves[group[0]]
            if theirs.keys() == mine.keys() and all(_equal(theirs[path], mine[path]) for path in mine):
                group.append(index)
                break
        else:
            groups.append([index])
    return groups


def schema_order(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """``spec`` with its keys in the order of :class:`~trainyard.trainer.TrainSpec`'s fields, at every level (a JSON
    store such as PostgreSQL's JSONB keeps its own order); as it is if it is no valid spec."""
    try:
        return TrainSpec.model_validate(spec).model_dump(mode="json")
    except ValidationError:
        return spec


def _merged_order(flat: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every path of ``flat`` once: a path first seen in a later spec goes right after the path before it there."""
    paths: list[str] = []
    seen: dict[str, None] = {}
    for leaves in flat:
        at = 0
        for path in leaves:
            if path in seen:
                at = paths.index(path) + 1
            else:
                paths.insert(at, path)
                seen[path] = None
                at += 1
    return paths
