"""The feedback format at the door (issue 16, items 6, 18 and 20): labels are checked against the
model's task and classes, refused rows are named with the reason and kept, several labels for
one prediction follow an explicit policy, and POST /feedback and `loopml feedback` read the same
formats (a JSON array, JSON Lines, CSV) through one parser."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from loopml import Project
from loopml.cli import main
from loopml.serving import Runtime, create_app
from tests.unit.monitoring.conftest import Trained, features_of

AUTH = {"authorization": "Bearer s3cret"}


def logged(p: Project, trained: Trained, n: int, prefix: str) -> list[str]:
    """Log the first ``n`` traffic rows as predictions; their ids."""
    version = p.monitoring.record_batch(
        features_of(p, trained.traffic.slice(0, n)), id_prefix=prefix
    )["version"]
    return [f"{prefix}-{version}-{i}" for i in range(n)]


def labels_of(p: Project) -> dict[str, Any]:
    p.monitoring.land()
    log = p.monitoring.log
    preds = log.predictions()
    assert preds is not None
    table, _ = log.joined(preds, p.monitoring.join_keys(), "number")
    return dict(zip(table["id"].to_pylist(), table["label"].to_pylist(), strict=True))


@contextmanager
def client(p: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("LOOPML_TOKEN", "s3cret")
    with TestClient(create_app(runtime=Runtime(p))) as c:
        yield c


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# ------------------------------------------------------------------------ labels are checked


def test_a_label_the_model_cannot_have_is_refused_and_cannot_beat_the_right_one(
    synth: Trained, tmp_path: Path
) -> None:
    truth = synth.traffic["flag"].to_pylist()
    with synth.copy(tmp_path) as p:
        ids = logged(p, synth, 3, "v")
        sent = p.monitoring.feedback(
            [
                {"prediction_id": ids[0], "target": "maybe"},  # first: it won before
                {"prediction_id": ids[0], "target": truth[0]},
                {"prediction_id": ids[1], "target": 2},
                {"prediction_id": ids[2], "target": "No"},
            ]
        )
        assert sent["accepted"] == 2
        refused = {r["row"]: r["error"] for r in sent["rejected"]}
        assert sorted(refused) == [0, 2]
        for error, value in ((refused[0], "'maybe'"), (refused[2], "2")):
            assert "'target'" in error and value in error and "true or false" in error
        labels = labels_of(p)
        assert labels[ids[0]] == float(truth[0])
        assert labels[ids[1]] is None and labels[ids[2]] == 0.0
        # Nothing is lost: the refused rows are kept with their reasons, and counted.
        report = p.monitoring.report(alerts=False)
        assert report.labels.refused == 2
        folder = "monitoring/m/refused"
        kept = [
            orjson.loads(line)
            for name in p.lake_files.list(folder)
            for line in p.lake_files.read_bytes(f"{folder}/{name}").splitlines()
        ]
        assert sorted(k["row"] for k in kept) == [0, 2] and all(k["error"] for k in kept)


def test_a_word_for_a_regression_label_is_refused_over_http_and_by_the_cli(
    synth_regression: Trained,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    values = synth_regression.traffic["value"].to_pylist()
    with synth_regression.copy(tmp_path) as p:
        ids = logged(p, synth_regression, 6, "r")
        with client(p, monkeypatch) as c:
            r = c.post(
                "/feedback", json=[{"prediction_id": ids[0], "target": "high"}], headers=AUTH
            )
            assert r.status_code == 422, r.text
            error = r.json()["error"]
            assert "row 0" in error["message"] and "'target'" in error["message"]
            assert "'high'" in error["message"] and "number" in error["message"]
            r = c.post(
                "/feedback",
                json=[
                    {"prediction_id": ids[0], "target": values[0]},
                    {"prediction_id": ids[1], "target": "n/a"},
                    {"prediction_id": ids[2], "target": str(values[2])},
                ],
                headers=AUTH,
            )
            assert r.status_code == 202, r.text
            assert r.json()["accepted"] == 2 and [x["row"] for x in r.json()["rejected"]] == [1]
        root = str(p.root)
    csv = tmp_path / "labels.csv"
    csv.write_text(
        f"prediction_id,target\n{ids[3]},{values[3]}\n{ids[4]},unknown\n{ids[5]},{values[5]}\n"
    )
    code, out = run(capsys, "feedback", str(csv), "-p", root)
    assert code == 3, out  # rows were refused
    assert "line 3" in out and "'unknown'" in out and "2 labels sent, 1 refused" in out
    # Every accepted label is used: none is dropped on the way to the metrics.
    code, out = run(capsys, "monitor", "--json", "-p", root)
    report = json.loads(out)
    assert report["labels"]["labelled"] == report["labels"]["matched"] == 4
    assert report["timeline"][-1]["performance_final"]["n"] == 4


# ------------------------------------------------------------------------ several labels


@pytest.mark.parametrize(("policy", "kept"), [("first", 1.0), ("last", 0.0), ("refuse", None)])
def test_several_labels_for_one_prediction_follow_the_declared_policy(
    synth: Trained,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    policy: str,
    kept: float | None,
) -> None:
    with synth.copy(tmp_path, extra=f"monitoring:\n  on_conflict: {policy}\n") as p:
        ids = logged(p, synth, 4, "c")
        sent = p.monitoring.feedback(
            [
                {"prediction_id": ids[0], "target": True},
                {"prediction_id": ids[1], "target": "no"},
                {"prediction_id": ids[0], "target": "false"},  # disagrees
                {"prediction_id": ids[1], "target": 0},  # the same label again
            ]
        )
        assert sent["accepted"] == 4
        labels = labels_of(p)
        assert labels[ids[0]] == kept and labels[ids[1]] == 0.0
        stats = p.monitoring.report(alerts=False).labels
        assert stats.on_conflict == policy
        assert (stats.duplicates, stats.conflicting, stats.conflicted) == (2, 1, 1)
        assert stats.labelled == (1 if policy == "refuse" else 2)
        root = str(p.root)
    code, out = run(capsys, "monitor", "-p", root)
    assert code == 0 and "1 conflicting" in out and f"on_conflict: {policy}" in out


def test_the_conflict_policy_is_checked_in_the_spec(make_project: Any) -> None:
    from loopml.errors import SpecError

    with pytest.raises(SpecError, match="on_conflict"):
        make_project(extra="monitoring:\n  on_conflict: newest\n")


# ------------------------------------------------------------------ one reader for both doors


ROWS = 4


def rows_of(ids: list[str], truth: list[bool]) -> list[dict[str, Any]]:
    return [{"prediction_id": ids[i], "target": truth[i]} for i in range(ROWS)]


def as_csv(rows: list[dict[str, Any]]) -> str:
    return "prediction_id,target\n" + "".join(
        f"{r['prediction_id']},{str(r['target']).lower()}\n" for r in rows
    )


def as_lines(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_the_cli_reads_every_format_the_http_route_reads(
    synth: Trained,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    truth = synth.traffic["flag"].to_pylist()
    with synth.copy(tmp_path) as p:
        ids = logged(p, synth, ROWS, "f")
        rows = rows_of(ids, truth)
        with client(p, monkeypatch) as c:
            bodies: list[tuple[dict[str, str], bytes]] = [
                ({}, json.dumps(rows).encode()),  # a JSON array
                ({}, json.dumps({"rows": rows}).encode()),
                ({"content-type": "application/x-ndjson"}, as_lines(rows).encode()),
                ({}, as_lines(rows).encode()),  # JSON Lines without saying so
                ({"content-type": "text/csv"}, as_csv(rows).encode()),
            ]
            for headers, body in bodies:
                r = c.post("/feedback", content=body, headers={**AUTH, **headers})
                assert r.status_code == 202, (headers, body[:40], r.text)
                assert r.json() == {"accepted": ROWS, "rejected": []}
            # Refused lines of JSON Lines and CSV bodies are named by their line.
            bad = as_lines(rows[:1]) + '{"prediction_id": "x"}\n'
            r = c.post("/feedback", content=bad.encode(), headers=AUTH)
            assert r.status_code == 202 and r.json()["rejected"][0]["line"] == 2
            r = c.post(
                "/feedback",
                content=(as_csv(rows[:1]) + "x,perhaps\n").encode(),
                headers={**AUTH, "content-type": "text/csv"},
            )
            assert r.status_code == 202 and r.json()["rejected"][0]["line"] == 3
        root = str(p.root)
    files = {
        "array.json": json.dumps(rows, indent=2),  # an array over several lines
        "object.json": json.dumps({"rows": rows}),
        "lines.json": as_lines(rows),
        "lines.jsonl": as_lines(rows),
        "labels.csv": as_csv(rows),
    }
    for name, text in files.items():
        path = tmp_path / name
        path.write_text(text)
        code, out = run(capsys, "feedback", str(path), "--json", "-p", root)
        assert code == 0, (name, out)
        sent = json.loads(out[: out.rindex("}") + 1])
        assert (sent["accepted"], sent["rejected"]) == (ROWS, []), name
        assert sent["matching"]["matched"] == ROWS
    broken = tmp_path / "broken.json"
    broken.write_text('[{"prediction_id": "x", ')
    code, out = run(capsys, "feedback", str(broken), "-p", root)
    assert code == 2 and "not valid JSON" in out


def test_event_time_stands_for_a_key_that_is_the_event_time() -> None:
    # A primary key of the event's time and a team: `event_time` is that key's value, so a
    # label by the team and event_time names the event without repeating the time column.
    from loopml.monitoring._feedback import FeedbackSchema, check_feedback, key_of
    from loopml.monitoring._labels import LabelDomain

    schema = FeedbackSchema(
        label="home_win",
        join_keys=("Date", "HomeTeam"),
        domain=LabelDomain("binary"),
        event_time_column="Date",
    )
    rows = [
        {"HomeTeam": "Hamburger SV", "event_time": "2000-08-11T14:15:00", "home_win": True},
        {"HomeTeam": "Hamburger SV", "Date": "2000-08-11 14:15:00", "home_win": True},
        {"keys": {"HomeTeam": "Hamburger SV"}, "event_time": "2000-08-11T14:15", "home_win": 1},
        {"HomeTeam": "Hamburger SV", "home_win": True},  # no time at all: not one event
    ]
    checked = check_feedback(rows, schema, source="test", now=0)
    keys = {orjson.loads(p)["key"] for p in checked.payloads}
    assert keys == {key_of(["2000-08-11T14:15:00", "Hamburger SV"])}
    assert len(checked.payloads) == 3
    (refused,) = checked.rejected
    assert refused["row"] == 3 and "event_time" in refused["error"]
