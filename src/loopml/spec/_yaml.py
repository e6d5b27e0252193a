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


# A spec is a few hundred values; aliases (``*name``) may repeat at most this many in all.
# Without a limit, a few hundred bytes of nested aliases ("billion laughs") expand to billions.
MAX_ALIAS_VALUES = 100_000
# Far deeper than any spec nests; deeper documents would exhaust Python's recursion instead.
MAX_DEPTH = 100


class _Composer(yaml.SafeLoader):
    """PyYAML's composer, counting what aliases expand to and refusing recursive ones.

    Composing shares an aliased node rather than copying it, so this is where a bomb is still
    small: the expanded size of every node is known as it is composed, and each alias adds its
    target's size to the document's total before anything is expanded.
    """

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self.file = file
        self.sizes: dict[int, int] = {}  # id(node) -> values it stands for, expanded
        self.alias_values = 0
        self.open_anchors: set[str] = set()  # anchors whose node is still being composed
        self.depth = 0

    def _refuse(self, mark: Any, message: str) -> SpecError:
        line = mark.line + 1 if mark is not None else None
        return SpecError(
            f"{self.file}:{line}: {message}", details={"file": self.file, "line": line, "key": None}
        )

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.open_anchors:
                raise self._refuse(
                    event.start_mark,
                    f"the alias *{event.anchor} is recursive: it is inside the value "
                    f"&{event.anchor} names; write the value out instead",
                )
            node = super().compose_node(parent, index)  # raises on an undefined alias
            self.alias_values += self.sizes[id(node)]
            if self.alias_values > MAX_ALIAS_VALUES:
                raise self._refuse(
                    event.start_mark,
                    f"the alias *{event.anchor} makes the aliases in this file expand to more "
                    f"than {MAX_ALIAS_VALUES:,} values (an alias bomb?); write the values out "
                    "or use fewer aliases",
                )
            return node
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self._refuse(
                event.start_mark, f"values are nested more than {MAX_DEPTH} levels deep"
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self.open_anchors.add(anchor)
        node = super().compose_node(parent, index)
        if anchor is not None:
            self.open_anchors.discard(anchor)
        self.depth -= 1
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self.sizes[id(item)] for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(self.sizes[id(k)] + self.sizes[id(v)] for k, v in node.value)
        self.sizes[id(node)] = size
        return node


def load_yaml(text: str, file: str) -> LoadedYaml:
    """Parse ``text``; YAML syntax errors become :class:`SpecError` with the line.

    Aliases are expanded (every key gets its own line), within :data:`MAX_ALIAS_VALUES`;
    recursive aliases and nesting deeper than :data:`MAX_DEPTH` are errors.
    """
    loader = None
    try:
        try:
            loader = _Composer(text, file)  # the reader refuses control characters here
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise _syntax_error(exc, text, file) from None
        lines: dict[Path_, int] = {}
        data = _convert(node, (), lines, file, loader) if node is not None else {}
    finally:
        if loader is not None:
            loader.dispose()
    return LoadedYaml(data=data, lines=lines, file=file)


def _syntax_error(exc: yaml.YAMLError, text: str, file: str) -> SpecError:
    if isinstance(exc, yaml.reader.ReaderError):
        # A character YAML does not allow (a NUL, a control character: a binary file).
        line: int | None = text.count("\n", 0, exc.position) + 1
        problem = f"character {exc.character!r} is not allowed in YAML (is it a text file?)"
    else:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return SpecError(
        f"{file}:{line}: invalid YAML: {problem}",
        details={"file": file, "line": line, "key": None},
    )


def _convert(
    node: yaml.Node, path: Path_, lines: dict[Path_, int], file: str, loader: yaml.SafeLoader
) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = (
                _scalar(key_node, loader, path, file)
                if isinstance(key_node, yaml.ScalarNode)
                else None
            )
            if not isinstance(key, str | int | float | bool):
                raise SpecError(
                    f"{file}:{line}: keys must be plain scalars",
                    details={"file": file, "line": line, "key": None},
                )
            key = str(key)
            if key in out:
                dotted = ".".join(str(p) for p in (*path, key))
                raise SpecError(
                    f"{file}:{line}: key '{dotted}' appears twice",
                    details={"file": file, "line": line, "key": dotted},
                )
            lines[(*path, key)] = line
            out[key] = _convert(value_node, (*path, key), lines, file, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(_convert(item, (*path, i), lines, file, loader))
        return items
    value = _scalar(node, loader, path, file)
    if isinstance(value, str) and "${" in value:
        value = _interpolate(value, path, node.start_mark.line + 1, file)
    return value


def _scalar(node: yaml.Node, loader: yaml.SafeLoader, path: Path_, file: str) -> Any:
    # Resolve the scalar with the safe loader's own rules (ints, floats, bools, nulls, dates).
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError, KeyError, AttributeError, TypeError) as exc:
        # A tag the safe loader refuses (!!python/object), or a value its tag cannot hold: the
        # constructors raise whatever their parsing hits (ValueError for a date 2024-13-45,
        # KeyError for `!!bool maybe`, AttributeError for `!!timestamp x`). Name where.
        line = node.start_mark.line + 1
        dotted = ".".join(str(p) for p in path) or None
        if isinstance(exc, yaml.YAMLError | ValueError | OverflowError):
            problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        else:
            problem = f"not a valid !!{str(node.tag).rsplit(':', 1)[-1]}"
        raise SpecError(
            f"{file}:{line}: "
            + (f"key '{dotted}': " if dotted else "")
            + f"{node.value!r} cannot be read: {problem}",
            details={"file": file, "line": line, "key": dotted},
        ) from None


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
