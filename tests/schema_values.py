"""Hypothesis strategies for JSON values a JSON Schema allows, for the schemas pydantic writes.

``values(schema)`` draws documents from a schema's own bounds (``minimum``,
``maximum`` and their exclusive forms, lengths, enums and constants, the
variants of ``anyOf``/``oneOf``, local ``$ref`` s), numbers at their bounds
as often as inside them, so what an API accepts is probed at its edges.  It
covers the keywords pydantic emits for our models, and refuses any other, so
a schema it cannot honour fails loudly instead of being half-tested.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

#: Keywords that describe rather than constrain.
_NOTES = {"title", "description", "default", "discriminator", "examples"}


def values(schema: dict[str, Any], root: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Documents valid under ``schema`` (whose ``$ref`` s point into ``root``, by default the schema itself)."""
    root = schema if root is None else root
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return st.deferred(lambda: values(root["$defs"][name], root))
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return st.one_of([values(variant, root) for variant in schema[union]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    unknown = set(schema) - _NOTES - {"type", "properties", "required", "additionalProperties", "items", "minItems",
                                      "maxItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                                      "minLength", "maxLength", "pattern", "$defs"}
    if unknown:
        raise ValueError(f"a strategy for the keyword(s) {sorted(unknown)} is not written: {schema}")
    if kind == "object":
        required = set(schema.get("required", ()))
        fields = {name: values(prop, root) for name, prop in schema.get("properties", {}).items()}
        return st.fixed_dictionaries(
            {name: strategy for name, strategy in fields.items() if name in required},
            optional={name: strategy for name, strategy in fields.items() if name not in required},
        )
    if kind == "array":
        return st.lists(values(schema.get("items", {}), root), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 4), 4))
    if kind == "integer":
        low, high = schema.get("minimum", -(2**53)), schema.get("maximum", 2**53)
        return st.sampled_from([low, high]) | st.integers(low, high)
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1e300))
        high = schema.get("maximum", schema.get("exclusiveMaximum", 1e300))
        bounds = [bound for bound, open_ in ((low, "exclusiveMinimum" in schema), (high, "exclusiveMaximum" in schema))
                  if not open_]
        inside = st.floats(low, high, exclude_min="exclusiveMinimum" in schema,
                           exclude_max="exclusiveMaximum" in schema, allow_nan=False, allow_infinity=False)
        return (st.sampled_from(bounds) | inside) if bounds else inside
    if kind == "string" and "pattern" in schema:
        low, high = schema.get("minLength", 0), schema.get("maxLength", 10**6)
        return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda text: low <= len(text) <= high)
    if kind == "string":
        return st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]),
                       min_size=max(schema.get("minLength", 0), 1), max_size=min(schema.get("maxLength", 12), 12))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    raise ValueError(f"a strategy for the type {kind!r} is not written: {schema}")
