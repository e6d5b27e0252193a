"""What every command shares: the --project and --json options, output, exit codes."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from loopml.errors import (
    LoopmlError,
    NotFoundError,
    ReadError,
    SpecError,
    UsageError,
)

if TYPE_CHECKING:
    from loopml._project import Project

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3

ProjectOpt = Annotated[
    Path,
    typer.Option(
        "--project", "-p", help="The project folder (holding loopml.yaml).", show_default=False
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")
]

out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


def exit_code_for(exc: LoopmlError) -> int:
    """2 for bad usage or spec (including a name or file that does not exist), 1 otherwise."""
    if isinstance(exc, SpecError | UsageError | NotFoundError | ReadError):
        return EXIT_USAGE
    return EXIT_FAILURE


@contextmanager
def open_project(path: Path) -> Iterator[Project]:
    from loopml._project import Project

    project = Project.open(path)
    try:
        yield project
    finally:
        project.close()


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "__dataclass_fields__"):
        return {k: getattr(obj, k) for k in obj.__dataclass_fields__}
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def print_json(obj: Any) -> None:
    sys.stdout.write(
        orjson.dumps(
            obj, default=_default, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
        ).decode()
        + "\n"
    )
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left", show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    out.print(t)


def when(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S") if dt else ""
