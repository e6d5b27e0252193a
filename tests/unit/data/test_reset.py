"""`loopml data reset SOURCE`: forget a source's data (lake, quarantine, schema) after asking,
say what was removed, and let the same files be ingested again from scratch."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from loopml import Project
from loopml.cli import main
from loopml.errors import ConflictError, NotFoundError

SPEC = "project: t\nsources:\n  s:\n    format: csv\n    timestamp: t\n{extra}"


def _file(tmp_path: Path) -> Path:
    rows = [f"2021-01-01T00:00:{i:02d}Z,{i},P{i % 5}" for i in range(40)]
    rows[7] = "2090-01-01T00:00:07Z,7,P2"  # in the future: quarantined
    path = tmp_path / "a.csv"
    path.write_text("t,level,player\n" + "\n".join(rows) + "\n")
    return path


def test_reset_removes_the_sources_data_and_the_same_file_lands_again(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project(SPEC.format(extra=""))
    (first,) = p.data.ingest("s", [_file(tmp_path)])
    assert (first.rows_accepted, first.rows_quarantined) == (39, 1)
    before = p.data.snapshot(note="before the reset")

    plan = p.data.reset_plan("s")
    assert (plan.batches, plan.rows_in_lake, plan.quarantine_entries, plan.rows_held) == (
        1,
        39,
        1,
        1,
    )
    assert plan.schema_versions == 1 and plan.snapshots == [before.id]
    done = p.data.reset("s", by="tester")
    assert done == plan

    assert p.data.batches("s") == []
    with pytest.raises(NotFoundError, match="no schema yet"):
        p.data.schema("s")
    (entry,) = p.data.quarantine.list(source="s", status="dropped")
    assert entry.resolution is not None and "reset" in entry.resolution["reason"]
    assert not any((p.root / ".loopml" / "lake" / "s").glob("_batch=*"))

    # A snapshot taken before the reset no longer holds the rows: reading it says why.
    with pytest.raises(ConflictError, match="loopml data reset"):
        p.data.query("SELECT count(*) FROM s", snapshot=before.id)

    # The same file is new again: ingested from scratch, its schema inferred anew.
    (again,) = p.data.ingest("s", [_file(tmp_path)])
    assert again.status == "partial" and again.rows_accepted == 39
    versions = p.data.schema_versions("s")
    assert [v.status for v in versions] == ["reset", "active"]
    assert p.data.query("SELECT count(*) AS n FROM s").to_pylist() == [{"n": 39}]


def test_reset_of_an_unknown_source_names_the_sources(
    make_project: Callable[..., Project],
) -> None:
    p = make_project(SPEC.format(extra=""))
    with pytest.raises(NotFoundError, match="no source 'nope'"):
        p.data.reset_plan("nope")


def test_cli_reset_asks_first_and_prints_what_it_removed(
    make_project: Callable[..., Project],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = make_project(SPEC.format(extra=""))
    p.data.ingest("s", [_file(tmp_path)])
    root = str(p.root)

    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert main(["data", "reset", "s", "-p", root]) == 1
    shown = capsys.readouterr()
    assert "1 batch" in shown.out and "39 rows" in shown.out and "aborted" in shown.err
    assert len(p.data.batches("s")) == 1  # nothing was removed

    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert main(["data", "reset", "s", "-p", root]) == 0
    assert "reset source s" in capsys.readouterr().out
    assert p.data.batches("s") == []

    p.data.ingest("s", [_file(tmp_path)])
    assert main(["data", "reset", "s", "-p", root, "--yes", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["batches"] == 1 and summary["rows_in_lake"] == 39


WINDOWED = SPEC.format(
    extra="""entities:
  player: [player]
features:
  event: {source: s}
  request: [t, player, level]
  windows:
    recent:
      source: s
      entity: player
      windows: [1h]
      tile: 1m
      aggregates: {games: count}
"""
)


def test_reset_clears_the_online_values_so_a_new_ingest_is_not_counted_twice(
    make_project: Callable[..., Project],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    p = make_project(WINDOWED)
    p.data.ingest("s", [_file(tmp_path)])
    p.features.materialize()
    request = {"t": "2021-01-01T01:00:00Z", "player": "P1", "level": 1}
    assert p.features.vector(request)["recent_games_1h"] == 8

    assert main(["data", "reset", "s", "-p", str(p.root), "--yes"]) == 0
    assert "online values of recent cleared" in capsys.readouterr().out
    p = make_project(WINDOWED)  # a new process, as the CLI was
    p.data.ingest("s", [_file(tmp_path)])
    p.features.materialize()
    assert p.features.vector(request)["recent_games_1h"] == 8
