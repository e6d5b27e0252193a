"""The HTML report: one self-contained file, every section and number of the JSON report, escaped
strings, partial reports rendered rather than crashed on, and an atomic write."""

from __future__ import annotations

import copy
import doctest
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from plotly.offline import get_plotlyjs

from loopml import _htmlkit
from loopml.monitoring import _html
from loopml.monitoring._alerts import Alert
from loopml.monitoring._html import render_html, write_html

SAMPLE = Path(__file__).parent / "data" / "report_sample.json"
HEADINGS = [
    "Current window",
    "Label accounting",
    "Drift per feature",
    "Drift over time",
    "Reference vs current",
    "Performance over time",
    "Operational metrics",
    "Alerts",
]
EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    return dict(json.loads(SAMPLE.read_text()))


@pytest.fixture(scope="module")
def page(sample: dict[str, Any]) -> str:
    return render_html(sample)


def _text(page: str) -> str:
    """The page without its scripts: what a reader sees with JavaScript off."""
    return re.sub(r"<script\b.*?</script>", "", page, flags=re.S)


def _assert_complete(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in page


# ------------------------------------------------------------------------------ the sample


def test_sample_is_one_file_with_plotly_inside(page: str) -> None:
    assert page.count(get_plotlyjs()) == 1
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert '<script src="http' not in page
    assert "<link" not in _text(page) and "@import" not in page
    # every chart is drawn by the embedded library, each in its own div
    ids = re.findall(r'<div id="(fig-[\w-]+)" class="plotly-graph-div"', page)
    assert len(ids) == len(set(ids)) == page.count("Plotly.newPlot(")
    assert {"fig-drift-features", "fig-drift-heatmap", "fig-drift-share"} <= set(ids)
    assert {"fig-performance", "fig-ops"} <= set(ids)


def test_sample_has_every_section_and_the_header(page: str) -> None:
    _assert_complete(page)
    text = _text(page)
    assert "Monitoring report: flights_delay" in text
    assert "59,067 predictions" in text
    assert "2013-01-26 to 2013-04-01 03:59" in text and "(times in UTC)" in text
    assert "window 1w, sliding 1w" in text
    assert "Current window (2013-03-28 to 2013-04-04): no shift" in text
    assert '<div class="verdict ok">' in text
    # first detected: covariate shift in the week of 7 February, nothing else
    assert re.search(r"Covariate shift</td><td[^>]*>2013-02-07<", text)
    assert text.count("not seen") == 4


def test_sample_names_every_feature(page: str, sample: dict[str, Any]) -> None:
    text = _text(page)
    for name in sample["reference"]["features"]:
        assert f'<td class="text">{name}</td>' in text, name  # the drift table
        assert f'"{name}' in page, name  # the charts
    # every distribution is drawn: the prediction and the 12 top features open, the rest folded
    assert page.count('id="fig-dist-') == len(sample["current"]["distributions"])
    assert "The other 11 features" in text


def test_sample_shows_the_drifted_features_of_each_window(
    page: str, sample: dict[str, Any]
) -> None:
    text = _text(page)
    for window in sample["timeline"]:
        if window["features"]["drifted"]:
            names = ", ".join(window["features"]["drifted"])
            assert f'<span class="bad">{names}</span>' in text
    assert "0 of 23" in text  # the current window drifted nowhere


def test_a_drifted_feature_is_highlighted(sample: dict[str, Any]) -> None:
    report = copy.deepcopy(sample)
    cur = report["current"]["current"]
    cur["features"]["drifted"] = ["route"]
    for col in cur["features"]["columns"]:
        if col["name"] == "route":
            col.update(drifted=True, score=3.5)
    cur["shift"].update(covariate=True, kinds=["covariate"], summary="covariate shift")
    text = _text(render_html(report))
    assert '<tr class="drifted"><td class="text">route</td>' in text
    assert '1 of 23: <span class="bad">route</span>' in text
    assert '<div class="verdict shifted">' in text
    assert "Covariate shift</strong>: the inputs changed" in text


def test_sample_has_the_label_accounting(page: str, sample: dict[str, Any]) -> None:
    text = _text(page)
    section = text[text.index('<section id="labels">') : text.index('<section id="drift">')]
    labels = sample["labels"]
    for key in ("received", "matched", "duplicates", "conflicting", "unknown", "out_of_order"):
        assert f"<td>{labels[key]:,}</td>" in section, key
    for key in ("labelled", "pending"):
        assert f"<td>{labels[key]:,}</td>" in section, key
    assert "2.9 h (10,440 s)" in section
    assert "6.32 h (22,740 s)" in section


def test_an_older_report_shows_no_count_it_did_not_have(page: str, sample: dict[str, Any]) -> None:
    """The sample was written before labels refused at the door were counted: its label
    accounting has the rows it had, and no empty 'refused' row."""
    assert "refused" not in sample["labels"]
    text = _text(page)
    section = text[text.index('<section id="labels">') : text.index('<section id="drift">')]
    assert "refused" not in section
    assert section.count("<tr>") == 1 + len(_html.LABEL_ROWS)  # the head and the known rows


def test_what_can_be_read_of_a_partial_alert_is_tabled() -> None:
    report = {"model": "m", "alerts": [1, {"rule": "r1", "status": "firing", "details": None}]}
    text = _text(render_html(report))
    section = text[text.index('<section id="alerts">') :]
    row = '<tr class="drifted"><td class="text">r1</td><td class="text"><span class="bad">firing'
    assert section.count(row) == 1 and section.count("<tr") == 2  # the head and the alert
    assert "No alert was raised." not in section and "No alert is active." in section


def test_sample_summary_has_performance_against_reference(page: str) -> None:
    text = _text(page)
    assert "Performance (pr_auc) vs reference" in text
    assert "0.2219 vs reference 0.4364" in text
    assert "within limit" in text
    assert "Label-free estimate (pr_auc)" in text and "0.3545" in text
    assert "Calibration gap" in text and "-0.0752" in text
    assert "No alert was raised." in text and "No alert is active." in text


def test_alerts_are_tabled(sample: dict[str, Any]) -> None:
    at = datetime(2013, 3, 28, tzinfo=UTC)
    fired = Alert(
        id=7, model="flights_delay", rule="drift_share", metric="drift.share", severity="critical",
        status="firing", value=0.13, threshold=0.1, window="current", window_start=at,
        window_end=at + timedelta(days=7), first_at=at, last_at=at, occurrences=2,
        notified_at=None, resolved_at=None, details={"op": ">"},
    )  # fmt: skip
    report = copy.deepcopy(sample)
    report["alerts"] = [fired.to_dict()]
    report["active_alerts"] = [fired.to_dict()]
    report["timeline"][2]["alerts"] = ["drift_share"]
    text = _text(render_html(report))
    section = text[text.index('<section id="alerts">') :]
    row = '<tr class="drifted"><td class="text">drift_share</td><td class="text"><span class="bad">firing'
    assert section.count(row) == 2
    assert "<td>&gt; 0.1</td>" in section and "<td>0.13</td>" in section
    assert '<td class="text">2013-03-28</td>' in section
    assert "No alert" not in section
    assert '<td class="text">drift_share</td></tr>' in text  # the window it fired in


# ------------------------------------------------------------------------------- partials


def test_minimal_report_renders_its_message() -> None:
    page = render_html({"model": "m", "rows": 0, "message": "no predictions logged yet"})
    _assert_complete(page)
    assert '<p class="message">no predictions logged yet</p>' in page
    assert '<p class="meta">0 predictions</p>' in page  # no empty version or period
    assert "Plotly.newPlot(" not in page


@pytest.mark.parametrize(
    "report",
    [
        {},
        {"model": None, "current": None, "timeline": None, "labels": None, "alerts": None},
        {"current": "oops", "timeline": [None, 3, {"start": "not a date", "features": []}]},
        {"current": {"current": {"features": {"columns": [None, {"name": 1}]}}}},
        {"timeline": [{"start": "2024-01-01T00:00:00+00:00", "ops": {"error_rate": float("nan")}}]},
        {"alerts": [1, {"rule": "r", "status": "firing", "value": float("inf")}], "labels": []},
        {"current": {"distributions": {"x": {"bins": ["a", "b"], "reference": [1.0]}}}},
    ],
)
def test_malformed_reports_render(report: dict[str, Any]) -> None:
    _assert_complete(render_html(report))


def test_report_without_labels(sample: dict[str, Any]) -> None:
    report = copy.deepcopy(sample)
    report["labels"] = None
    report["first_detected"] = None
    windows = [*(report["current"][k] for k in ("current", "sliding", "cumulative"))]
    for w in [*windows, *report["timeline"]]:
        w.update(labelled=0, label=None, performance={}, calibration={}, conditional_drifted=None)
        w["decay"] = {"metric": "pr_auc", "value": None, "decayed": None}
        w["shift"].update(labels_known=False, summary="no shift (no labels yet)")
        w.pop("performance_final", None)
    page = render_html(report)
    _assert_complete(page)
    text = _text(page)
    assert "No labels yet: only covariate shift and prediction drift can be seen." in text
    assert "not judged (fewer than 200 labels)" in text
    assert "No label accounting yet" in text
    assert '<div class="verdict unknown">' in text


def test_report_without_timeline(sample: dict[str, Any]) -> None:
    report = copy.deepcopy(sample)
    del report["timeline"]
    report["current"].pop("distributions")
    page = render_html(report)
    _assert_complete(page)
    assert _text(page).count("No window in the timeline yet.") == 3
    assert "No distribution to compare yet." in page
    assert "fig-drift-features" in page  # the current window is still drawn


def test_strings_from_the_report_are_escaped(sample: dict[str, Any]) -> None:
    report = json.loads(json.dumps(sample).replace('"carrier"', json.dumps(EVIL)))
    report["model"] = EVIL
    report["message"] = EVIL
    report["alerts"] = [{"rule": EVIL, "status": "firing", "details": {"op": "<"}}]
    report["current"]["current"]["features"]["drifted"] = [EVIL]
    page = render_html(report)
    _assert_complete(page)
    assert EVIL not in page
    assert "<script>alert" not in page
    text = _text(page)
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert f"<title>loopml monitoring: {escaped}</title>" in text
    assert f'<td class="text">{escaped}</td>' in text
    assert text.count(escaped) >= 5
    # the scripts are the library, the charts and the resize hook: nothing from the report
    assert page.count("<script") == page.count("Plotly.newPlot(") + 2


# ---------------------------------------------------------------------------------- write


def test_write_html_writes_the_page_and_returns_the_path(tmp_path: Path) -> None:
    report = {"model": "m", "rows": 0, "message": "no predictions logged yet"}
    target = tmp_path / "reports" / "m.html"
    written = write_html(report, str(target))
    assert written == target
    assert target.read_text(encoding="utf-8") == render_html(report)
    assert [p.name for p in target.parent.iterdir()] == ["m.html"]


def test_write_html_replaces_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "m.html"
    write_html({"model": "old"}, target)
    before = target.read_text(encoding="utf-8")

    def fail(src: str, dst: str) -> None:
        assert Path(src).parent == tmp_path  # the temporary file sits beside the target
        assert Path(src).read_text(encoding="utf-8") == render_html({"model": "new"})
        raise OSError("disk gone")

    monkeypatch.setattr(_htmlkit.os, "replace", fail)
    with pytest.raises(OSError, match="disk gone"):
        write_html({"model": "new"}, target)
    assert target.read_text(encoding="utf-8") == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.html"]
    monkeypatch.undo()
    write_html({"model": "new"}, target)
    assert "loopml monitoring: new" in target.read_text(encoding="utf-8")


def test_doctests() -> None:
    result = doctest.testmod(_html)
    assert result.attempted and not result.failed


def test_the_toolkit_doctests() -> None:
    result = doctest.testmod(_htmlkit)
    assert result.attempted and not result.failed
