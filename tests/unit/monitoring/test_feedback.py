"""Feedback and the monitored log on a real project: labels arriving late, out of order,
duplicated, conflicting, for unknown predictions or before the prediction itself are joined and
counted; bad rows are refused with the field named; landing is idempotent and keeps what it
cannot read; the HTTP route, the CLI, alerts and the drift gauges of /metrics."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from loopml import Project
from loopml.cli import main
from loopml.features import to_micros
from loopml.monitoring import feedback_stream, predictions_stream
from loopml.monitoring._log import GROUP
from loopml.serving import Runtime, create_app
from loopml.spec import ServingSpec, format_duration
from tests.unit.serving.conftest import champion_project, requests_of

MODEL = "flights_delay"
TRAINED_UNTIL = datetime(2013, 1, 26, tzinfo=UTC)  # the champion is trained as of Jan 25
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Built:
    """The champion project, closed (each test works on a copy), and its rows after the
    training cut-off: one per scheduled departure time, in time order."""

    root: Path
    rows: pa.Table


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("feedback") / "champion"
    p = champion_project(root)
    try:
        table = p.features.build(labelled_only=False).table
    finally:
        p.close()
    after = table.filter(
        pc.greater_equal(table["_event_time"], pa.scalar(TRAINED_UNTIL, table["_event_time"].type))
    ).sort_by([("_event_time", "ascending")])
    # Distinct times, so that "an older prediction" is never ambiguous.
    at = pc.cast(after["_event_time"], pa.int64()).to_numpy()
    _, first = np.unique(at, return_index=True)
    return Built(root, after.take(pa.array(np.sort(first))))


@contextmanager
def copy_of(built: Built, where: Path, alerts: str | None = None) -> Iterator[Project]:
    """A private copy of the champion project (with extra alert rules in loopml.yaml)."""
    root = where / "project"
    shutil.copytree(built.root, root)
    if alerts is not None:
        spec = (root / "loopml.yaml").read_text()
        assert "\n  alerts:\n" in spec
        (root / "loopml.yaml").write_text(
            spec.replace("\n  alerts:\n", f"\n  alerts:\n{alerts}", 1)
        )
    p = Project.open(root)
    try:
        yield p
    finally:
        p.close()


def on_days(rows: pa.Table, first: datetime, days: int) -> pa.Table:
    t = rows["_event_time"].type
    return rows.filter(
        pc.and_(
            pc.greater_equal(rows["_event_time"], pa.scalar(first, t)),
            pc.less(rows["_event_time"], pa.scalar(first + days * DAY, t)),
        )
    )


def joined_labels(p: Project) -> dict[str, Any]:
    """Prediction id -> the label the monitor joined to it (None while pending)."""
    p.monitoring.land()
    log = p.monitoring.log
    preds = log.predictions()
    assert preds is not None
    table, _ = log.joined(preds, p.monitoring.join_keys(), "number")
    return dict(zip(table["id"].to_pylist(), table["label"].to_pylist(), strict=True))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


# ----------------------------------------------------------------------------- the label join


def test_late_labels_out_of_order_duplicated_conflicting_unknown_or_early(
    built: Built, tmp_path: Path
) -> None:
    rows = built.rows.slice(0, 120)
    with copy_of(built, tmp_path) as p:
        version = p.registry.get(MODEL, "champion").version
        ids = [f"late-{version}-{i}" for i in range(rows.num_rows)]
        label = {i: i % 3 == 0 for i in range(rows.num_rows)}

        def by_id(i: int, value: bool | None = None) -> dict[str, Any]:
            return {"prediction_id": ids[i], "delayed": label[i] if value is None else value}

        # Labels for the ten newest predictions arrive (and land) before they are logged.
        early = p.monitoring.feedback([by_id(i) for i in range(119, 109, -1)])
        assert early == {"accepted": 10, "rejected": []}
        assert p.monitoring.land().feedback == 10
        assert p.monitoring.report().rows == 0

        assert p.monitoring.record_batch(rows, id_prefix="late")["predictions"] == 120
        # The rest newest first; predictions 0-19 get no label.
        late = p.monitoring.feedback([by_id(i) for i in range(109, 19, -1)])
        assert late["accepted"] == 90
        extra = [
            by_id(100),  # the same label again
            {"prediction_id": f"late-{version}-999", "delayed": True},  # no such prediction
            by_id(60, not label[60]),  # a different label: the first one received wins
            by_id(50),
            {"prediction_id": "nope", "delayed": False},
            by_id(115, not label[115]),  # conflicts with a label that came before the prediction
            by_id(30),
            by_id(25, not label[25]),
            {"prediction_id": f"late-{version + 1}-0", "delayed": True},
        ]
        assert p.monitoring.feedback(extra)["accepted"] == len(extra)

        report = p.monitoring.report(alerts=False).to_dict()
        assert report["rows"] == 120
        labels = {k: v for k, v in report["labels"].items() if not k.startswith("delay_")}
        # Every label for a known prediction after the first (for the newest prediction) follows
        # a label for a newer prediction: all of them are out of order. Every label received is
        # counted once: matched (duplicates included), elsewhere, unknown, ambiguous, unreadable.
        assert labels == {
            "received": 100 + 9,
            "matched": 100 + 6,
            "elsewhere": 0,
            "unknown": 3,
            "ambiguous": 0,
            "unreadable": 0,
            "duplicates": 6,
            "conflicting": 3,
            "conflicted": 3,
            "out_of_order": 100 + 6 - 1,
            "labelled": 100,
            "pending": 20,
            # sent now, for predictions of 2013: known long after their windows ended
            "late": 100,
            "refused": 0,
            "on_conflict": "first",
        }
        assert report["label_reasons"]["no_prediction_id"]["count"] == 3
        joined = joined_labels(p)
        assert all(joined[ids[i]] is None for i in range(20))
        assert {i: joined[ids[i]] for i in range(20, 120)} == {
            i: float(label[i]) for i in range(20, 120)
        }
        # The first received label is the one used, whichever came first.
        assert (joined[ids[60]], joined[ids[115]], joined[ids[25]]) == (1.0, 0.0, 0.0)
        assert report["labels"]["delay_p50_s"] > 0


def test_labels_by_the_events_keys_and_natural_labels(built: Built, tmp_path: Path) -> None:
    rows = built.rows.slice(200, 300)
    with copy_of(built, tmp_path) as p:
        assert p.monitoring.join_keys() == ["time_hour", "carrier", "flight"]
        version = p.monitoring.record_batch(rows, id_prefix="key")["version"]
        ids = [f"key-{version}-{i}" for i in range(rows.num_rows)]
        truth = rows["delayed"].to_pylist()
        keyed = [i for i in range(rows.num_rows) if truth[i] is not None][:40]
        assert len(keyed) == 40
        sent = []
        for n, i in enumerate(keyed):
            r = rows.slice(i, 1).to_pylist()[0]
            hour: datetime = r["time_hour"]
            spelling = [
                hour.isoformat(),  # "+00:00"
                hour.strftime("%Y-%m-%dT%H:%M:%SZ"),
                hour.strftime("%Y-%m-%dT%H:%M:%S"),  # no zone: UTC
                hour.strftime("%Y-%m-%d %H:%M"),
                hour.astimezone(ZoneInfo("America/New_York")).isoformat(),  # "-05:00"
            ][n % 5]
            keys = {"time_hour": spelling, "carrier": r["carrier"], "flight": r["flight"]}
            wrong = not truth[i]  # the opposite of the truth, to tell these apart below
            if n % 2:
                sent.append({**keys, "delayed": wrong})
            else:
                sent.append(
                    {"keys": keys, "label": wrong, "event_time": r["_event_time"].isoformat()}
                )
        assert p.monitoring.feedback(sent) == {"accepted": 40, "rejected": []}

        natural = p.monitoring.natural_labels()
        # The flights from the first logged prediction's event on (earlier ones have none).
        first = rows["_event_time"][0].as_py()
        assert natural["since"] == first.isoformat()
        assert natural["accepted"] > 4_000 and natural["rejected"] == []

        joined = joined_labels(p)
        for i in keyed:
            assert joined[ids[i]] == float(not truth[i]), ids[i]
        # The natural labels are the flights' arrival delays over 15 minutes.
        flights = pcsv.read_csv(p.root / "flights.csv")
        arr_delay = {
            (to_micros(h), c, f): d
            for h, c, f, d in zip(
                flights["time_hour"].to_pylist(),
                flights["carrier"].to_pylist(),
                flights["flight"].to_pylist(),
                flights["arr_delay"].to_pylist(),
                strict=True,
            )
        }
        others = [i for i in range(rows.num_rows) if i not in set(keyed)]
        for i in others:
            r = rows.slice(i, 1).to_pylist()[0]
            delay = arr_delay[(to_micros(r["time_hour"]), r["carrier"], r["flight"])]
            assert joined[ids[i]] == (None if delay is None else float(delay > 15)), ids[i]
        assert any(joined[ids[i]] == 1.0 for i in others)
        assert any(joined[ids[i]] == 0.0 for i in others)

        labels = p.monitoring.report(alerts=False).labels
        labelled = sum(t is not None for t in truth)
        assert labels.labelled == labelled
        assert labels.matched == labelled + labels.duplicates  # labels, not predictions
        assert labels.pending == rows.num_rows - labelled
        assert labels.duplicates == labels.conflicting == 40
        assert labels.received == 40 + natural["accepted"]
        assert labels.unknown == natural["accepted"] - labelled


def test_a_window_counts_only_the_labels_known_by_its_end(built: Built, tmp_path: Path) -> None:
    rows = on_days(built.rows, datetime(2013, 1, 26, tzinfo=UTC), 2)
    with copy_of(built, tmp_path) as p:
        version = p.monitoring.record_batch(rows, id_prefix="w")["version"]
        end = datetime(2013, 1, 27, tzinfo=UTC)
        first_day = int(
            pc.sum(pc.less(rows["_event_time"], pa.scalar(end, rows["_event_time"].type))).as_py()
        )
        assert first_day > 100 and rows.num_rows > first_day
        seen = [
            "2013-01-26T23:30:00Z",  # known within the window
            (end + timedelta(seconds=1)).isoformat(),  # just after it
            "2013-02-10T00:00:00+00:00",  # much later
        ]
        sent = [
            {"prediction_id": f"w-{version}-{i}", "delayed": i % 2 == 0, "observed_at": seen[i % 3]}
            for i in range(30)
        ]
        assert p.monitoring.feedback(sent)["accepted"] == 30

        report = p.monitoring.report(window=DAY, alerts=False)
        assert report.labels.labelled == 30
        by_day = {item.start[:10]: item for item in report.timeline or []}
        assert set(by_day) == {"2013-01-26", "2013-01-27"}
        assert by_day["2013-01-26"].rows == first_day
        assert by_day["2013-01-26"].labelled == 10
        assert by_day["2013-01-26"].performance["n"] == 10
        assert by_day["2013-01-26"].performance_final["n"] == 30
        # A day later the sliding window knows the label seen a second after the first day.
        assert by_day["2013-01-27"].labelled == 0
        assert by_day["2013-01-27"].sliding.performance["n"] == 20


# ---------------------------------------------------------------------------- refused feedback


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({"prediction_id": "x"}, ["missing", "'delayed'"]),
        ({"prediction_id": "x", "delayed": None}, ["'delayed'", "null"]),
        ({"prediction_id": "x", "delayed": float("nan")}, ["'delayed'", "finite"]),
        ({"delayed": True}, ["'prediction_id'", "time_hour, carrier, flight"]),
        ({"prediction_id": "x", "delayed": {"yes": 1}}, ["'delayed'", "number"]),
        ({"prediction_id": "x", "delayed": [1]}, ["'delayed'"]),
        # "time" meant a bound on when the prediction was made: refused, naming the replacements
        ({"prediction_id": "x", "delayed": 1, "time": "yesterday"}, ["'time'", "'event_time'"]),
        ({"prediction_id": "x", "delayed": 1, "time": True}, ["'time'", "'observed_at'"]),
        ({"prediction_id": "x", "delayed": 1, "event_time": "yesterday"}, ["'event_time'"]),
        ({"prediction_id": "x", "delayed": 1, "observed_at": "soon"}, ["'observed_at'"]),
        ({"prediction_id": 7, "delayed": 1}, ["'prediction_id'", "string"]),
        ({"keys": ["UA"], "delayed": 1}, ["'keys'", "object"]),
        ({"keys": {"carrier": "UA", "flight": 1}, "delayed": 1}, ["'keys'", "'time_hour'"]),
        ("not an object", ["object"]),
        (None, ["empty"]),
    ],
)
def test_bad_feedback_rows_are_refused_naming_the_field(
    built: Built, tmp_path: Path, row: Any, words: list[str]
) -> None:
    with copy_of(built, tmp_path) as p:
        good = [{"prediction_id": "g-1", "delayed": True}, {"prediction_id": "g-2", "label": 0}]
        result = p.monitoring.feedback([good[0], row, good[1]])
        assert result["accepted"] == 2
        (refused,) = result["rejected"]
        assert refused["row"] == 1
        for word in words:
            assert word in refused["error"], refused
        landed = p.monitoring.land()
        assert (landed.feedback, landed.rejected) == (2, 0)
        fb = p.monitoring.log.feedback()
        assert fb is not None and sorted(fb["prediction_id"].to_pylist()) == ["g-1", "g-2"]


def test_feedback_files_name_the_lines_they_refuse(built: Built, tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("prediction_id,delayed\nf-1,1\nf-2,\nf-3,0\n")
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text(
        '{"prediction_id": "j-1", "delayed": 1}\n'
        '{"prediction_id": "j-2", "delayed": \n'
        '{"prediction_id": "j-3"}\n'
        "\n"
        '["j-5", 1]\n'
        '{"prediction_id": "j-6", "delayed": false}\n'
    )
    with copy_of(built, tmp_path) as p:
        from_csv = p.monitoring.feedback_file(csv)
        assert from_csv["accepted"] == 2
        assert [(r["line"], "'delayed'" in r["error"]) for r in from_csv["rejected"]] == [(3, True)]

        from_jsonl = p.monitoring.feedback_file(jsonl)
        assert from_jsonl["accepted"] == 2
        refused = {r["line"]: r["error"] for r in from_jsonl["rejected"]}
        assert sorted(refused) == [2, 3, 4, 5]
        assert "line 2 is not JSON" in refused[2]
        assert "'delayed'" in refused[3]
        assert "empty" in refused[4] and "object" in refused[5]

        assert p.monitoring.land().feedback == 4
        fb = p.monitoring.log.feedback()
        assert fb is not None
        assert sorted(fb["prediction_id"].to_pylist()) == ["f-1", "f-3", "j-1", "j-6"]
        assert set(fb["source"].to_pylist()) == {"file:labels.csv", "file:labels.jsonl"}


def test_an_empty_prediction_id_is_refused(built: Built, tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("prediction_id,delayed\nf-1,1\n,0\n")
    with copy_of(built, tmp_path) as p:
        result = p.monitoring.feedback_file(csv)
        assert result["accepted"] == 1
        assert [(r["line"], "'prediction_id'" in r["error"]) for r in result["rejected"]] == [
            (3, True)
        ]


def test_string_labels_of_a_binary_model_are_read_or_refused(built: Built, tmp_path: Path) -> None:
    cases = [("true", 1.0), ("false", 0.0), ("1", 1.0), ("0", 0.0)]
    with copy_of(built, tmp_path) as p:
        version = p.monitoring.record_batch(built.rows.slice(0, 10), id_prefix="s")["version"]
        ids = [f"s-{version}-{i}" for i in range(len(cases))]
        result = p.monitoring.feedback(
            [{"prediction_id": i, "delayed": v} for i, (v, _) in zip(ids, cases, strict=True)]
        )
        refused = {r["row"] for r in result["rejected"]}
        joined = joined_labels(p)
        for n, (_, expected) in enumerate(cases):
            if n not in refused:
                assert joined[ids[n]] == expected, cases[n]
        labels = p.monitoring.report(alerts=False).labels
        assert labels.labelled == sum(joined[i] is not None for i in ids)


# ---------------------------------------------------------------------------------- landing


def test_landing_is_idempotent_and_redelivery_is_not_counted_twice(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = built.rows.slice(400, 50)
    with copy_of(built, tmp_path) as p:
        events = p.events
        version = p.monitoring.record_batch(rows, id_prefix="r")["version"]
        payloads = [
            e.payload for e in events.read(predictions_stream(MODEL), "copy", "t", count=100)
        ]
        assert len(payloads) == 50
        sent = [{"prediction_id": f"r-{version}-{i}", "delayed": i % 2 == 0} for i in range(20)]
        assert p.monitoring.feedback(sent)["accepted"] == 20

        # A crash after the feedback segment is written and before it is acknowledged...
        ack = events.ack

        def crash(stream: str, group: str, ids: Any) -> int:
            if stream == feedback_stream(MODEL):
                raise RuntimeError("killed")
            return ack(stream, group, ids)

        monkeypatch.setattr(events, "ack", crash)
        with pytest.raises(RuntimeError, match="killed"):
            p.monitoring.land()
        monkeypatch.undo()
        assert events.pending(feedback_stream(MODEL), GROUP) == 20
        # ... delivers the batch again: it is landed again and read once.
        again = p.monitoring.land()
        assert (again.predictions, again.feedback, again.rejected) == (0, 20, 0)
        # (rewritten under the same name: the same events make the same segment)
        assert len(p.lake_files.list(f"monitoring/{MODEL}/feedback")) == 1
        nothing = p.monitoring.land()
        assert (nothing.predictions, nothing.feedback, nothing.rejected, nothing.files) == (
            0,
            0,
            0,
            [],
        )

        # The same predictions sent again (a client retry) are new events with the same ids.
        events.append(predictions_stream(MODEL), payloads)
        assert p.monitoring.land().predictions == 50
        preds = p.monitoring.log.predictions()
        assert preds is not None and preds.num_rows == 50

        report = p.monitoring.report(alerts=False)
        assert report.rows == 50
        assert sum(item.rows for item in report.timeline or []) == 50
        labels = report.labels
        assert (labels.received, labels.matched, labels.duplicates) == (20, 20, 0)
        assert (labels.labelled, labels.pending) == (20, 30)


def test_unreadable_payloads_are_kept_with_the_reason_and_landing_goes_on(
    built: Built, tmp_path: Path
) -> None:
    bad = [
        b"not json{",
        b'{"no": "id"}',
        b"[1, 2]",
        b'{"id": "x", "at": "soon"}',
        b'{"id": 5, "at": 1}',
    ]
    with copy_of(built, tmp_path) as p:
        p.events.append(predictions_stream(MODEL), bad[:2])
        p.monitoring.record_batch(built.rows.slice(500, 30), id_prefix="c")
        p.events.append(predictions_stream(MODEL), bad[2:])
        p.events.append(
            feedback_stream(MODEL), [b"\xff\xfe garbage", b'{"prediction_id": "c-1-0"}']
        )
        landed = p.monitoring.land()
        assert (landed.predictions, landed.feedback, landed.rejected) == (30, 0, 7)

        folder = f"monitoring/{MODEL}/rejected"
        kept = [
            orjson.loads(line)
            for name in sorted(p.lake_files.list(folder))
            for line in p.lake_files.read_bytes(f"{folder}/{name}").splitlines()
        ]
        assert len(kept) == 7
        assert all(k["event_id"] and k["error"] for k in kept)
        payloads = {k["payload"] for k in kept}
        assert {"not json{", '{"no": "id"}', '{"id": "x", "at": "soon"}'} <= payloads
        assert any("garbage" in k for k in payloads)
        assert any("no label" in k["error"] for k in kept)

        # Acknowledged: kept once, not rejected again.
        assert p.monitoring.land().rejected == 0
        assert p.monitoring.report(alerts=False).rows == 30


# -------------------------------------------------------------------------------------- HTTP


def test_feedback_over_http(built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with copy_of(built, tmp_path) as p:
        reqs = requests_of(p, 3, start=20_000)
        spec = ServingSpec.model_validate(
            {**p.spec.serving.model_dump(mode="json"), "max_batch": 5}
        )
        assert spec.token_env == "LOOPML_TOKEN"
        good = [{"prediction_id": "h-1", "delayed": True}, {"prediction_id": "h-2", "delayed": 0}]
        with TestClient(create_app(runtime=Runtime(p, spec=spec))) as client:
            monkeypatch.delenv("LOOPML_TOKEN", raising=False)
            assert client.post("/feedback", json=good).status_code == 403
            monkeypatch.setenv("LOOPML_TOKEN", "s3cret")
            assert client.post("/feedback", json=good).status_code == 401
            wrong = {"authorization": "Bearer nope"}
            assert client.post("/feedback", json=good, headers=wrong).status_code == 401
            auth = {"authorization": "Bearer s3cret"}

            r = client.post("/feedback", json=[*good, {"delayed": 1}], headers=auth)
            assert r.status_code == 202, r.text
            assert r.json()["accepted"] == 2 and [x["row"] for x in r.json()["rejected"]] == [2]
            r = client.post("/feedback", json={"prediction_id": "h-3", "delayed": 1}, headers=auth)
            assert r.status_code == 202 and r.json()["accepted"] == 1

            r = client.post(
                "/feedback",
                json={"rows": [{"prediction_id": "h-4"}, {"prediction_id": "h-5", "delayed": {}}]},
                headers=auth,
            )
            assert r.status_code == 422, r.text
            error = r.json()["error"]
            assert "row 0" in error["message"] and "'delayed'" in error["message"]
            assert [x["row"] for x in error["details"]["rejected"]] == [0, 1]

            r = client.post("/feedback", content=b"{not json", headers=auth)
            assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json"
            assert client.post("/feedback", json={"rows": []}, headers=auth).status_code == 422
            assert client.post("/feedback", json=[1, 2], headers=auth).status_code == 422
            r = client.post("/feedback", json=[good[0]] * 6, headers=auth)
            assert r.status_code == 413 and "5" in r.json()["error"]["message"]

            assert client.get("/healthz").status_code == 200
            assert client.post("/feedback", json=good, headers=auth).status_code == 202

            # A served prediction, labelled by its flight's keys.
            served = client.post("/predict", json={"rows": reqs}).json()["predictions"]
            keys = {k: reqs[0][k] for k in ("time_hour", "carrier", "flight")}
            r = client.post("/feedback", json={**keys, "delayed": True}, headers=auth)
            assert r.status_code == 202 and r.json()["accepted"] == 1
            assert client.get("/healthz").status_code == 200
        landed = p.monitoring.land()
        assert (landed.predictions, landed.feedback) == (3, 6)
        fb = p.monitoring.log.feedback()
        assert fb is not None and set(fb["source"].to_pylist()) == {"http"}
        joined = joined_labels(p)
        assert [joined[x["id"]] for x in served] == [1.0, None, None]


def test_metrics_export_the_drift_scores_of_the_latest_report(built: Built, tmp_path: Path) -> None:
    def drift_samples(client: TestClient) -> dict[str, float]:
        r = client.get("/metrics")
        assert r.status_code == 200
        return {
            s.labels["feature"]: s.value
            for family in text_string_to_metric_families(r.text)
            if family.name == "loopml_drift_score"
            for s in family.samples
            if s.labels.get("model") == MODEL
        }

    with copy_of(built, tmp_path) as p:
        p.monitoring.record_batch(built.rows, id_prefix="m")
        with TestClient(create_app(runtime=Runtime(p))) as client:
            assert drift_samples(client) == {}
            report = p.monitoring.report(alerts=False)
            scores = drift_samples(client)
        assert report.current is not None
        columns = report.current.current.features.columns
        expected = {c.name: c.score for c in columns if c.score is not None}
        assert expected and scores == pytest.approx(expected)


# ------------------------------------------------------------------------------ alerts, CLI


DRIFT_RULE = '    drift:\n      metric: drift.share\n      op: ">"\n      threshold: -1\n'


def test_alerts_fire_once_per_window_and_are_listed(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with copy_of(built, tmp_path, alerts=DRIFT_RULE) as p:
        assert p.spec.monitoring.alerts["drift"].threshold == -1
        p.monitoring.record_batch(built.rows, id_prefix="a")
        first = p.monitoring.report(window=DAY).to_dict()
        fired = [a for a in first["alerts"] if a["rule"] == "drift"]
        assert fired and all(a["status"] == "firing" for a in fired)
        assert len({a["id"] for a in fired}) == 1
        judged = [item for item in first["timeline"] if "alerts" in item]
        assert len(judged) == len(first["timeline"]) - 1  # all but the open, last window
        assert all("drift" in item["alerts"] for item in judged)
        assert [a["rule"] for a in first["active_alerts"]].count("drift") == 1

        second = p.monitoring.report(window=DAY).to_dict()
        assert second["alerts"] == []
        assert all("alerts" not in item for item in second["timeline"])
        (alert,) = p.monitoring.alerts.list(rule="drift")
        assert alert.status == "firing" and alert.occurrences == len(judged)
        root = p.root
    code, out = run(capsys, "alerts", "list", "--json", "-p", str(root))
    assert code == 0
    listed = [a for a in json.loads(out) if a["rule"] == "drift"]
    assert [(a["id"], a["status"]) for a in listed] == [(alert.id, "firing")]


def test_cli_feedback_monitor_and_alerts(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = built.rows.slice(0, 400)
    with copy_of(built, tmp_path) as p:
        p.monitoring.record_batch(rows, id_prefix="cli")
        root = str(p.root)
    labels = tmp_path / "keys.csv"
    lines = ["time_hour,carrier,flight,delayed"]
    for r in rows.slice(0, 20).to_pylist():
        lines.append(f"{r['time_hour'].isoformat()},{r['carrier']},{r['flight']},1")
    lines.append("2013-01-26T10:00:00Z,UA,1,")  # no label: line 22
    labels.write_text("\n".join(lines) + "\n")

    code, out = run(capsys, "feedback", str(labels), "--json", "-p", root)
    assert code == 3  # a refused row: exit 3, as ingest does for quarantined rows
    sent = json.loads(out)
    assert sent["accepted"] == 20
    assert sent["matching"]["matched"] == 20 and sent["warnings"] == []
    assert [(r["line"], "'delayed'" in r["error"]) for r in sent["rejected"]] == [(22, True)]

    code, out = run(capsys, "feedback", "--natural", "--json", "-p", root)
    assert code == 0
    natural = json.loads(out)
    # The flights from the first logged prediction's event on (earlier ones have none to find).
    assert natural["accepted"] > 4_000 and natural["rejected"] == []
    assert natural["since"] is not None

    assert main(["feedback", "-p", root]) == 2
    assert main(["feedback", str(labels), "--natural", "-p", root]) == 2
    assert main(["feedback", str(tmp_path / "missing.csv"), "-p", root]) == 2
    assert main(["monitor", "--window", "soon", "-p", root]) == 2
    capsys.readouterr()

    code, out = run(capsys, "monitor", "--json", "--window", "7d", "-p", root)
    assert code == 0
    report = json.loads(out)
    assert report["rows"] == 400 and report["timeline"]
    assert report["settings"]["window"] == format_duration(timedelta(days=7))
    assert report["labels"]["received"] == 20 + natural["accepted"]
    # natural labels for the same flights, except those never arrived (no label)
    assert report["labels"]["duplicates"] == 20 - rows["delayed"].slice(0, 20).null_count
    assert report["labels"]["labelled"] > 300
    assert report["labels"]["matched"] == (
        report["labels"]["labelled"] + report["labels"]["duplicates"]
    )

    code, out = run(capsys, "monitor", "-p", root)
    assert code == 0 and "labels:" in out

    if importlib.util.find_spec("loopml.monitoring._html") is not None:
        html = tmp_path / "out.html"
        code, out = run(capsys, "monitor", "--report", str(html), "--no-alerts", "-p", root)
        assert code == 0 and html.stat().st_size > 0

    code, out = run(capsys, "alerts", "list", "--json", "-p", root)
    assert code == 0 and isinstance(json.loads(out), list)


def test_a_gzip_bomb_of_feedback_is_refused_without_being_inflated(tmp_path: Path) -> None:
    """Issue 17.7: feedback files were inflated whole, whatever they held."""
    import tracemalloc

    from loopml.errors import ReadError
    from loopml.monitoring._feedback import read_feedback
    from tests.unit.data.test_inflate import bomb

    path = bomb(tmp_path / "labels.csv.gz", 256 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(ReadError, match=r"labels\.csv\.gz: .*gzip\.max_ratio"):
            read_feedback(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 << 20, f"{peak / (1 << 20):.0f} MiB"
