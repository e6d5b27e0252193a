"""`loopml spec check` and every command that reads loopml.yaml: a spec that cannot be read
(hostile YAML, a directory, a link loop, a FIFO) is one line naming the problem, exit 2, and
nothing is created beside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopml.cli import main
from tests.unit.spec.test_yaml import BOMB


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(capsys: pytest.CaptureFixture[str], project: Path, *command: str) -> str:
    before = sorted(p.name for p in project.parent.rglob("*"))
    code, _, err = run(capsys, *command, "-p", str(project))
    assert code == 2, err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert "Traceback" not in err
    assert sorted(p.name for p in project.parent.rglob("*")) == before  # nothing half-made
    return err.strip()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "proj").mkdir()
    return tmp_path / "proj"


@pytest.mark.parametrize("command", [("spec", "check"), ("data", "sources")])
def test_a_recursive_alias_is_one_line_exit_2(
    root: Path, capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    (root / "loopml.yaml").write_text("project: x\nsources: &s\n  f: *s\n")
    err = _one_line_error(capsys, root, *command)
    assert "loopml.yaml:3:" in err and "*s is recursive" in err


def test_an_alias_bomb_is_one_line_exit_2(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "loopml.yaml").write_text(BOMB)
    err = _one_line_error(capsys, root, "spec", "check")
    assert "loopml.yaml:7:" in err and "alias bomb" in err


@pytest.mark.parametrize("command", [("spec", "check"), ("data", "sources")])
def test_a_spec_that_is_a_directory_is_one_line_exit_2(
    root: Path, capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    (root / "loopml.yaml").mkdir()
    err = _one_line_error(capsys, root, *command)
    assert f"{root / 'loopml.yaml'} is a directory" in err


@pytest.mark.parametrize("command", [("spec", "check"), ("data", "sources")])
@pytest.mark.parametrize("given", ["folder", "file"])
def test_a_symlink_loop_is_one_line_exit_2(
    root: Path, capsys: pytest.CaptureFixture[str], command: tuple[str, ...], given: str
) -> None:
    (root / "loopml.yaml").symlink_to(root / "other.yaml")
    (root / "other.yaml").symlink_to(root / "loopml.yaml")
    target = root if given == "folder" else root / "loopml.yaml"
    before = sorted(p.name for p in root.rglob("*"))
    code, _, err = run(capsys, *command, "-p", str(target))
    assert code == 2 and err.strip().count("\n") == 0, err
    assert "loop of symbolic links" in err and str(root / "loopml.yaml") in err
    assert sorted(p.name for p in root.rglob("*")) == before


def test_a_dangling_symlink_names_its_target(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (root / "loopml.yaml").symlink_to(root / "gone.yaml")
    err = _one_line_error(capsys, root, "spec", "check")
    assert "symbolic link to" in err and "gone.yaml" in err and "does not exist" in err


def test_a_fifo_is_refused_without_reading_it(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Reading a FIFO nobody writes to would block the command forever.
    os.mkfifo(root / "loopml.yaml")
    err = _one_line_error(capsys, root, "spec", "check")
    assert "not a regular file" in err and "FIFO" in err


def test_an_unreadable_spec_says_why(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    (root / "loopml.yaml").write_text("project: x\n")
    (root / "loopml.yaml").chmod(0)
    err = _one_line_error(capsys, root, "spec", "check")
    assert "cannot be read" in err and "ermission denied" in err


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("what", ["directory", "link loop"])
def test_init_over_a_spec_that_is_no_file_is_one_line_exit_2_and_writes_nothing(
    root: Path, capsys: pytest.CaptureFixture[str], what: str, force: bool
) -> None:
    if what == "directory":
        (root / "loopml.yaml").mkdir()
    else:
        (root / "loopml.yaml").symlink_to(root / "loopml.yaml")
    code, _, err = run(capsys, "init", str(root), *(["--force"] if force else []))
    assert code == 2 and err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert (what in err) if what == "directory" else ("loop of symbolic links" in err)
    assert sorted(p.name for p in root.iterdir()) == ["loopml.yaml"]  # no .loopml left behind


def test_init_writes_a_json_schema_with_the_bounds_and_check_names_the_range(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    assert run(capsys, "init", str(root))[0] == 0
    schema = json.loads((root / ".loopml" / "spec.schema.json").read_text())
    checks = schema["$defs"]["CheckSpec"]["properties"]
    assert {"type": "number", "minimum": 1, "maximum": 1_000_000} in checks["row_count_ratio"][
        "anyOf"
    ]
    assert (checks["null_rate_increase"]["minimum"], checks["null_rate_increase"]["maximum"]) == (
        0,
        1,
    )
    (root / "loopml.yaml").write_text(
        "project: x\nsources:\n  f:\n    checks:\n      row_count_ratio: 1e999\n"
    )
    err = _one_line_error(capsys, root, "spec", "check")
    assert err == (
        f"error: {root / 'loopml.yaml'}:5: sources.f.checks.row_count_ratio: '1e999' is out of "
        "range: allowed auto, 0 (off) or a number from 1 to 1,000,000"
    )
