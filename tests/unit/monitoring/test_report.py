"""The typed monitoring report: what `loopml monitor --json` prints and the HTML page it writes
are the same, byte for byte, as before the report was typed (issue 18), and the typed report
reads back from its JSON (a stored report, ``latest.json``) to an equal one.

The golden files were written by the dict-built report on this fixture; only the wall clock's
values (when the report and its alerts were made, where the page was written) are masked. Set
``LOOPML_WRITE_GOLDEN=1`` to write them again after a change the report is meant to show."""

from __future__ import annotations

import contextlib
import doctest
import io
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from loopml.cli import main
from loopml.cli._common import print_json
from loopml.monitoring import _report
from loopml.monitoring._alerts import Alert
from loopml.monitoring._html import render_html
from loopml.monitoring._prometheus import DriftCollector
from loopml.monitoring._report import FirstDetected, LatestDrift, MonitoringReport
from tests.unit.monitoring.conftest import Trained, features_of

DATA = Path(__file__).parent / "data"
GOLDEN_JSON = DATA / "report_golden.json"
GOLDEN_HTML = DATA / "report_golden.html"
GOLDEN_LATEST = DATA / "latest_golden.json"
RULES = """
monitoring:
  drift: {min_rows: 20}
  performance: {min_labels: 20}
  alerts:
    drift:
      metric: drift.share
      op: ">"
      threshold: -1
    slow:
      metric: rows
      op: "<"
      threshold: 0
"""
# Values from the wall clock: the rest of the report follows from the fixture alone.
CLOCK_KEYS = ("generated_at", "first_at", "last_at", "notified_at", "resolved_at", "report_file")
WRITE = os.environ.get("LOOPML_WRITE_GOLDEN") == "1"


def _masked_text(text: str) -> str:
    for key in CLOCK_KEYS:
        text = re.sub(rf'("{key}": )"[^"]*"', r'\1"<clock>"', text)
    return text


def _masked_page(page: str) -> str:
    page = re.sub(r'<script type="text/javascript">.*?</script>', "<plotly.js/>", page, flags=re.S)
    # the header shows when the report was generated (the alerts' times are the windows')
    return re.sub(r"generated [^<(]* \(times in UTC\)", "generated <clock> (times in UTC)", page)


@pytest.fixture(scope="module")
def monitored(synth: Trained, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, bytes]:
    """`loopml monitor --json --report` on the fixture with predictions, labels (late, flipped,
    unknown, conflicting) and two alert rules (one fires in every judged window): its output,
    the page it wrote and the ``latest.json`` it published."""
    where = tmp_path_factory.mktemp("report")
    with synth.copy(where, extra=RULES) as p:
        _log_traffic(p, synth)
        root = str(p.root)
    page = where / "report.html"
    out = _cli(["monitor", "--window", "30d", "--json", "--report", str(page), "-p", root])
    latest = (Path(root) / ".loopml/lake/monitoring/m/latest.json").read_bytes()
    return out, page.read_text(encoding="utf-8"), latest


def _log_traffic(p: Any, synth: Trained) -> None:
    """Predictions of the champion on the fixture's traffic, and labels (late, flipped,
    unknown, conflicting)."""
    # logged with a fixed latency: a measured one would differ from run to run
    mv = p.registry.get("m", "champion")
    model = p.models.load(mv)
    table = features_of(p, synth.traffic)
    version = mv.version
    p.monitoring.log_scored(
        table,
        model.predict(table),
        version=version,
        ids=[f"g-{version}-{i}" for i in range(table.num_rows)],
        latency_us=250.0,
        features=model.encoding.features,
    )
    truth = synth.traffic[synth.label].to_pylist()
    times = synth.traffic["t"].to_pylist()
    rows: list[dict[str, Any]] = [
        # known two hours after the event; the last labelled ones flipped: decay
        {
            "prediction_id": f"g-{version}-{i}",
            "target": (not y) if i >= 250 else y,
            "observed_at": (t + timedelta(hours=2)).isoformat(),
        }
        for i, (y, t) in enumerate(zip(truth, times, strict=True))
        if i < 350
    ]
    rows.append({"prediction_id": "g-9-0", "target": True})  # for no logged prediction
    rows.append({**rows[0], "target": not truth[0]})  # a conflicting duplicate
    assert p.monitoring.feedback(rows)["accepted"] == len(rows)


