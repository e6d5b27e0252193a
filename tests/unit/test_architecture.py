"""The import contract (pyproject.toml, [tool.importlinter]): Project is the composition root that
the domain packages never import, the pure algorithms need no storage, and the spec reads no
other part of loopml; and (below) no package imports another package's private modules. Fix the
design, not the contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contract_is_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run(
        [str(lint), "--no-cache", str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


# ------------------------------------------------------------------ private modules stay private
#
# A package's private modules (``loopml.storage._owner``) are its own: another package imports
# what it needs from the package (``from loopml.storage import owner_alive``), which says what is
# shared and lets the package move its insides. import-linter's module wildcards match whole name
# parts, so "every ``_`` module of every other package" is not one of its contracts: this walks
# the same import graph (grimp, which import-linter is built on; TYPE_CHECKING imports excluded
# as in the contract). The root's own helpers (``loopml._lazy``, ``loopml._version``) serve every
# package and are not checked; the composition root (``loopml._project``) is checked like a
# package.

# "importer -> imported": why it stays (none: every reach-in was replaced by a package export).
ALLOWED_REACH_INS: dict[str, str] = {}


def _owner(module: str) -> str:
    """The package a module belongs to (``loopml._project`` is its own)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def private_reach_ins(graph: Any) -> list[str]:
    """Every import of another package's private module, as ``importer -> imported``."""
    found = []
    for importer in sorted(graph.modules):
        if not importer.startswith("loopml."):
            continue
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            parts = imported.split(".")
            if len(parts) < 3 or parts[0] != "loopml" or parts[1].startswith("_"):
                continue
            if not any(p.startswith("_") for p in parts[2:]):
                continue
            if _owner(importer) != _owner(imported):
                found.append(f"{importer} -> {imported}")
    return [f for f in found if f not in ALLOWED_REACH_INS]


def _build() -> Any:
    import grimp

    return grimp.build_graph("loopml", exclude_type_checking_imports=True)


@pytest.fixture(scope="module")
def graph() -> Any:
    return _build()


def test_no_package_imports_another_packages_private_modules(graph: Any) -> None:
    assert private_reach_ins(graph) == []


def test_a_planted_reach_in_is_found() -> None:
    planted = _build()  # its own graph: the others see the code as it is
    planted.add_import(importer="loopml.data._ingest", imported="loopml.storage._owner")
    planted.add_import(importer="loopml._project", imported="loopml.serving._parts")
    planted.add_import(importer="loopml.storage._open", imported="loopml.storage._sqlite")
    assert private_reach_ins(planted) == [
        "loopml._project -> loopml.serving._parts",
        "loopml.data._ingest -> loopml.storage._owner",
    ]  # a package's own private modules are its own to import


def test_every_allowed_reach_in_is_still_there(graph: Any) -> None:
    """An allowed reach-in that was removed leaves the list: the list never hides a new one."""
    for allowed in ALLOWED_REACH_INS:
        importer, imported = allowed.split(" -> ")
        assert imported in graph.find_modules_directly_imported_by(importer), allowed
