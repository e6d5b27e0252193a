"""Rollout is built from a project's parts and never imports the project (the composition root
builds it), not even for type checking."""

from __future__ import annotations

import ast
from pathlib import Path

import loopml.rollout


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, ``from a import b`` counted as ``a`` and ``a.b``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_rollout_module_imports_the_project() -> None:
    modules = sorted(Path(loopml.rollout.__file__).parent.glob("*.py"))
    assert len(modules) > 5
    project = {"loopml._project", "loopml.Project", "loopml._project.Project"}
    offenders = {p.name: sorted(_imports(p) & project) for p in modules}
    assert {k: v for k, v in offenders.items() if v} == {}
