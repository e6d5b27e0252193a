"""Labels find their predictions (issue 16, items 1 and 14): by the event's keys and event time
whenever the prediction was made (served later, replayed, backfilled), with every label
received accounted for, and `loopml feedback` / `loopml monitor` saying how many matched and
why the others did not, instead of a success message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from loopml.cli import main
from loopml.serving import Runtime, create_app
from tests.unit.monitoring.conftest import Trained, features_of, requests

AUTH = {"authorization": "Bearer s3cret"}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def served_over_http(
    trained: Trained, p: Any, rows: pa.Table, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Serve ``rows`` as live requests (logged at the clock's time, years after their event
    time); the prediction ids."""
    monkeypatch.setenv("LOOPML_TOKEN", "s3cret")
    with TestClient(create_app(runtime=Runtime(p))) as c:
        r = c.post("/predict", json={"rows": requests(rows)})
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["predictions"]]


def test_labels_by_keys_and_event_time_match_predictions_served_after_the_event(
    synth: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = synth.traffic.slice(0, 30)
    truth = rows["flag"].to_pylist()
    with synth.copy(tmp_path) as p:
        ids = served_over_http(synth, p, rows, monkeypatch)
        events = rows.select(["id", "t"]).to_pylist()
        # "time" meant a bound on when the prediction was made: refused, naming the fields.
        old = p.monitoring.feedback(
            [{"id": events[0]["id"], "time": events[0]["t"].isoformat(), "target": truth[0]}]
        )
        assert old["accepted"] == 0 and "'event_time'" in old["rejected"][0]["error"]
        sent = p.monitoring.feedback(
            [
                {"id": e["id"], "event_time": e["t"].isoformat(), "target": truth[i]}
                for i, e in enumerate(events[:20])
            ]
            # the event's time column by its own name is its event time too
            + [
                {"id": e["id"], "t": e["t"], "target": truth[20 + i]}
                for i, e in enumerate(events[20:25])
            ]
            # keys alone: the id names one event
            + [
                {"keys": {"id": e["id"]}, "label": truth[25 + i]} for i, e in enumerate(events[25:])
            ],
            match=True,
        )
        assert sent["accepted"] == 30 and sent["rejected"] == []
        assert sent["matching"]["matched"] == 30 and sent["matching"]["unknown"] == 0
        report = p.monitoring.report(alerts=False)
        labels = report.labels
        assert (labels.matched, labels.unknown, labels.labelled) == (30, 0, 30)
        assert report.rows == len(ids) == 30


def test_event_time_chooses_among_events_with_the_same_keys(synth: Trained, tmp_path: Path) -> None:
    """Keys that name an entity rather than an event: event_time picks the event; without it the
    label is ambiguous, counted and not joined."""
    rows = synth.traffic.slice(0, 12)
    with synth.copy(tmp_path, extra="monitoring:\n  join_keys: [cat]\n") as p:
        version = p.monitoring.record_batch(features_of(p, rows), id_prefix="k")["version"]
        events = rows.select(["cat", "t", "flag"]).to_pylist()
        p.monitoring.feedback(
            [
                {"cat": e["cat"], "event_time": e["t"].isoformat(), "target": e["flag"]}
                for e in events[:6]
            ]
            + [{"cat": events[6]["cat"], "target": True}]  # which of that category's events?
            + [{"cat": events[0]["cat"], "event_time": "2030-01-01T00:00:00Z", "target": True}]
            + [{"cat": "zzz", "event_time": events[0]["t"].isoformat(), "target": True}]
        )
        report = p.monitoring.report(alerts=False).to_dict()
        labels = report["labels"]
        assert (labels["matched"], labels["ambiguous"], labels["unknown"]) == (6, 1, 2)
        assert (
            labels["received"]
            == 9
            == (
                labels["matched"]
                + labels["elsewhere"]
                + labels["unknown"]
                + labels["ambiguous"]
                + labels["unreadable"]
            )
        )
        reasons = report["label_reasons"]
        assert reasons["no_prediction_at_event_time"]["count"] == 1
        assert reasons["no_prediction_keys"]["count"] == 1
        assert "zzz" in reasons["no_prediction_keys"]["examples"][0]
        p.monitoring.land()
        preds = p.monitoring.log.predictions()
        assert preds is not None
        table, _ = p.monitoring.log.joined(preds, ["cat"], "number")
        joined = dict(zip(table["id"].to_pylist(), table["label"].to_pylist(), strict=True))
        for i, e in enumerate(events):
            assert joined[f"k-{version}-{i}"] == (float(e["flag"]) if i < 6 else None)


def test_a_monitor_whose_labels_all_missed_reports_zero_matched(
    synth: Trained, tmp_path: Path
) -> None:
    with synth.copy(tmp_path) as p:
        p.monitoring.record_batch(features_of(p, synth.traffic.slice(0, 20)), id_prefix="z")
        sent = p.monitoring.feedback(
            [{"prediction_id": f"nope-{i}", "target": True} for i in range(5)]
        )
        assert sent["accepted"] == 5
        report = p.monitoring.report(alerts=False)  # raised ArrowIndexError before
        labels = report.labels
        assert (labels.received, labels.matched, labels.unknown) == (5, 0, 5)
        assert (labels.labelled, labels.pending) == (0, 20)
        assert report.label_reasons is not None and report.current is not None
        assert report.label_reasons["no_prediction_id"].examples[0] == "nope-0"
        assert report.current.current.labelled == 0


def test_labels_for_another_version_are_counted_apart(synth: Trained, tmp_path: Path) -> None:
    with synth.copy(tmp_path) as p:
        p.models.train()  # version 2: trained on the same rows, to have another version
        first = p.monitoring.record_batch(
            features_of(p, synth.traffic.slice(0, 10)), ref=1, id_prefix="a"
        )
        second = p.monitoring.record_batch(
            features_of(p, synth.traffic.slice(10, 10)), ref=2, id_prefix="b"
        )
        p.monitoring.feedback(
            [{"prediction_id": f"a-{first['version']}-{i}", "target": True} for i in range(4)]
            + [{"prediction_id": f"b-{second['version']}-{i}", "target": False} for i in range(3)]
        )
        labels = p.monitoring.report(version=2, alerts=False).labels
        assert (labels.received, labels.matched, labels.elsewhere) == (7, 3, 4)
        assert labels.unknown == 0


def test_the_cli_says_how_many_labels_matched_and_fails_when_none_did(
    synth: Trained,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = synth.traffic.slice(0, 40)
    truth = rows["flag"].to_pylist()
    with synth.copy(tmp_path) as p:
        served_over_http(synth, p, rows, monkeypatch)
        root = str(p.root)
    events = rows.select(["id", "t"]).to_pylist()
    wrong = tmp_path / "wrong.csv"  # the events' keys, at a time none of them happened
    wrong.write_text(
        "id,event_time,target\n"
        + "".join(f"{e['id']},2030-01-01T00:00:00,{int(truth[i])}\n" for i, e in enumerate(events))
    )
    code, out, err = run(capsys, "feedback", str(wrong), "-p", root)
    assert code == 1
    assert "40 labels sent, 0 refused" in out
    assert "0 matched a logged prediction, 40 match none yet" in out
    assert "none for this event_time" in out and "none of the 40 labels sent matched" in err
    code, out, _ = run(capsys, "feedback", str(wrong), "--json", "-p", root)
    result = json.loads(out)
    assert code == 1 and result["matching"]["matched"] == 0 and result["warnings"]

    few = tmp_path / "few.jsonl"  # 10 right, 30 for events never predicted
    few.write_text(
        "".join(
            json.dumps({"id": e["id"], "event_time": e["t"].isoformat(), "target": truth[i]}) + "\n"
            for i, e in enumerate(events[:10])
        )
        + "".join(json.dumps({"id": 10**6 + i, "target": True}) + "\n" for i in range(30))
    )
    code, out, err = run(capsys, "feedback", str(few), "-p", root)
    assert code == 1 and "only 10 of the 40 labels sent matched" in err
    assert "30: no logged prediction has these keys" in out
    assert main(["feedback", str(few), "--min-match", "0.2", "-p", root]) == 0
    capsys.readouterr()

    right = tmp_path / "right.csv"
    right.write_text(
        "id,event_time,target\n"
        + "".join(
            f"{e['id']},{e['t'].isoformat()},{'yes' if truth[i] else 'no'}\n"
            for i, e in enumerate(events[10:])
        )
        + f"{events[0]['id']},{events[0]['t'].isoformat()},{'no' if truth[0] else 'yes'}\n"
    )
    code, out, err = run(capsys, "feedback", str(right), "-p", root)
    assert code == 0, out + err
    assert "31 labels sent, 0 refused" in out and "31 matched a logged prediction" in out
    assert "1 labels for predictions labelled before, 1 of them with a different label" in out

    # The monitor prints every count its verdicts rest on, not only under --json.
    code, out, _ = run(capsys, "monitor", "-p", root)
    assert code == 0
    # the wrong file twice, the few twice (once with --min-match), the right one
    assert "labels: 191 received: 51 matched" in out
    assert "140 for no logged prediction" in out and "refused" not in out
    assert "11 duplicates, 1 conflicting (the first label received is kept" in out
    assert "predictions labelled" in out and "still waiting" in out
    code, out, _ = run(capsys, "monitor", "--json", "-p", root)
    labels = json.loads(out)["labels"]
    assert labels["received"] == 40 + 40 + 40 + 40 + 31
    assert labels["received"] == (
        labels["matched"]
        + labels["elsewhere"]
        + labels["unknown"]
        + labels["ambiguous"]
        + labels["unreadable"]
    )


def test_natural_labels_start_at_the_first_logged_event(synth: Trained, tmp_path: Path) -> None:
    # The whole history is in the lake, but predictions were logged only for the last 100
    # events: labels of the earlier events have no prediction to find, and sending them would
    # only fill the monitor's "unknown" count with events nobody asked about.
    import pyarrow.csv as pacsv

    with synth.copy(tmp_path) as p:
        pacsv.write_csv(synth.traffic, p.root / "later.csv")
        (landed,) = p.data.ingest("events", [p.root / "later.csv"])
        assert landed.rows_accepted == synth.traffic.num_rows
        last = synth.traffic.slice(synth.traffic.num_rows - 100)
        p.monitoring.record_batch(features_of(p, last))
        natural = p.monitoring.natural_labels(match=True)
        assert natural["accepted"] == 100, natural
        assert natural["matching"]["matched"] == 100
        assert natural["since"] == last["t"][0].as_py().isoformat()


def test_natural_labels_with_no_prediction_logged_say_so_and_fail(
    synth: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with synth.copy(tmp_path) as p:
        root = str(p.root)
    assert main(["feedback", "--natural", "-p", root]) == 1
    captured = capsys.readouterr()
    assert "no prediction is logged" in captured.out
    assert "no labels sent" in captured.err
