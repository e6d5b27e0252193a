"""The public surface: names exported on purpose, and `import loopml` staying light."""

from __future__ import annotations

import subprocess
import sys

import loopml
from loopml import data, draft, features, sampling, spec, storage, testing


def test_all_names_exist() -> None:
    for module in (loopml, data, draft, features, sampling, spec, storage, testing):
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"
    assert loopml.Project.open


def test_import_is_light() -> None:
    code = (
        "import sys, loopml; heavy = [m for m in ('pandas', 'pyarrow', 'duckdb', 'fastapi', 'ray', "
        "'torch', 'sqlalchemy') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
