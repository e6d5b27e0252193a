"""`loopml monitor`, `loopml feedback` and `loopml alerts`: windows judged, labels in, alerts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loopml.cli._common import (
    EXIT_FAILURE,
    EXIT_REJECTED,
    JsonOpt,
    ProjectOpt,
    err,
    open_project,
    out,
    print_json,
    table,
)
from loopml.errors import UsageError
from loopml.spec import parse_duration

if TYPE_CHECKING:
    from loopml.monitoring import (
        LabelAccounting,
        LabelReason,
        MonitoringReport,
        Settings,
        TimelineItem,
    )

alerts_app = typer.Typer(help="Alerts raised by the monitor: list them, resolve one by hand.")


def monitor(
    window: Annotated[
        str | None,
        typer.Option(
            help="The current window, e.g. 1d, 7d or 30d (default: monitoring.window, else "
            "chosen from the log's rate: printed)."
        ),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option(help="The model version to monitor (default: the latest one in the log)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only predictions made at or after this time (ISO 8601).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only predictions made before this time (ISO 8601).")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report", help="Write a self-contained HTML report here.", show_default=False
        ),
    ] = None,
    no_alerts: Annotated[
        bool, typer.Option("--no-alerts", help="Judge the windows without raising alerts.")
    ] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Land the prediction and feedback logs, judge every window (drift of features,
    predictions and labels; realized and estimated performance; operations), tell the kinds of
    shift apart, raise the alerts of loopml.yaml, and report.

    Windows follow the time each prediction was logged at: the clock for served requests, the row's own time for `loopml replay` and batch records (monitoring by event time). Every label received is counted once (matched, for predictions outside the report, for no logged prediction with the reason, ambiguous, unreadable), beside the rows refused at the door."""
    try:
        span = parse_duration(window) if window else None
    except ValueError as exc:
        raise UsageError(f"--window: {exc}", details={"field": "window"}) from None
    bounds: dict[str, datetime] = {}
    for name, value in (("since", since), ("until", until)):
        if value:
            try:
                bounds[name] = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise UsageError(
                    f"--{name}: {value!r} is not an ISO 8601 time", details={"field": name}
                ) from None
            if bounds[name].tzinfo is None:
                bounds[name] = bounds[name].replace(tzinfo=UTC)
    with open_project(project) as p:
        result = p.monitoring.report(
            version=int(version) if version and version.isdigit() else version,
            window=span,
            alerts=not no_alerts,
            since=bounds.get("since"),
            until=bounds.get("until"),
        )
    if report is not None and result.rows:
        from loopml.monitoring import write_html

        result.report_file = str(write_html(result, report))
    if json:
        print_json(result.to_dict())
    else:
        show(result)
    return 0


def show(r: MonitoringReport) -> None:
    if (
        not r.rows
        or r.current is None
        or r.settings is None
        or r.period is None
        or r.timeline is None
    ):
        out.print(r.message or "nothing to monitor yet")
        return
    cur = r.current.current
    settings = r.settings
    out.print(
        f"{r.model}:{r.version}, {r.rows:,} predictions from {r.period.start[:19]} "
        f"to {r.period.end[:19]}; windows of {settings.window} (sliding {settings.sliding})"
    )
    if settings.source == "data":
        out.print(f"  window chosen from the log: {settings.reason}")
    show_labels(r.labels, r.label_reasons or {})
    show_timeline(r.timeline, settings)
    cols = sorted(cur.features.columns, key=lambda c: -(c.score or 0))
    rows = [(c.name, c) for c in cols[:15]]
    rows += [(n, d) for n, d in (("(prediction)", cur.prediction), ("(label)", cur.label)) if d]
    min_rows = settings.drift.min_rows
    untested = (
        f"; not tested: fewer than {min_rows:,}, drift.min_rows" if cur.rows < min_rows else ""
    )
    table(
        f"drift in the current window ({cur.start[:16]} to {cur.end[:16]}, "
        f"{cur.rows:,} rows{untested})",
        ["column", "test", "p (adjusted)", "effect", "value", "threshold", "PSI", "drifted"],
        [
            [
                name,
                d.test,
                _num(d.p_adjusted),
                d.effect,
                _num(d.value),
                _num(d.threshold),
                _num(d.psi),
                "yes" if d.drifted else "",
            ]
            for name, d in rows
        ],
    )
    perf, est, dec = cur.performance, cur.estimated, cur.decay
    metric = dec.metric
    if metric:
        need = settings.performance.min_labels
        judged = (
            " -> DECAYED"
            if dec.decayed
            else (
                f" (not judged: fewer than {need:,} labels, performance.min_labels)"
                if cur.labelled < need
                else ""
            )
        )
        out.print(
            f"{metric}: realized {_num(perf.get(metric))} on {cur.labelled:,} labels known "
            f"by the window's end, estimated {_num(est.get(metric))} without labels, reference "
            f"{_num(dec.reference)}" + judged
        )
        final = r.timeline[-1].performance_final if r.timeline else {}
        if cur.late and final.get(metric) is not None:
            out.print(
                f"{metric} with every label known now: {_num(final.get(metric))} on "
                f"{int(final.get('n') or 0):,} labels ({cur.late:,} became known after the "
                "window's end)"
            )
    out.print(f"shift: {cur.shift.summary}")
    first = r.first_detected.seen() if r.first_detected is not None else {}
    if first:
        out.print("first seen: " + ", ".join(f"{k} {v[:10]}" for k, v in first.items()))
    for a in r.fired():
        out.print(f"alert {a.rule}: {a.metric} = {_num(a.value)} ({a.severity})")
    if r.report_file:
        out.print(f"report: {r.report_file}")


