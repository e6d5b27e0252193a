"""YAML loading that remembers where every key is, so that errors can name the line."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from loopml.errors import SpecError

Path_ = tuple[str | int, ...]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class LoadedYaml:
    """A parsed YAML document and the line (1-based) of every mapping key and sequence item."""

    data: Any
    lines: dict[Path_, int]
    file: str

    def line_of(self, loc: Sequence[str | int]) -> tuple[str, int | None]:
        """The dotted key and its line for a validation location.

        Location parts that are not in the document (pydantic adds union tags and validator
        names) are skipped, so the deepest key that exists is the one reported.
        """
        found: list[str | int] = []
        line: int | None = None
        for part in loc:
            candidate = (*found, part)
            if candidate in self.lines:
                found.append(part)
                line = self.lines[candidate]
            elif isinstance(part, str) and part.isdigit() and (*found, int(part)) in self.lines:
                found.append(int(part))
                line = self.lines[tuple(found)]
        shown = ".".join(str(p) for p in loc if not _is_internal(p))
        return shown or "(top level)", line


def _is_internal(part: str | int) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def load_yaml(text: str, file: str) -> LoadedYaml:
    """Parse ``text``; YAML syntax errors become :class:`SpecError` with the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            f"{file}:{line}: invalid YAML: {problem}",
            details={"file": file, "line": line, "key": None},
        ) from None
    lines: dict[Path_, int] = {}
    data = _convert(node, (), lines, file) if node is not None else {}
    return LoadedYaml(data=data, lines=lines, file=file)


def _convert(node: yaml.Node, path: Path_, lines: dict[Path_, int], file: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if not isinstance(key, str | int | float | bool):
                raise SpecError(
                    f"{file}:{key_node.start_mark.line + 1}: keys must be plain scalars",
                    details={"file": file, "line": key_node.start_mark.line + 1, "key": None},
                )
            key = str(key)
            if key in out:
                line = key_node.start_mark.line + 1
                dotted = ".".join(str(p) for p in (*path, key))
                raise SpecError(
                    f"{file}:{line}: key '{dotted}' appears twice",
                    details={"file": file, "line": line, "key": dotted},
                )
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, (*path, key), lines, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(_convert(item, (*path, i), lines, file))
        return items
    value = _scalar(node)
    if isinstance(value, str) and "${" in value:
        value = _interpolate(value, path, node.start_mark.line + 1, file)
    return value


def _scalar(node: yaml.Node) -> Any:
    # Resolve the scalar with the safe loader's own rules (ints, floats, bools, nulls, dates).
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _interpolate(value: str, path: Path_, line: int, file: str) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` with the environment's values."""

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        dotted = ".".join(str(p) for p in path)
        raise SpecError(
            f"{file}:{line}: key '{dotted}' uses ${{{name}}} but the environment variable "
            f"{name} is not set (set it, or write ${{{name}:-default}})",
            details={"file": file, "line": line, "key": dotted},
        )

    return _ENV.sub(repl, value)
