"""`loopml monitor`, `loopml feedback` and `loopml alerts`: windows judged, labels in, alerts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from loopml.cli._common import JsonOpt, ProjectOpt, open_project, out, print_json, table
from loopml.errors import UsageError
from loopml.spec import parse_duration

alerts_app = typer.Typer(help="Alerts raised by the monitor: list them, resolve one by hand.")


def monitor(
    window: Annotated[
        str | None,
        typer.Option(help="The current window, e.g. 1h, 1d or 7d (default: monitoring.window)."),
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
    shift apart, raise the alerts of loopml.yaml, and report."""
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
    if report is not None and result.get("rows"):
        from loopml.monitoring._html import write_html

        result["report_file"] = str(write_html(result, report))
    if json:
        print_json(result)
    else:
        show(result)
    return 0


def show(r: dict[str, Any]) -> None:
    if not r.get("rows"):
        out.print(r.get("message", "nothing to monitor yet"))
        return
    cur = r["current"]["current"]
    settings = r["settings"]
    out.print(
        f"{r['model']}:{r['version']}, {r['rows']:,} predictions from {r['period']['start'][:19]} "
        f"to {r['period']['end'][:19]}; windows of {settings['window']} (sliding {settings['sliding']})"
    )
    labels = r["labels"]
    out.print(
        f"labels: {labels['received']:,} received, {labels['matched']:,} matched, "
        f"{labels['duplicates']:,} duplicates ({labels['conflicting']:,} conflicting), "
        f"{labels['unknown']:,} for unknown predictions, {labels['out_of_order']:,} out of order, "
        f"{labels['pending']:,} predictions still waiting"
    )
    cols = sorted(cur["features"]["columns"], key=lambda c: -(c.get("score") or 0))
    rows = [(c["name"], c) for c in cols[:15]]
    rows += [
        (n, d)
        for n, d in (("(prediction)", cur.get("prediction")), ("(label)", cur.get("label")))
        if d
    ]
    table(
        f"drift in the current window ({cur['start'][:16]} to {cur['end'][:16]}, {cur['rows']:,} rows)",
        ["column", "test", "p (adjusted)", "effect", "value", "threshold", "PSI", "drifted"],
        [
            [
                name,
                d["test"],
                _num(d["p_adjusted"]),
                d["effect"],
                _num(d["value"]),
                _num(d["threshold"]),
                _num(d["psi"]),
                "yes" if d["drifted"] else "",
            ]
            for name, d in rows
        ],
    )
    perf, est, dec = (
        cur.get("performance") or {},
        cur.get("estimated") or {},
        cur.get("decay") or {},
    )
    metric = dec.get("metric")
    if metric:
        out.print(
            f"{metric}: realized {_num(perf.get(metric))} on {cur['labelled']:,} labels, "
            f"estimated {_num(est.get(metric))} without labels, reference {_num(dec.get('reference'))}"
            + (" -> DECAYED" if dec.get("decayed") else "")
        )
    out.print(f"shift: {cur['shift']['summary']}")
    first = {k: v for k, v in r["first_detected"].items() if v}
    if first:
        out.print("first seen: " + ", ".join(f"{k} {v[:10]}" for k, v in first.items()))
    for a in r.get("alerts") or []:
        if a.get("status") == "firing":
            out.print(
                f"alert {a['rule']}: {a['metric']} = {_num(a.get('value'))} ({a['severity']})"
            )
    if r.get("report_file"):
        out.print(f"report: {r['report_file']}")


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def feedback(
    file: Annotated[
        Path | None,
        typer.Argument(help="Labels: CSV, JSON Lines or Parquet.", show_default=False),
    ] = None,
    natural: Annotated[
        bool,
        typer.Option(
            "--natural",
            help="Compute the labels from ingested data with features.label (e.g. an outcome recorded later in the event source).",
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Send labels to the monitor, by prediction id (`prediction_id`) or by the event's keys
    (and `time`); they are joined to predictions however late they arrive. Rows that cannot be
    used are listed with their line and reason; the others are sent."""
    if (file is None) == (not natural):
        raise UsageError("give a FILE of labels or --natural (not both)")
    with open_project(project) as p:
        result = p.monitoring.natural_labels() if natural else p.monitoring.feedback_file(file)  # type: ignore[arg-type]
    if json:
        print_json(result)
    else:
        out.print(f"{result['accepted']:,} labels sent, {len(result['rejected']):,} refused")
        for r in result["rejected"][:20]:
            where = f"line {r['line']}" if "line" in r else f"row {r.get('row')}"
            out.print(f"  {where}: {r['error']}")
    return 0 if result["accepted"] or not result["rejected"] else 1


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
