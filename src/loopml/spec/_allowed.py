"""What a key of ``loopml.yaml`` allows, read from the spec's JSON Schema, for error messages.

The schema is the one place the bounds are written out (editors show them too), so an error on a
number says the whole allowed range ("from 0 to 1"), not only the side that was crossed, and a
key that takes a number or ``auto`` says both.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from functools import cache
from typing import Any

from loopml.spec._types import format_duration

Loc = tuple[str | int, ...]

# Pydantic's names for a branch of a union, where the location names one.
_BRANCH_TYPES = {
    "float": "number",
    "constrained-float": "number",
    "int": "integer",
    "constrained-int": "integer",
    "str": "string",
    "constrained-str": "string",
    "bool": "boolean",
}
# Other parts pydantic adds to a location: validators and the kinds of union branches.
_INTERNAL = ("function-", "literal[", "list[", "dict[", "nullable[", "tagged-union[", "lax-")


@cache
def _schema() -> dict[str, Any]:
    from loopml.spec._load import spec_json_schema

    return dict(json.loads(spec_json_schema()))


def _deref(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = _schema()["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _branches(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [_deref(b) for b in node.get("anyOf", node.get("oneOf", []))]


def _child(node: dict[str, Any], part: str | int) -> dict[str, Any] | None:
    props = node.get("properties", {})
    if isinstance(part, str) and part in props:
        return _deref(props[part])
    if isinstance(part, int) and isinstance(node.get("items"), dict):
        return _deref(node["items"])
    extra = node.get("additionalProperties")
    if isinstance(part, str) and isinstance(extra, dict):
        return _deref(extra)
    for branch in _branches(node):
        found = _child(branch, part)
        if found is not None:
            return found
    return None


def _branch(node: dict[str, Any], tag: str) -> dict[str, Any] | None:
    """The branch of a union a location part such as ``float`` or ``sqlite`` names."""
    for branch in _branches(node):
        kind = branch.get("type")
        if _BRANCH_TYPES.get(tag) in (kind if isinstance(kind, list) else [kind]):
            return branch
        if branch.get("properties", {}).get("type", {}).get("const") == tag:
            return branch  # a discriminated union: the tag is the `type` it selects
    return None


def locate(loc: Loc) -> tuple[Loc, dict[str, Any] | None]:
    """The location as the user wrote it (union branches and validator names dropped) and the
    schema of the value there (``None`` when the location leaves the schema)."""
    node: dict[str, Any] | None = _deref(_schema())
    clean: list[str | int] = []
    for part in loc:
        if node is None:
            clean.append(part)
            continue
        child = _child(node, part)
        if child is not None:
            clean.append(part)
            node = child
        elif isinstance(part, str) and (part in _BRANCH_TYPES or part.startswith(_INTERNAL)):
            node = _branch(node, part) or node
        elif isinstance(part, str) and _branch(node, part) is not None:
            node = _branch(node, part)
        else:
            clean.append(part)
            node = None
    return tuple(clean), node


def allowed(node: dict[str, Any] | None) -> str | None:
    """What a schema node allows, in words (``None`` when it is not a number, a duration or a
    choice of constants)."""
    if node is None:
        return None
    node = _deref(node)
    branches = _branches(node)
    if branches:
        each = [allowed(b) for b in branches]
        known = [w for w in each if w is not None]
        if len(known) < len(each):
            return None
        return ", ".join(known[:-1]) + " or " + known[-1]
    if "const" in node:
        return _constant(node["const"])
    if "enum" in node:
        return ", ".join(_constant(v) for v in node["enum"])
    kind = node.get("type")
    if kind == "null":
        return "null"
    if isinstance(kind, list) and "pattern" in node:
        return "a duration " + _range(node, lambda s: format_duration(timedelta(seconds=s)))
    if kind == "string":
        return "a string"
    if kind == "boolean":
        return "true or false"
    if kind in ("number", "integer"):
        noun = "a whole number" if kind == "integer" else "a number"
        span = _range(node, _number)
        return f"{noun} {span}" if span else f"a finite {noun.removeprefix('a ')}"
    return None


def _range(node: dict[str, Any], show: Any) -> str:
    low = node.get("exclusiveMinimum", node.get("minimum"))
    high = node.get("exclusiveMaximum", node.get("maximum"))
    above = "greater than" if "exclusiveMinimum" in node else "at least"
    below = "less than" if "exclusiveMaximum" in node else "at most"
    if low is not None and high is not None:
        if above == "at least" and below == "at most":
            return f"from {show(low)} to {show(high)}"
        return f"{above} {show(low)} and {below} {show(high)}"
    if low is not None:
        return f"{above} {show(low)}"
    if high is not None:
        return f"{below} {show(high)}"
    return ""


def _number(x: float) -> str:
    if isinstance(x, int) or (math.isfinite(x) and x == int(x) and abs(x) < 1e15):
        return f"{int(x):,}"
    return repr(x)


def _constant(value: Any) -> str:
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


def shown(value: Any) -> str:
    """A value as an error quotes it (YAML's spelling of the special floats)."""
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
    return repr(value)
