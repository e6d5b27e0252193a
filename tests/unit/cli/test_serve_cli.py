"""`loopml precompute` and `loopml serve --help` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopml import Project
from loopml.cli import main


def test_precompute(served: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["precompute", "--window", "400d", "-p", str(served.root), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["keys"] > 1000 and summary["table"] == "pred:flights_delay:1"
    code = main(["precompute", "--window", "soon", "-p", str(served.root)])
    assert code == 2
    code = main(["precompute", "--version", "9", "-p", str(served.root)])
    assert code == 2 and "9" in capsys.readouterr().err


def test_serve_refuses_a_bad_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "loopml.yaml").write_text("project: x\nserving:\n  mode: sometimes\n")
    assert main(["serve", "-p", str(tmp_path)]) == 2
    assert "serving.mode" in capsys.readouterr().err
