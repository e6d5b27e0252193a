"""Monitoring: the model's latest monitoring report (drift per feature and window as a heat map,
performance realized and estimated per window, where every label went) and its alerts (a page
at a time, by status and rule); an alert's page with its evidence (the drift of the windows it
fired on, the batches whose rows fall in them) and what it led to (the loop's cycles it
triggered, and how each ended)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from fastapi import APIRouter
from markupsafe import Markup
from pydantic import ValidationError
from sqlalchemy import and_, func, select
from starlette.requests import Request
from starlette.responses import HTMLResponse

from loopml import _htmlkit as kit
from loopml.errors import LoopmlError, NotFoundError, UsageError
from loopml.monitoring import MonitoringReport, TimelineItem
from loopml.storage import tables as t
from loopml.ui._context import UiContext
from loopml.ui._format import chart
from loopml.ui._pages._common import parse_int, ui
from loopml.ui._pages._loopread import batches_in, cycles_of, cycles_triggered_by

router = APIRouter()

STATUSES = ("firing", "resolved")
HEAT_CAP = 2.0  # scores are 1 at the threshold; the colours stop at twice it
HEAT_SCALE = [[0, "#f3f6fb"], [0.3, "#c6dbef"], [0.5, "#fdd49e"], [0.75, "#f46d43"], [1, "#a50026"]]
WINDOWS_SHOWN = 60  # the per-window table's newest windows (the heat map draws every one)
# The metrics shown per window, in this order when a report has them.
METRICS = ("roc_auc", "pr_auc", "log_loss", "accuracy", "f1", "macro_f1", "rmse", "mae")


def sig3(x: Any) -> Markup:
    """A drift statistic to 3 significant digits, trailing zeros kept (0.280, 1.20)."""
    v = kit.num(x)
    if v is None or abs(v) >= 1000:
        return Markup(kit.fmt(x, 3))
    return Markup(f"{v:#.3g}".rstrip(".") if v else "0")


def model_of(ctx: UiContext) -> str | None:
    """The project's model (None when loopml.yaml declares none)."""
    model = ctx.project.spec.model
    return model.name if model is not None else None


def last_report(ctx: UiContext) -> tuple[MonitoringReport | None, str | None]:
    """The latest stored report, or why there is none to show."""
    try:
        return ctx.project.monitoring.last_report(), None
    except (ValidationError, ValueError) as exc:
        return None, f"the stored report could not be read ({str(exc).splitlines()[0]})"


# ------------------------------------------------------------------------------ the page


@router.get("/monitoring", response_class=HTMLResponse)
def page(request: Request) -> HTMLResponse:
    ctx = ui(request)
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        raise UsageError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    rule = q.get("rule") or None
    before = parse_int(q.get("before"), "before", default=0, low=0, high=2**62)
    limit = parse_int(q.get("limit"), "limit", default=50, low=1, high=500)
    model = model_of(ctx)
    report, problem = last_report(ctx) if model is not None else (None, None)
    alerts, older = alert_page(ctx, model, status=status, rule=rule, before=before, limit=limit)
    firing = count_firing(ctx, model)
    rules = sorted(set(ctx.project.spec.monitoring.alerts) | ({rule} if rule else set()))
    view = report_view(report) if report is not None and report.rows else None
    return ctx.render(
        request,
        "monitoring/page.html",
        page_name="monitoring",
        model=model,
        report=report,
        problem=problem,
        view=view,
        alerts=alerts,
        older=older,
        firing=firing,
        statuses=STATUSES,
        rules=rules,
        wanted_status=status,
        rule=rule,
        limit=limit,
        sig=sig3,
    )


def _alert_filter(model: str | None) -> Any:
    a = t.alerts
    # The model's alerts and the project-wide ones (a rule on no model, e.g. quarantine): no
    # index serves it, so a page walks the ids down and stops at limit + 1 rows.
    return func.coalesce(a.c.model, model) == model if model is not None else None


