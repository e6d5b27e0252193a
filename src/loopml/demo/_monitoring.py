"""Demo, part 7: March–December replayed through the January–February champion, labels arriving
at each flight's arrival, and the monitor telling when the year moved away from winter, how, and
what it cost."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from loopml._project import Project
from loopml.errors import LoopmlError

if TYPE_CHECKING:
    from loopml.monitoring import TimelineItem

REPLAY_FROM = datetime(2013, 3, 1, tzinfo=UTC)
REPLAY_UNTIL = datetime(2014, 1, 1, tzinfo=UTC)


def run_monitoring(console: Console, project: Project, directory: Path) -> dict[str, Any]:
    console.print()
    console.rule("7. monitoring: March–December through the January–February model")
    mon = project.monitoring
    started = time.perf_counter()
    table = project.features.build(labelled_only=False).table
    t = table["_event_time"]
    table = table.filter(pc.greater_equal(t, pa.scalar(REPLAY_FROM, t.type)))
    # Flights that never flew (cancelled) have no label and are predicted all the same.
    logged = mon.record_batch(table, ref="champion", id_prefix="replay")
    labelled = table.filter(pc.is_valid(table[mon.label_name()]))
    sent = mon.send_labels(
        labelled, label=mon.label_name(), keys=mon.join_keys(), observed="_label_available_at"
    )
    landed = mon.land()
    replay_s = time.perf_counter() - started
    console.print(
        f"replayed {logged['predictions']:,} flights as requests to version {logged['version']} "
        f"(each logged at its scheduled departure) and {sent['accepted']:,} labels, each known "
        f"at the flight's arrival; landed {landed.predictions:,} predictions and "
        f"{landed.feedback:,} labels in {replay_s:.1f} s"
    )
    started = time.perf_counter()
    # The live requests of part 6 were logged at today's date; the replay is 2013's.
    report = mon.report(since=REPLAY_FROM, until=REPLAY_UNTIL)
    report_s = time.perf_counter() - started
    timeline, current = report.timeline, report.current
    if not timeline or current is None or report.settings is None or report.reference is None:
        raise LoopmlError(f"the demo's replay left nothing to monitor: {report.message}")
    labels = report.labels
    console.print(
        f"monitored {report.rows:,} predictions in {len(timeline)} windows of "
        f"{report.settings.window} in {report_s:.1f} s; labels: {labels.matched or 0:,} "
        f"joined, {labels.unknown or 0:,} for unknown predictions, "
        f"{labels.pending or 0:,} flights without one (cancelled), median delay "
        f"{(labels.delay_p50_s or 0) / 3600:.1f} h"
    )
    months = _by_month(timeline)
    metric = current.current.decay.metric or "pr_auc"
    reference = report.reference.metrics.get(metric)
    out = Table(
        title=f"by month ({metric} on the test set: {reference:.3f})" if reference else "by month",
        title_justify="left",
    )
    for col in (
        "month",
        "flights",
        "delayed",
        "drift",
        "shift flagged (weeks)",
        "realized",
        "estimated",
    ):
        out.add_column(
            col, justify="left" if col in ("month", "shift flagged (weeks)") else "right"
        )
    for month, m in months.items():
        out.add_row(
            month,
            f"{m['rows']:,}",
            _pct(m["positive_rate"]),
            f"{m['drift_weeks']}/{m['weeks']}",
            ", ".join(f"{k} {v}" for k, v in sorted(m["kinds"].items())) or "-",
            _num(m["realized"]),
            _num(m["estimated"]),
        )
    console.print(out)
    console.print(
        "  drift: weeks with a feature beyond its natural variation; realized: as the labels came"
        " in; estimated: from the probabilities alone, before any label"
    )
    top = _most_drifted(timeline)
    console.print("  most often drifted: " + ", ".join(f"{k} ({v} weeks)" for k, v in top))
    first = report.first_detected.model_dump() if report.first_detected is not None else {}
    for kind, name in (
        ("covariate", "covariate shift (the inputs)"),
        ("label", "label shift (the delay rate alone)"),
        ("concept", "concept drift (what the inputs mean for delays)"),
        ("decay", "performance decay"),
    ):
        when = first.get(kind)
        console.print(f"  first {name}: {'week of ' + when[:10] if when else 'not seen'}")
    by_rule: dict[str, int] = defaultdict(int)
    for a in report.fired():
        by_rule[a.rule] += 1
    console.print(
        "alerts raised: "
        + (", ".join(f"{rule} ({n})" for rule, n in sorted(by_rule.items())) or "none")
        + f"; {len(report.active_alerts or [])} still firing"
    )
    html = None
    try:
        from loopml.monitoring import write_html

        html = write_html(report, directory / "reports" / "monitoring.html")
        console.print(f"report: {html}")
    except ImportError:  # pragma: no cover - the HTML report is optional here
        pass
    return {
        "predictions": logged["predictions"],
        "labels": labels.model_dump(),
        "windows": len(timeline),
        "first_detected": first,
        "alerts": dict(by_rule),
        "months": months,
        "replay_seconds": round(replay_s, 2),
        "report_seconds": round(report_s, 2),
        "report": str(html) if html else None,
    }


def _by_month(timeline: list[TimelineItem]) -> dict[str, dict[str, Any]]:
    """Weekly windows summed up by the month they start in."""
    months: dict[str, dict[str, Any]] = {}
    for w in timeline:
        key = w.start[:7]
        m = months.setdefault(
            key,
            {
                "rows": 0,
                "weeks": 0,
                "drift_weeks": 0,
                "kinds": defaultdict(int),
                "scores": defaultdict(float),
                "_r": [],
                "_e": [],
                "_p": [],
            },
        )
        m["rows"] += w.rows
        m["weeks"] += 1
        m["drift_weeks"] += bool(w.features.drifted)
        for kind in w.shift.kinds:
            m["kinds"][kind] += 1
        for name, s in w.features.scores.items():
            m["scores"][name] = max(m["scores"][name], s or 0.0)
        metric = w.decay.metric or "pr_auc"
        final = w.performance_final
        if final.get(metric) is not None:
            m["_r"].append((final[metric], final.get("n", 1)))
            m["_p"].append((final.get("positive_rate", 0.0), final.get("n", 1)))
        if w.estimated.get(metric) is not None:
            m["_e"].append((w.estimated[metric], w.rows))
    for m in months.values():
        m["realized"] = _mean(m.pop("_r"))
        m["estimated"] = _mean(m.pop("_e"))
        m["positive_rate"] = _mean(m.pop("_p"))
        scores = m.pop("scores")
        m["top"] = [k for k, v in sorted(scores.items(), key=lambda kv: -kv[1])[:2] if v > 1]
        m["kinds"] = dict(m["kinds"])
    return months


def _most_drifted(timeline: list[TimelineItem]) -> list[tuple[str, int]]:
    counts: dict[str, int] = defaultdict(int)
    for w in timeline:
        for name in w.features.drifted:
            counts[name] += 1
    return sorted(counts.items(), key=lambda kv: -kv[1])[:5]


def _mean(pairs: list[tuple[float, float]]) -> float | None:
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"
