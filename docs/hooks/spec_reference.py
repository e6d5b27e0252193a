"""MkDocs hook: the `loopml.yaml` reference page, generated at build time from the spec's
pydantic models (every key, its type, its default and its description).

Like the CLI page, it cannot fall behind the code: a key added to `loopml.spec` appears on the
next build, with the description written beside its field.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

PAGE = "reference/spec.md"

INTRO = """\
# `loopml.yaml`

Generated from the spec's models (`loopml.spec`) at every build of this site. A project's
`loopml.yaml` is checked against them when it is loaded (`loopml spec check`); an unknown key or
a bad value is an error naming the key and its line. `loopml spec json-schema` prints the same
keys as a JSON Schema for editors. `NAME` in a path stands for a name you choose (a source, a
feature, an alert). Durations are written `90s`, `15m`, `6h`, `1d` or `2w`. A number's type
shows its allowed range; numbers are finite (`.inf` and `.nan` are refused).
"""


def _is_model(tp: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _strip(tp: Any) -> Any:
    # Annotated[X, ...] is X for the reader (Duration, UtcDatetime).
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _type_name(tp: Any) -> str:
    raw = tp
    tp = _strip(tp)
    if raw is not tp and tp is timedelta:
        return "duration"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return f"{text} or null" if type(None) in args else text
    if origin in (list, tuple, set):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of NAME to {_type_name(args[1])}" if len(args) == 2 else "mapping"
    if _is_model(tp):
        return f"[{tp.__name__}](#{_anchor(tp)})"
    if isinstance(tp, type) and issubclass(tp, Enum):
        return " \\| ".join(f"`{m.value}`" for m in tp)
    names = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        datetime: "timestamp",
        date: "date",
        timedelta: "duration",
        typing.Any: "any",
    }
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _anchor(model: type) -> str:
    return model.__name__.lower()


def _default(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return ""
        if _is_model(type(value)):
            shown = value.model_dump(mode="json", exclude_defaults=True, by_alias=True)
            return f"`{_format(shown)}`" if shown else "(all defaults)"
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    return f"`{_format(value)}`"


def _format(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        from loopml.spec._types import format_duration

        return format_duration(value)
    if isinstance(value, datetime):
        return (
            value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
        )
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_format(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)


def _models_in(tp: Any) -> list[tuple[type, str]]:
    """Models reachable from an annotation, with the path suffix they sit at."""
    tp = _strip(tp)
    if _is_model(tp):
        return [(tp, "")]
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is dict and len(args) == 2:
        return [(m, ".NAME" + s) for m, s in _models_in(args[1])]
    if origin in (list, tuple, set) and args:
        return [(m, "[]" + s) for m, s in _models_in(args[0])]
    if origin in (typing.Union, types.UnionType):
        return [x for a in args for x in _models_in(a)]
    return []


def _first_sentence(tp: Any) -> str:
    """A nested section's own summary, for a key that has no description of its own."""
    models = _models_in(tp)
    if len(models) != 1:
        return ""
    doc = " ".join((models[0][0].__doc__ or "").split())
    return doc.split(". ")[0].rstrip(".") + "." if doc else ""


def _bounded(prop: dict[str, Any]) -> str | None:
    """A number's or a duration's type with its allowed range ("number from 0 to 1"), as the
    spec's errors say it."""
    from loopml.spec._allowed import allowed

    branches = [prop, *prop.get("anyOf", [])]
    if not any({"minimum", "maximum", "exclusiveMinimum"} & set(b) for b in branches):
        return None
    words = allowed(prop)
    return re.sub(r"\ba (number|whole number|duration)\b", r"\1", words) if words else None


def _key(name: str, field: Any) -> str:
    return field.alias or name


def spec_markdown() -> str:
    """The whole reference page for `loopml.yaml`."""
    from pydantic import BaseModel

    from loopml.spec import ProjectSpec

    out = [INTRO]
    sections: list[tuple[type[BaseModel], str]] = []
    queue: list[tuple[type[BaseModel], str]] = [(ProjectSpec, "")]
    while queue:
        model, path = queue.pop(0)
        if any(model is m for m, _ in sections):
            continue
        sections.append((model, path))
        for name, field in model.model_fields.items():
            key = _key(name, field)
            for sub, suffix in _models_in(field.annotation):
                queue.append((sub, f"{path}.{key}{suffix}" if path else f"{key}{suffix}"))
    paths = [p for _, p in sections]
    for model, path in sections:
        title = f"`{path}`" if path else "The top level"
        if paths.count(path) > 1:  # alternatives for one key: name each
            title += f" as {model.__name__}"
        out += [f"## {title} {{ #{_anchor(model)} }}", ""]
        doc = (model.__doc__ or "").strip()
        if doc:
            out += [" ".join(doc.split()), ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        properties = model.model_json_schema(by_alias=True).get("properties", {})
        for name, field in model.model_fields.items():
            key = _key(name, field)
            description = field.description or _first_sentence(field.annotation)
            description = " ".join(description.split()).replace("|", "\\|")
            kind = _bounded(properties.get(key, {})) or _type_name(field.annotation)
            out.append(f"| `{key}` | {kind} | {_default(field)} | {description} |")
        out.append("")
    return "\n".join(out) + "\n"


def _use_checkout(config: Any) -> None:
    src = Path(config.config_file_path).resolve().parent / "src"
    if (src / "loopml").is_dir() and "loopml" not in sys.modules:
        sys.path.insert(0, str(src))


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    _use_checkout(config)
    files.append(File.generated(config, PAGE, content=spec_markdown()))
    return files