def show_labels(labels: LabelAccounting, reasons: dict[str, LabelReason]) -> None:
    """Where every label received went (the counts add up to what was received)."""
    out.print(
        f"labels: {labels.received:,} received: {labels.matched or 0:,} matched, "
        f"{labels.elsewhere or 0:,} for predictions outside this report (another version "
        f"or period), {labels.unknown or 0:,} for no logged prediction, "
        f"{labels.ambiguous or 0:,} ambiguous, {labels.unreadable or 0:,} unreadable"
        + (f"; {labels.refused:,} refused at the door" if labels.refused else "")
    )
    show_reasons(
        {"ambiguous": labels.ambiguous, "reasons": {k: v.model_dump() for k, v in reasons.items()}}
    )
    conflicting = labels.conflicting or 0
    out.print(
        f"  {labels.duplicates or 0:,} duplicates, {conflicting:,} conflicting"
        + (
            f" ({_policy_text(labels.on_conflict or 'first', labels.conflicted or 0)})"
            if conflicting
            else ""
        )
        + f"; {labels.out_of_order or 0:,} out of order; {labels.labelled or 0:,} predictions "
        f"labelled, {labels.pending or 0:,} still waiting"
        + (f"; {labels.late:,} labels known only after their window's end" if labels.late else "")
    )