def alert_page(
    ctx: UiContext,
    model: str | None,
    *,
    status: str | None,
    rule: str | None,
    before: int,
    limit: int,
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of alerts, newest first (keyset on the id: ``before`` is the last id shown)."""
    a = t.alerts
    conds = []
    scope = _alert_filter(model)
    if scope is not None:
        conds.append(scope)
    if status is not None:
        conds.append(a.c.status == status)
    if rule is not None:
        conds.append(a.c.rule == rule)
    if before:
        conds.append(a.c.id < before)
    query = select(a).order_by(a.c.id.desc()).limit(limit + 1)
    if conds:
        query = query.where(and_(*conds))
    with ctx.project.store.read() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more and rows else None)


def count_firing(ctx: UiContext, model: str | None) -> int:
    """The firing alerts of the model and of the project (each count on the index of model
    and status)."""
    a = t.alerts
    firing = a.c.status == "firing"
    scopes = [None] if model is None else [a.c.model == model, a.c.model.is_(None)]
    n = 0
    with ctx.project.store.read() as conn:
        for scope in scopes:
            cond = firing if scope is None else and_(scope, firing)
            n += int(conn.execute(select(func.count()).select_from(a).where(cond)).scalar() or 0)
    return n


def _metric(report: MonitoringReport) -> str | None:
    """The metric the report judges decay on, else the first it measured."""
    for item in reversed(report.timeline or []):
        if item.decay.metric:
            return item.decay.metric
    for item in report.timeline or []:
        for name in METRICS:
            if name in item.performance or name in item.estimated:
                return name
    return None


def report_view(report: MonitoringReport) -> dict[str, Any]:
    """What the page shows of a report: the heat map's figure, the features and windows, the
    performance per window and the label accounting."""
    timeline = list(report.timeline or [])
    features = list(report.reference.features) if report.reference is not None else []
    for item in timeline:
        for name in item.features.scores:
            if name not in features:
                features.append(name)
    metric = _metric(report)
    windows = [window_row(item, metric) for item in timeline]
    return {
        "features": features,
        "metric": metric,
        "windows": list(reversed(windows))[:WINDOWS_SHOWN],
        "hidden": max(0, len(windows) - WINDOWS_SHOWN),
        "heatmap": heatmap(timeline, features) if features and timeline else "",
        "performance": performance_chart(timeline, metric) if metric and timeline else "",
        "labels": labels_view(report),
    }


def window_row(item: TimelineItem, metric: str | None) -> dict[str, Any]:
    perf = item.performance
    error = perf.get("error") if isinstance(perf.get("error"), str) else None
    return {
        "start": item.start,
        "end": item.end,
        "rows": item.rows,
        "labelled": item.labelled,
        "late": item.late,
        "drifted": item.features.drifted,
        "share": item.features.share,
        "scores": item.features.scores,
        "realized": perf.get(metric) if metric and not error else None,
        "error": error,
        "estimated": item.estimated.get(metric) if metric else None,
        "final": item.performance_final.get(metric) if metric else None,
        "decayed": item.decay.decayed,
        "shift": item.shift.kinds,
        "alerts": item.alerts,
    }


def heatmap(timeline: list[TimelineItem], features: list[str], div_id: str = "drift-heat") -> str:
    """Features × windows: each cell the feature's drift score in the window (1 = its
    threshold), an x where it drifted."""
    x = [kit.axis_time(item.start, i) for i, item in enumerate(timeline)]
    raw = [[kit.num(item.features.scores.get(n)) for item in timeline] for n in features]
    heat = go.Heatmap(
        x=x,
        y=features,
        z=[[None if v is None else min(v, HEAT_CAP) for v in row] for row in raw],
        customdata=raw,
        zmin=0,
        zmax=HEAT_CAP,
        colorscale=HEAT_SCALE,
        hoverongaps=False,
        colorbar={"title": {"text": "score"}},
        hovertemplate="%{y}<br>%{x}<br>score %{customdata:.3g}<extra></extra>",
    )
    hits = [(x[i], n) for i, item in enumerate(timeline) for n in item.features.drifted]
    hx, hy = zip(*hits, strict=True) if hits else ((), ())
    marks = go.Scatter(x=hx, y=hy, mode="markers", marker=kit.X_MARK, hoverinfo="skip")
    layout = kit.layout(
        "Drift score per feature and window (1 = threshold; x = drifted)",
        max(260, 26 * len(features) + 140),
        showlegend=False,
        yaxis={"autorange": "reversed", "gridcolor": "rgba(0,0,0,0)"},
    )
    return chart(go.Figure([heat, marks], layout), div_id)


def performance_chart(timeline: list[TimelineItem], metric: str) -> str:
    x = [kit.axis_time(item.start, i) for i, item in enumerate(timeline)]
    realized = [kit.num(item.performance.get(metric)) for item in timeline]
    estimated = [kit.num(item.estimated.get(metric)) for item in timeline]
    final = [kit.num(item.performance_final.get(metric)) for item in timeline]
    fig = go.Figure(
        [
            kit.line(x, realized, f"{metric} realized (labels known then)", "#2563eb"),
            kit.line(x, final, f"{metric} realized (labels known now)", "#1f2933", "dot"),
            kit.line(x, estimated, f"{metric} estimated (no labels)", "#d69e2e", "dash"),
        ],
        kit.layout(f"{metric} per window", 300),
    )
    return chart(fig, "performance")


def labels_view(report: MonitoringReport) -> list[tuple[str, Any, str]]:
    """Where the labels went, as (what, how many, what it means) rows."""
    lab = report.labels
    unmatched = sum(int(v or 0) for v in (lab.unknown, lab.ambiguous, lab.unreadable))
    rows: list[tuple[str, Any, str]] = [
        ("predictions", report.rows, "predictions judged by the report"),
        ("labels received", lab.received, "every label sent (feedback and natural labels)"),
        ("matched", lab.matched, "labels joined to a prediction of the report"),
        ("pending", lab.pending, "predictions still waiting for their label"),
        ("unmatched", unmatched, "labels that found no prediction (unknown, ambiguous or "
         "unreadable)"),
        ("for other predictions", lab.elsewhere, "labels of predictions outside the report "
         "(another version or period)"),
        ("late", lab.late, "labels known only after their window ended"),
        ("duplicates", lab.duplicates, "the same label sent again"),
        ("conflicting", lab.conflicting, f"a second, different label for a prediction "
         f"(kept: {lab.on_conflict or 'first'})"),
        ("refused", lab.refused, "labels refused at the door (malformed)"),
    ]  # fmt: skip
    return [r for r in rows if r[1] is not None]


# ---------------------------------------------------------------------------- an alert


@router.get("/monitoring/alerts/{alert_id}", response_class=HTMLResponse)
def alert(request: Request, alert_id: int) -> HTMLResponse:
    ctx = ui(request)
    q = request.query_params
    limit = parse_int(q.get("limit"), "limit", default=25, low=1, high=500)
    before = q.get("before") or None
    a = t.alerts
    store = ctx.project.store
    with store.read() as conn:
        row = conn.execute(select(a).where(a.c.id == alert_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no alert {alert_id}", details={"alert": alert_id})
    al = dict(row)
    details = dict(al["details"] or {})
    start, end = al["window_start"], al["window_end"]
    windows, why_none = evidence(ctx, al, details)
    features: list[str] = []
    for _, item in windows:
        features += [n for n in item.features.scores if n not in features]
    batches, next_batch = (
        batches_in(store, start, end, before=before, limit=limit)
        if start is not None and end is not None
        else ([], None)
    )
    led = cycles_triggered_by(store, alert_id, al["model"], al["first_at"])
    cycles = []
    if led and al["model"] is not None:
        state = _loop_state(ctx, al["model"])
        cycles = cycles_of(store, al["model"], led, current=state[1], phase=state[0])
    return ctx.render(
        request,
        "monitoring/alert.html",
        page_name="monitoring",
        alert=al,
        details={k: v for k, v in details.items() if k not in ("op",)},
        windows=windows,
        why_none=why_none,
        features=features,
        batches=batches,
        next_batch=next_batch,
        limit=limit,
        cycles=cycles,
        heat=heatmap([w for _, w in windows], features, "alert-heat") if features else "",
        sig=sig3,
    )


def evidence(
    ctx: UiContext, al: dict[str, Any], details: dict[str, Any]
) -> tuple[list[tuple[int | None, TimelineItem]], str]:
    """The windows the alert fired on, as the reports judged them, or why there are none."""
    start, end = al["window_start"], al["window_end"]
    if start is None or end is None:
        return [], "the alert names no window (a rule judged outside the monitoring windows)"
    if al["model"] is None or al["model"] != model_of(ctx):
        return [], "the alert is not about the project's model: no report of its windows"
    version = details.get("version")
    try:
        found = ctx.project.monitoring.judged_windows(
            start, end, version=int(version) if isinstance(version, int) else None
        )
    except (LoopmlError, ValidationError, ValueError) as exc:
        return [], f"the kept windows could not be read ({exc})"
    if not found:
        return [], (
            "no stored report judged these windows (the monitor keeps the windows it judges; "
            "a report made before it did is not kept): judge them again with loopml monitor "
            f"--since {start:%Y-%m-%dT%H:%M} --until {end:%Y-%m-%dT%H:%M}"
        )
    return found, ""


def _loop_state(ctx: UiContext, model: str) -> tuple[str, int]:
    ls = t.loop_state
    with ctx.project.store.read() as conn:
        row = conn.execute(select(ls.c.phase, ls.c.cycle).where(ls.c.model == model)).first()
    return (str(row[0]), int(row[1])) if row is not None else ("idle", 0)
