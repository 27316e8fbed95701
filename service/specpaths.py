"""Dotted paths into a job spec: ``optimizer.lr``, ``model.hidden.0.units`` (list positions included).

A sweep sets values at such paths (:func:`set_path`), the sweep page reads
them back from each run's spec (:func:`get_path`), and a comparison lists a
spec's leaves by path (:func:`flatten`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """The leaves of a JSON value as ``(dotted path, value)``; lists by index, empty lists and objects as leaves."""
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from flatten(item, f"{prefix}{key}.")
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from flatten(item, f"{prefix}{index}.")
    else:
        yield prefix[:-1], value


def get_path(spec: Any, path: str) -> Any:
    """The value at ``path`` of ``spec``; None when it is not there."""
    node = spec
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def set_path(spec: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at ``path`` of ``spec`` in place; missing object keys are created.

    A list position must exist (``model.hidden.2.units`` needs three hidden
    layers in the base spec): a sweep changes layers, it does not add them.

    Raises
    ------
    KeyError
        The path goes through a value that is neither an object nor a list, or
        names a list position that is not there.
    """
    parts = path.split(".")
    node: Any = spec
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        elif isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise KeyError(f"{where}: the base spec has no list item {part} here ({len(node)} items)")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        else:
            raise KeyError(f"{where}: the base spec has a {type(node).__name__} above this, not an object or list")
