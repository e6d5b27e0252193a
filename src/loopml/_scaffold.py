"""A new project folder: its ``loopml.yaml`` and the JSON Schema that file points editors at.

Kept apart from :class:`loopml.Project` so that ``loopml init`` writes a project without
importing the storage and data libraries (start-up time).
"""

from __future__ import annotations

import errno
import re
import stat
from pathlib import Path

from loopml.errors import ConflictError, UsageError
from loopml.spec import (
    SCHEMA_FILE,
    SPEC_FILE,
    ProjectSpec,
    example_spec,
    parse_spec,
    spec_json_schema,
)


def project_name(root: Path) -> str:
    """A project name from a folder's name (letters, digits and underscores)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", root.name) or "project"
    if not re.match(r"[A-Za-z_]", name):
        name = "p_" + name
    if len(name) > 63:
        raise UsageError(f"cannot derive a project name from {root.name!r}: pass --name")
    return name


def check_writable(root: Path, *, force: bool) -> Path:
    """The spec file of a new project in ``root``; refuses to overwrite one without ``force``."""
    spec_file = root / SPEC_FILE
    try:
        mode = spec_file.stat().st_mode
    except FileNotFoundError:
        return spec_file  # nothing there (or a dangling link, whose target is then written)
    except OSError as exc:
        # --force could not help: writing through a link loop or a directory fails.
        problem = (
            "is a loop of symbolic links"
            if exc.errno == errno.ELOOP
            else f"cannot be read: {exc.strerror}"
        )
        raise UsageError(
            f"{spec_file} {problem}: remove it, then run init again",
            details={"file": str(spec_file)},
        ) from None
    if not stat.S_ISREG(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise UsageError(
            f"{spec_file} is {what}: remove or rename it, then run init again",
            details={"file": str(spec_file)},
        )
    if not force:
        raise ConflictError(
            f"{spec_file} exists already; pass --force to overwrite it",
            details={"file": str(spec_file)},
        )
    return spec_file


def write_project(
    root: Path, *, text: str | None = None, name: str | None = None, force: bool = False
) -> ProjectSpec:
    """Write ``loopml.yaml`` (``text``, or the commented template for a project called ``name``)
    and the JSON Schema it points at into ``root``. The text is validated first: nothing is
    written when it is invalid."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    spec_file = check_writable(root, force=force)
    if text is None:
        text = example_spec(name or project_name(root))
    spec = parse_spec(text, file=str(spec_file))
    (root / ".loopml").mkdir(parents=True, exist_ok=True)
    write_schema(root)
    spec_file.write_text(text, encoding="utf-8")
    return spec


def write_schema(root: Path) -> Path:
    """Write the spec's JSON Schema where the spec's first lines point (``.loopml/``)."""
    path = Path(root) / SCHEMA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec_json_schema() + "\n", encoding="utf-8")
    return path
