"""`loopml replay FILE --at COLUMN` (issue 16, item 11): history answered as traffic from the
CLI, each prediction logged at its row's own time, so that `loopml monitor` windows it by event
time and labels sent by keys and event_time find it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from loopml.cli import main
from tests.unit.monitoring.conftest import Trained, train_project


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train_project(tmp_path_factory.mktemp("replay") / "p")


@pytest.fixture
def root(trained: Trained, tmp_path: Path) -> str:
    copy = tmp_path / "project"
    shutil.copytree(trained.root, copy)
    return str(copy)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def write(table: pa.Table, path: Path) -> Path:
    pacsv.write_csv(table, path)
    return path


def iso(value: Any) -> str:
    return str(value.isoformat())[:19]


def test_replay_logs_each_prediction_at_its_event_time(
    trained: Trained, root: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the raw events: request columns and the label's column; the derived feature is computed
    events = write(trained.traffic.select(["id", "t", "x1", "x2", "cat"]), tmp_path / "ev.csv")
    first, last = trained.traffic["t"][0].as_py(), trained.traffic["t"][-1].as_py()
    code, out = run(capsys, "replay", str(events), "--at", "t", "-p", root)
    assert code == 0, out
    rows = trained.traffic.num_rows
    assert f"replayed {rows:,} rows" in out and "version 1:" in out
    assert f"from {iso(first)} to {iso(last)}" in out
    assert "features computed from snapshot" in out

    code, out = run(capsys, "monitor", "--json", "--no-alerts", "-p", root)
    report = json.loads(out)
    assert report["rows"] == rows
    # windowed by the events' own times, not by when the replay ran
    assert report["period"]["start"][:19] == iso(first)
    assert report["period"]["end"][:19] == iso(last)
    assert len(report["timeline"]) > 1 and report["settings"]["source"] == "data"

    # Labels by the event's keys and event_time find the replayed predictions.
    labels = tmp_path / "labels.csv"
    truth = trained.traffic["flag"].to_pylist()
    labels.write_text(
        "id,event_time,target\n"
        + "".join(
            f"{r['id']},{r['t'].isoformat()},{str(truth[i]).lower()}\n"
            for i, r in enumerate(trained.traffic.select(["id", "t"]).to_pylist())
        )
    )
    code, out = run(capsys, "feedback", str(labels), "-p", root)
    assert code == 0 and f"{rows:,} matched a logged prediction" in out, out

    # Replaying the same file again logs nothing twice.
    assert run(capsys, "replay", str(events), "--at", "t", "-p", root)[0] == 0
    code, out = run(capsys, "monitor", "--json", "--no-alerts", "-p", root)
    assert json.loads(out)["rows"] == rows


def test_replay_with_labels_sends_them_known_when_the_definition_says(
    trained: Trained, root: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = write(trained.traffic, tmp_path / "ev.csv")  # with the label's column, flag
    code, out = run(capsys, "replay", str(events), "--labels", "--json", "-p", root)
    assert code == 0, out
    done = json.loads(out)
    rows = trained.traffic.num_rows
    assert done["at"] == "t" and done["inputs"] == "requests"  # --at: the event's time
    assert done["labels"]["accepted"] == rows and done["labels"]["matching"]["matched"] == rows
    code, out = run(capsys, "monitor", "--json", "--no-alerts", "-p", root)
    report = json.loads(out)
    # each label was known an hour after its event (label.delay): within its window
    assert report["labels"]["labelled"] == rows and report["labels"]["late"] == 0
    assert sum(w["labelled"] for w in report["timeline"]) == rows
    positive = float(pc.mean(pc.cast(trained.traffic["flag"], pa.float64())).as_py())
    last = report["timeline"][-1]
    assert last["performance_final"]["n"] == last["labelled"] == last["rows"]
    overall = report["current"]["cumulative"]["performance"]["positive_rate"]
    assert overall == pytest.approx(positive)


def test_replay_names_what_is_wrong(
    trained: Trained, root: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = write(trained.traffic.select(["id", "t", "x1", "x2", "cat"]), tmp_path / "ev.csv")
    code, out = run(capsys, "replay", str(events), "--at", "when", "-p", root)
    assert code == 2 and "no column 'when'" in out and "id, t, x1" in out
    code, out = run(capsys, "replay", str(events), "--at", "cat", "-p", root)
    assert code == 2 and "'cat' is not a time column" in out
    partial = write(trained.traffic.select(["id", "t", "x1"]), tmp_path / "partial.csv")
    code, out = run(capsys, "replay", str(partial), "-p", root)
    assert code == 2 and "x2" in out and "request feature" in out
    code, out = run(capsys, "replay", str(events), "--labels", "-p", root)
    assert code == 2 and "flag" in out  # the label is computed from a column the file lacks
    code, out = run(capsys, "replay", str(tmp_path / "none.csv"), "-p", root)
    assert code == 2 and "no such file" in out