def _cli(args: list[str]) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(args) == 0
    return buf.getvalue()


def test_monitor_json_is_the_same_as_before_typing(monitored: tuple[str, str, bytes]) -> None:
    out = monitored[0]
    text = _masked_text(out)
    if WRITE:
        GOLDEN_JSON.write_text(text)
    assert text == GOLDEN_JSON.read_text()


def test_the_html_report_is_the_same_as_before_typing(monitored: tuple[str, str, bytes]) -> None:
    text = _masked_page(monitored[1])
    if WRITE:
        GOLDEN_HTML.write_text(text, encoding="utf-8")
    assert text == GOLDEN_HTML.read_text(encoding="utf-8")


def test_the_html_report_drawn_from_the_printed_json_is_the_same(
    monitored: tuple[str, str, bytes],
) -> None:
    """A stored report (the --json output) is drawn as the typed report it was printed from."""
    page = render_html(orjson.loads(monitored[0]))
    assert _masked_page(page) == GOLDEN_HTML.read_text(encoding="utf-8")


def test_a_valid_report_is_salvaged_whole(monitored: tuple[str, str, bytes]) -> None:
    printed = orjson.loads(monitored[0])
    salvaged = MonitoringReport.salvage(printed)
    assert salvaged == MonitoringReport.model_validate(printed)
    assert salvaged is not None and salvaged.to_dict() == printed


def test_salvage_keeps_what_can_be_read_of_a_partial_report(
    monitored: tuple[str, str, bytes],
) -> None:
    broken = orjson.loads(monitored[0])
    del broken["current"]["current"]["shift"]  # refused by model_validate (see above)
    broken["timeline"][0]["decay"] = {"metric": "auc", "drop": "much"}
    broken["timeline"].insert(1, "not a window")
    broken["alerts"][0] = {"rule": "drift", "first_at": "never", "details": None}
    broken["labels"] = {"received": 3}
    report = MonitoringReport.salvage(broken)
    assert report is not None and report.current is not None and report.timeline
    cur = report.current.current
    assert cur.shift is None and cur.rows == broken["current"]["current"]["rows"]
    assert report.timeline[0].decay.metric == "auc" and report.timeline[0].decay.drop is None
    assert len(report.timeline) == len(broken["timeline"]) - 1
    assert report.alerts is not None and report.alerts[0].rule == "drift"
    assert report.alerts[0].first_at is None and report.alerts[0].details is None
    assert report.labels.received == 3 and report.labels.refused is None
    assert MonitoringReport.salvage([1]) is None


def _alerts_fired(report: dict[str, Any]) -> list[str]:
    return [a["rule"] for a in report["alerts"]]


def test_the_golden_report_holds_every_part(monitored: tuple[str, str, bytes]) -> None:
    """The fixture exercises what the comparison is for: labels, alerts, windows, decay."""
    report = orjson.loads(monitored[0])
    assert report["rows"] > 0 and report["labels"]["matched"] > 0
    assert "drift" in _alerts_fired(report) and report["active_alerts"]
    assert len(report["timeline"]) > 2 and "alerts" in report["timeline"][0]
    assert "alerts" not in report["timeline"][-1]  # the open window raises none
    assert report["current"]["current"]["decay"]["metric"]


def test_latest_json_is_the_same_as_before_typing(monitored: tuple[str, str, bytes]) -> None:
    if WRITE:
        GOLDEN_LATEST.write_bytes(monitored[2])
    assert monitored[2] == GOLDEN_LATEST.read_bytes()


def test_the_report_of_no_predictions_is_the_same_as_before_typing(
    synth: Trained, tmp_path: Path
) -> None:
    with synth.copy(tmp_path) as p:
        p.monitoring.feedback([{"prediction_id": "x-1-0", "target": True}])
        root = str(p.root)
    out = _cli(["monitor", "--json", "-p", root])
    assert out == (
        '{\n  "model": "m",\n  "rows": 0,\n  "labels": {\n    "received": 1,\n'
        '    "refused": 0\n  },\n  "message": "no predictions logged yet; 1 labels received '
        'wait for them"\n}\n'
    )


