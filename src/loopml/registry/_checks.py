"""Checks of what callers pass the registry: names, required text, and JSON values."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from loopml.errors import UsageError

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_ALIAS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def where(model: str, version: int) -> dict[str, Any]:
    return {"model": model, "version": version}


def describe_aliases(held: Mapping[str, int]) -> str:
    if not held:
        return "it has no aliases yet"
    return "its aliases are " + ", ".join(f"{a} -> {v}" for a, v in held.items())


def check_model_name(model: str) -> None:
    if not isinstance(model, str) or not _MODEL_NAME.fullmatch(model):
        raise UsageError(
            f"invalid model name {model!r}: use letters, digits, '_', '.' and '-' "
            f"(at most 128, starting with a letter or digit)",
            details={"model": model},
        )


def check_alias(alias: str) -> None:
    if not isinstance(alias, str) or not _ALIAS_NAME.fullmatch(alias) or alias == "latest":
        raise UsageError(
            f"invalid alias {alias!r}: an alias starts with a letter, uses letters, digits, '_', "
            f"'.' and '-' (at most 64), and is not 'latest'",
            details={"alias": alias},
        )


def check_text(value: str, what: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{what} must be a non-empty string, not {value!r}", details={what: value})


def as_json(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``value`` as plain JSON (tuples become lists), the same on every backend."""
    try:
        out = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        bad = _first_non_finite(value)
        hint = f" ({bad} is not finite: record None instead)" if bad else ""
        raise UsageError(f"{what} is not JSON: {exc}{hint}", details={"error": str(exc)}) from exc
    return dict(out)


def _first_non_finite(value: Any, path: str = "") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path or "a value"
    if isinstance(value, Mapping):
        for k, v in value.items():
            if found := _first_non_finite(v, f"{path}.{k}" if path else str(k)):
                return found
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            if found := _first_non_finite(v, f"{path}[{i}]"):
                return found
    return None
