"""Reading ``loopml.yaml`` into a :class:`ProjectSpec`, with errors that name the key and line."""

from __future__ import annotations

import difflib
import errno
import json
import os
import re
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import GenerateJsonSchema

from loopml.errors import SpecError
from loopml.spec._allowed import allowed, locate, shown
from loopml.spec._models import ProjectSpec
from loopml.spec._types import format_duration
from loopml.spec._yaml import LoadedYaml, load_yaml

SPEC_FILE = "loopml.yaml"
_KEY_FIRST = re.compile(r"^([A-Za-z_][\w]*(?:\.[\w]+)+): ")


# A spec is a few kilobytes; a bigger file is a mistake (a data file named loopml.yaml).
MAX_SPEC_BYTES = 10 * 1024 * 1024


def load_spec(path: str | Path) -> ProjectSpec:
    """Read a project spec from a file, or from ``loopml.yaml`` in a folder."""
    p = Path(path)
    if p.is_dir():
        p = p / SPEC_FILE
    return parse_spec(read_spec_text(p), file=str(p))


def read_spec_text(p: Path) -> str:
    """The text of a spec file; anything but a readable regular UTF-8 file is a
    :class:`SpecError` naming what ``p`` is instead (and a FIFO is never opened: it would
    block)."""

    def error(message: str) -> SpecError:
        return SpecError(message, details={"file": str(p), "key": None, "line": None})

    try:
        st = p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise error(
                f"{p} is a symbolic link to {os.readlink(p)}, which does not exist: "
                "point it at the project's loopml.yaml"
            ) from None
        raise error(f"no project spec at {p}: run `loopml init {p.parent}` to create one") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(
                f"{p} is a loop of symbolic links (following them leads back to it): "
                "point the link at the project's loopml.yaml"
            ) from None
        raise error(f"{p} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(
            f"{p} is a directory, not a file: the project spec must be a YAML file "
            "(rename the directory, then `loopml init` writes one)"
        )
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{p} is not a regular file (a {_kind(st.st_mode)}): it must be a YAML file")
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise error(f"{p} cannot be read: {exc.strerror}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise error(
            f"{p} is larger than {MAX_SPEC_BYTES // (1024 * 1024)} MiB: "
            "it is not a project spec (a spec is a few kilobytes of YAML)"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "FIFO",
        stat.S_ISSOCK: "socket",
        stat.S_ISCHR: "character device",
        stat.S_ISBLK: "block device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "special file")


def parse_spec(text: str, *, file: str = SPEC_FILE) -> ProjectSpec:
    """Validate spec text; every error names the key and the line it is on."""
    doc = load_yaml(text, file)
    if not isinstance(doc.data, dict):
        raise SpecError(
            f"{file}: the spec must be a mapping of keys (project, storage, sources, ...)",
            details={"file": file, "key": None, "line": 1},
        )
    try:
        return ProjectSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise _spec_error(exc, doc) from None


# Errors that a value is outside its field's bounds: said with the whole allowed range.
_RANGE_ERRORS = {
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "finite_number",
    "multiple_of",
}


def _spec_error(exc: ValidationError, doc: LoadedYaml) -> SpecError:
    by_key: dict[str, list[dict[str, Any]]] = {}
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        # Checks across sections name their key first ("features.windows.w: ..."): use it.
        named = _KEY_FIRST.match(message)
        if named and not loc:
            loc = tuple(named.group(1).split("."))
            message = message[named.end() :]
        clean, _ = locate(loc)
        key, line = doc.line_of(clean)
        if err["type"] == "extra_forbidden":
            message = "unknown key" + _suggest(loc, doc)
        elif err["type"] == "missing":
            _, parent_line = doc.line_of(clean[:-1])
            line = line or parent_line
            message = "required key is missing"
        by_key.setdefault(key, []).append(
            {"key": key, "line": line, "message": message, "err": err, "loc": clean}
        )
    problems = [_one_problem(group) for group in by_key.values()]
    first = problems[0]
    where = f"{doc.file}:{first['line']}" if first["line"] else doc.file
    text = f"{where}: {first['key']}: {first['message']}"
    if len(problems) > 1:
        rest = "; ".join(f"line {p['line']}: {p['key']}: {p['message']}" for p in problems[1:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        text += f"; also {rest}{more}"
    return SpecError(
        text,
        details={
            "file": doc.file,
            "key": first["key"],
            "line": first["line"],
            "problems": problems,
        },
    )


def _one_problem(group: list[dict[str, Any]]) -> dict[str, Any]:
    """One problem per key: a value outside its bounds says the whole allowed range, and a key
    that takes one of several kinds (a number or ``auto``) is one problem, not one per kind."""
    head = {k: group[0][k] for k in ("key", "line")}
    types = {p["err"]["type"] for p in group}
    if len(group) == 1 and not types & _RANGE_ERRORS:
        return {**head, "message": group[0]["message"]}
    ours = [p for p in group if p["err"]["type"] == "value_error"]
    if ours:
        return {**head, "message": ours[0]["message"]}
    words = allowed(locate(group[0]["loc"])[1])
    if words is None:
        return {**head, "message": "; ".join(p["message"] for p in group)}
    value = shown(group[0]["err"].get("input"))
    problem = "out of range" if types & _RANGE_ERRORS else "not allowed"
    return {**head, "message": f"{value} is {problem}: allowed {words}"}


def _suggest(loc: tuple[Any, ...], doc: LoadedYaml) -> str:
    """' (did you mean X?)' for a misspelt key, from the fields the model accepts there."""
    model: Any = ProjectSpec
    for part in loc[:-1]:
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return ""
        by_alias = {(f.alias or name): f for name, f in fields.items()}
        field = by_alias.get(str(part))
        if field is None:
            # a dict key (a source name, a column name): the value type is the next model
            continue
        model = _inner_model(field.annotation)
        if model is None:
            return ""
    fields = getattr(model, "model_fields", {})
    names = [f.alias or n for n, f in fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (expected one of: {', '.join(names)})"


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


class _SpecJsonSchema(GenerateJsonSchema):
    """Defaults shown in the spelling the spec reads (``1d``, not ISO 8601's ``P1D``)."""

    def encode_default(self, dft: Any) -> Any:
        return super().encode_default(_spelled(dft))


def _spelled(value: Any) -> Any:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, list | tuple):
        return [_spelled(v) for v in value]
    if isinstance(value, dict):
        return {k: _spelled(v) for k, v in value.items()}
    return value


def spec_json_schema() -> str:
    """The JSON Schema of ``loopml.yaml``, for editors (YAML language servers read it)."""
    schema = ProjectSpec.model_json_schema(by_alias=True, schema_generator=_SpecJsonSchema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "loopml project spec (loopml.yaml)"
    return json.dumps(schema, indent=2, sort_keys=False)