def test_the_report_reads_back_from_its_json_unchanged(monitored: tuple[str, str, bytes]) -> None:
    """A stored report (its --json output) is validated back into the same typed report."""
    out = monitored[0]
    report = MonitoringReport.model_validate_json(out)
    assert report.current is not None and report.timeline and report.alerts
    assert isinstance(report.alerts[0], Alert) and report.alerts[0].first_at.tzinfo is not None
    assert report.timeline[0].alerts == ["drift"] and report.timeline[-1].alerts is None
    assert report.labels.matched == 351 and report.first_detected is not None
    assert report.first_detected == FirstDetected.of(report.timeline)
    assert set(report.first_detected.seen()) == {"concept", "decay"}
    again = io.StringIO()
    with contextlib.redirect_stdout(again):
        print_json(report.to_dict())
    assert again.getvalue() == out


def test_a_report_missing_a_part_is_refused_with_where(monitored: tuple[str, str, bytes]) -> None:
    broken = orjson.loads(monitored[0])
    del broken["current"]["current"]["shift"]
    with pytest.raises(ValidationError, match=r"current\.current\.shift"):
        MonitoringReport.model_validate(broken)


def test_prometheus_reads_the_published_record(
    monitored: tuple[str, str, bytes], tmp_path: Path
) -> None:
    path = tmp_path / "latest.json"
    path.write_bytes(monitored[2])
    collector = DriftCollector(str(path))
    latest = LatestDrift.model_validate_json(monitored[2])

    def gauges() -> dict[tuple[str, tuple[str, ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.values()))): s.value
            for family in collector.collect()
            for s in family.samples
        }

    first = gauges()
    for name, score in latest.features.items():
        assert score is not None
        assert first[("loopml_drift_score", tuple(sorted(["m", name])))] == score
    assert first[("loopml_drift_share", ("m",))] == latest.share
    assert first[("loopml_shift", ("concept", "m"))] == float("concept" in latest.shift)
    # a half-written or foreign file is not read: the last good record stays exported
    path.write_bytes(b'{"model": "m"}')
    os.utime(path, (1, 1))
    assert gauges() == first


def test_doctests() -> None:
    result = doctest.testmod(_report)
    assert result.attempted and not result.failed


def test_the_latest_report_and_its_windows_are_kept(
    synth: Trained, monitored: tuple[str, str, bytes], tmp_path: Path
) -> None:
    """The dashboard reads the last report (as `loopml monitor --json` printed it) and, for an
    alert, the window it was raised on, after later reports judged other windows."""
    from datetime import UTC, datetime

    from loopml import Project

    with synth.copy(tmp_path, extra=RULES) as p:
        _log_traffic(p, synth)
        root = p.root
        assert p.monitoring.last_report() is None
        assert p.monitoring.judged_windows(datetime.now(UTC), datetime.now(UTC)) == []
    printed = orjson.loads(monitored[0])
    out = orjson.loads(_cli(["monitor", "--window", "30d", "--json", "-p", str(root)]))
    with Project.open(root) as p:
        kept = p.monitoring.last_report()
        assert kept is not None and kept.to_dict() == out
        assert len(kept.timeline or []) == len(printed["timeline"])
        first = (kept.timeline or [])[0]
        start, end = datetime.fromisoformat(first.start), datetime.fromisoformat(first.end)
        # a later report of the recent windows only leaves the first one out...
        recent = p.monitoring.report(window=timedelta(days=30), since=end)
        assert all(i.start != first.start for i in recent.timeline or [])
        (found,) = p.monitoring.judged_windows(start, end)
        assert found[0] == kept.version
        assert found[1].features.scores == first.features.scores
        assert found[1].rows == first.rows
        assert p.monitoring.judged_windows(start, end, version=999) == []
        every = p.monitoring.judged_windows(start, datetime.fromisoformat(kept.timeline[-1].end))
        assert [w.start for _, w in every] == [w.start for w in kept.timeline or []]
