"""Start-up: `loopml --help` and `loopml init` import only what they use.

Time is noisy on shared machines, so these tests pin what makes start-up slow: the modules
imported. `benchmarks/startup.py` measures the seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from loopml.cli import COMMANDS, app

HEAVY = ("pyarrow", "duckdb", "sqlalchemy", "pandas", "numpy", "fastapi", "lightgbm", "sklearn")


def _imported_after(code: str) -> set[str]:
    probe = (
        "import sys\n"
        f"{code}\n"
        "import json\n"
        "sys.__stdout__.write('\\n@@' + json.dumps(sorted(sys.modules)))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(run.stdout.rsplit("@@", 1)[1]))


def _cli(args: list[str]) -> str:
    return f"from loopml.cli import main\ncode = main({args!r})\nassert code == 0, code"


def test_help_imports_no_command_module_nor_the_spec() -> None:
    modules = _imported_after(_cli(["--help"]))
    commands = sorted(
        m for m in modules if m.startswith("loopml.cli.") and m != "loopml.cli._common"
    )
    assert commands == []
    assert "loopml.spec" not in modules and "pydantic" not in modules
    assert not modules & set(HEAVY)


def test_init_imports_no_storage_nor_data_library(tmp_path: Path) -> None:
    modules = _imported_after(_cli(["init", str(tmp_path / "p")]))
    assert (tmp_path / "p" / "loopml.yaml").exists()
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
    assert "loopml._project" not in modules


def test_every_command_in_the_table_loads_with_its_summary() -> None:
    group = typer.main.get_command(app)
    ctx = typer.Context(group)  # type: ignore[arg-type]
    assert group.list_commands(ctx) == list(COMMANDS)  # type: ignore[attr-defined]
    for name in COMMANDS:
        cmd = group.get_command(ctx, name)  # type: ignore[attr-defined]
        assert cmd is not None and cmd.name == name
        assert cmd.help, name


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    from loopml.cli import main

    assert main(["--help"]) == 0
    shown = capsys.readouterr().out
    for name in COMMANDS:
        assert f" {name} " in shown, name


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from loopml.cli import main

    assert main(["ingestt"]) == 2
    assert "ingest" in capsys.readouterr().err


def test_a_subcommand_runs_through_the_lazy_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from loopml.cli import main

    assert main(["spec", "json-schema", "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["title"].startswith("loopml")