def show_timeline(timeline: list[TimelineItem], settings: Settings, last: int = 12) -> None:
    """The latest windows with the counts their verdicts rest on."""
    if len(timeline) < 2:
        return
    min_rows = settings.drift.min_rows
    shown = timeline[-last:]
    table(
        f"the last {len(shown)} of {len(timeline)} windows (drift is tested from {min_rows:,} "
        f"rows, performance judged from {settings.performance.min_labels:,} labels)",
        ["start", "predictions", "labels by its end", "labels after", "drifted", "shift"],
        [
            [
                w.start[:10] if settings.window.endswith(("d", "w")) else w.start[:16],
                f"{w.rows:,}",
                f"{w.labelled:,}",
                f"{w.late:,}",
                ", ".join(w.features.drifted) or ("-" if w.rows >= min_rows else "not tested"),
                ", ".join(w.shift.kinds) or "-",
            ]
            for w in shown
        ],
    )


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def feedback(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="Labels: CSV, JSON (an array, or JSON Lines) or Parquet.", show_default=False
        ),
    ] = None,
    natural: Annotated[
        bool,
        typer.Option(
            "--natural",
            help="Compute the labels from ingested data with features.label.",
        ),
    ] = False,
    min_match: Annotated[
        float,
        typer.Option(
            "--min-match",
            min=0.0,
            max=1.0,
            help="Exit 1 when a smaller share of the labels sent matches a logged prediction "
            "(0: never). With --natural: when none does.",
        ),
    ] = 0.5,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Send labels to the monitor, and say how many found their prediction.

    Each row names a prediction by `prediction_id`, or its event by the event's keys (the event source's primary key or monitoring.join_keys) and, where the keys do not identify one event, `event_time` (the event's own time; never compared with when the prediction was made). The label goes under the model's label name or `label`, checked against the model's task and classes; `observed_at` says when it became known (default: now).

    Rows that cannot be used are listed with their line and reason (and kept under the lake's monitoring/MODEL/refused/); exit 3 when some were. The labels sent are joined to the prediction log at once: matched, unknown (and why), ambiguous, duplicates and conflicts are printed; exit 1 when fewer than --min-match of them matched."""
    if (file is None) == (not natural):
        raise UsageError("give a FILE of labels or --natural (not both)")
    with open_project(project) as p:
        if natural:
            result = p.monitoring.natural_labels(match=True)
        else:
            result = p.monitoring.feedback_file(file, match=True)  # type: ignore[arg-type]
        policy = p.spec.monitoring.on_conflict
    warnings, failed = _feedback_warnings(result, natural=natural, min_match=min_match)
    result["warnings"] = warnings
    if json:
        print_json(result)
    else:
        _show_feedback(result, policy)
    if failed:
        return EXIT_FAILURE
    return EXIT_REJECTED if result["rejected"] else 0


def _feedback_warnings(
    result: dict[str, Any], *, natural: bool, min_match: float
) -> tuple[list[str], bool]:
    m = result.get("matching")
    if natural and not result["accepted"] and result.get("note"):
        return [f"no labels sent: {result['note']}"], True
    if not m or not m["sent"]:
        return [], False
    sent, matched = m["sent"], m["matched"]
    if matched == 0 and (not natural or m["predictions_logged"]):
        why = (
            "the prediction log is empty: log predictions first (serve, replay, or "
            "monitoring.record_batch), the labels join them when they land"
            if not m["predictions_logged"]
            else "check the keys, the event_time and the prediction ids against the log"
        )
        return [f"none of the {sent:,} labels sent matched a logged prediction: {why}"], True
    if not natural and matched < min_match * sent:
        return [
            f"only {matched:,} of the {sent:,} labels sent matched a logged prediction "
            f"(less than {min_match:.0%}, --min-match)"
        ], True
    return [], False


def _show_feedback(result: dict[str, Any], policy: str) -> None:
    if result.get("note"):
        out.print(result["note"])
    out.print(
        f"{result['accepted']:,} labels sent, {len(result['rejected']):,} refused"
        + (
            f" (events from {result['since']} on: the first logged prediction's event)"
            if result.get("since")
            else ""
        )
    )
    show_refused(result["rejected"])
    m = result.get("matching")
    if m:
        out.print(
            f"of the {m['sent']:,} labels sent: {m['matched']:,} matched a logged prediction, "
            f"{m['unknown']:,} match none yet, {m['ambiguous']:,} ambiguous "
            f"({m['predictions_logged']:,} predictions logged)"
        )
        show_reasons(m)
        if m["duplicates"]:
            out.print(
                f"  {m['duplicates']:,} labels for predictions labelled before, "
                f"{m['conflicting']:,} of them with a different label: "
                + _policy_text(policy, m.get("conflicted", 0))
            )
    for w in result.get("warnings") or []:
        err.print(f"warning: {w}", style="bold yellow")


def show_refused(rejected: list[dict[str, Any]], kinds: int = 10) -> None:
    """Refused rows grouped by reason, each with its first lines (--json lists every one)."""
    groups: dict[str, list[str]] = {}
    for r in rejected:
        where = f"line {r['line']}" if "line" in r else f"row {r.get('row')}"
        groups.setdefault(r["error"], []).append(where)
    for error, places in list(groups.items())[:kinds]:
        more = f" and {len(places) - 3:,} more" if len(places) > 3 else ""
        out.print(f"  {', '.join(places[:3])}{more}: {error}")
    if len(groups) > kinds:
        out.print(f"  ... and {len(groups) - kinds:,} other reasons (--json lists every row)")


def _policy_text(policy: str, conflicted: int) -> str:
    return {
        "first": "the first label received is kept (monitoring.on_conflict: first)",
        "last": "the last label received is kept (monitoring.on_conflict: last)",
        "refuse": f"{conflicted:,} predictions with disagreeing labels stay unlabelled "
        "(monitoring.on_conflict: refuse)",
    }[policy]


def show_reasons(stats: dict[str, Any]) -> None:
    """Why labels matched no prediction, with examples; and the ambiguous ones."""
    for entry in (stats.get("reasons") or {}).values():
        examples = "; ".join(entry["examples"])
        out.print(f"  {entry['count']:,}: {entry['what']} (e.g. {examples})")
    if stats.get("ambiguous"):
        out.print(
            f"  {stats['ambiguous']:,}: their keys were predicted for several events: send "
            "event_time to say which"
        )


@alerts_app.command("list")
def alerts_list(
    status: Annotated[str | None, typer.Option(help="firing or resolved")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Alerts, newest first."""
    with open_project(project) as p:
        found = [a.to_dict() for a in p.monitoring.alerts.list(status=status, limit=limit)]
    if json:
        print_json(found)
    else:
        table(
            "alerts",
            ["id", "rule", "metric", "value", "status", "severity", "window end", "occurrences"],
            [
                [
                    a["id"],
                    a["rule"],
                    a["metric"],
                    _num(a.get("value")),
                    a["status"],
                    a["severity"],
                    (a.get("window_end") or "")[:16],
                    a["occurrences"],
                ]
                for a in found
            ],
        )
    return 0


@alerts_app.command("resolve")
def alerts_resolve(
    alert_id: Annotated[int, typer.Argument(help="The alert's id.")],
    reason: Annotated[str, typer.Option(help="Why it is resolved.")] = "",
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Resolve a firing alert by hand."""
    from loopml.data import default_user

    with open_project(project) as p:
        alert = p.monitoring.alerts.resolve(alert_id, by=default_user(), reason=reason)
    if json:
        print_json(alert.to_dict())
    else:
        out.print(f"alert {alert.id} ({alert.rule}) is {alert.status}")
    return 0
