"""Who served what, when: each model's aliases (champion, challenger, shadow, ...) over time from
the registry's alias history, as exact periods (version, from, until, how long, who moved it and
why; anchors ``#move-{id}``), a step chart of the version each alias held against the realized
performance and drift share the monitoring measured per window, the rollouts that split
traffic, and a one-click rollback (token, who, why)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
from fastapi import APIRouter
from plotly.subplots import make_subplots
from starlette.requests import Request
from starlette.responses import HTMLResponse

from loopml import _htmlkit as kit
from loopml import registry as registry_sql
from loopml.errors import LoopmlError
from loopml.ui._context import PREFIX, UiContext
from loopml.ui._format import chart
from loopml.ui._pages import _models_queries as mq
from loopml.ui._pages._common import form_of, parse_int, ui

router = APIRouter()

# Versions take these colours; aliases are drawn in their own (dark, dashed, dotted) lines.
COLORS = ("#2563eb", "#d62728", "#3f9142", "#17becf", "#8c564b", "#e377c2", "#bcbd22", "#ff7f0e")
ALIAS_ORDER = ("champion", "challenger", "shadow")
ALIAS_LINE = {
    "champion": {"color": "#1f2933", "dash": "solid"},
    "challenger": {"color": "#d69e2e", "dash": "dash"},
    "shadow": {"color": "#7b3fa0", "dash": "dot"},
}
ALL_DAYS = 36500  # "all": a century of windows
DAY_CHOICES = ((30, "30 days"), (90, "90 days"), (365, "a year"), (ALL_DAYS, "all"))
ROLLOUT_FILL = {"rolled_back": "#d62728", "promoted": "#3f9142", "active": "#2563eb"}


@router.get("/served", response_class=HTMLResponse)
def served(request: Request) -> HTMLResponse:
    ctx = ui(request)
    listing = ctx.project.registry.models()
    latest: dict[str, Any] = {}
    with ctx.project.store.read() as conn:
        for m in listing:
            page, _ = mq.periods_page(conn, m.name, alias=None, before=None, limit=1)
            latest[m.name] = (page[0] if page else None, mq.move_count(conn, m.name))
    return ctx.render(
        request, "models/served_list.html", page_name="served", models=listing, latest=latest
    )


@router.get("/served/{model}", response_class=HTMLResponse)
def served_model(request: Request, model: str) -> HTMLResponse:
    ctx = ui(request)
    q = request.query_params
    before = parse_int(q.get("before"), "before", default=0, low=0, high=2**62) or None
    limit = parse_int(q.get("limit"), "limit", default=50, low=1, high=500)
    alias = q.get("alias") or None
    with ctx.project.store.read() as conn:
        mq.require_model(conn, model)
        held = registry_sql.alias_map(conn, model)
        holders = [_holder(conn, model, a, v) for a, v in _ordered(held)]
        periods, older = mq.periods_page(conn, model, alias=alias, before=before, limit=limit)
        total = mq.move_count(conn, model)
        rollouts = mq.rollouts_of(conn, model, limit=20)
        names = sorted({a for a, _ in _ordered(held)} | {p.alias for p in periods}, key=_alias_key)
    return ctx.render(
        request,
        "models/served.html",
        page_name="served",
        model=model,
        holders=holders,
        periods=periods,
        older=older,
        total=total,
        limit=limit,
        alias=alias,
        aliases=names,
        rollouts=rollouts,
    )


@router.get("/served/{model}/chart", response_class=HTMLResponse)
def served_chart(request: Request, model: str) -> HTMLResponse:
    """The step chart against realized performance (loaded after the page: judging every
    window of the prediction log takes longer than the page's tables)."""
    ctx = ui(request)
    days = parse_int(request.query_params.get("days"), "days", default=30, low=1, high=ALL_DAYS)
    with ctx.project.store.read() as conn:
        mq.require_model(conn, model)
        moves, cut = mq.moves_for_chart(conn, model)
        rollouts = mq.rollouts_of(conn, model, limit=50)
    windows, why, span = _windows(ctx, model, days)
    chart, note = _figure(model, moves, windows, rollouts)
    return ctx.render(
        request,
        "models/served_chart.html",
        page_name="served",
        model=model,
        chart=chart,
        note=note,
        why=why,
        cut=cut,
        windows=windows,
        limit=mq.CHART_MOVES,
        days=days,
        span=span,
        choices=DAY_CHOICES,
    )


@router.post("/served/{model}/rollback", response_class=HTMLResponse)
async def rollback(request: Request, model: str) -> HTMLResponse:
    ctx = ui(request)
    form = await form_of(request)
    alias = str(form.get("alias") or "champion").strip()

    def do(by: str, reason: str) -> dict[str, Any]:
        move = ctx.project.registry.rollback(model, alias, by=by, reason=reason)
        return {
            "alias": alias,
            "from": move.from_version,
            "to": move.to_version,
            "move": move.id,
        }

    done = ctx.act(request, form, action="rollback", target=f"{model}:{alias}", do=do)
    out = done["outcome"]
    message = (
        f"Rolled {alias!r} of {model} back from version {out['from']} to version {out['to']} "
        f"(move {out['move']}, recorded as action {done['id']})."
    )
    return ctx.render(
        request,
        "done.html",
        page_name="served",
        message=message,
        back=f"{PREFIX}/served/{model}#move-{out['move']}",
    )


# ----------------------------------------------------------------------------------- reading


def _alias_key(alias: str) -> tuple[int, str]:
    return (ALIAS_ORDER.index(alias) if alias in ALIAS_ORDER else len(ALIAS_ORDER), alias)


def _ordered(held: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(held.items(), key=lambda kv: _alias_key(kv[0]))


def _holder(conn: Any, model: str, alias: str, version: int) -> dict[str, Any]:
    """Who holds ``alias`` since when, and what a rollback would return it to (None: nothing,
    with the reason)."""
    arrival = registry_sql.latest_arrival(conn, model, alias, version)
    if arrival is None:
        back, why = None, f"no recorded move brought version {version} into {alias!r}"
    elif arrival.from_version is None:
        back, why = (
            None,
            f"version {version} was the first to hold {alias!r}: there is nothing to roll back to",
        )
    else:
        back, why = arrival.from_version, ""
    since, _ = mq.periods_page(conn, model, alias=alias, before=None, limit=1)
    return {
        "alias": alias,
        "version": version,
        "since": since[0] if since else None,
        "back_to": back,
        "why_not": why,
    }


def _windows(
    ctx: UiContext, model: str, days: int
) -> tuple[list[dict[str, Any]], str, dict[str, Any] | None]:
    """Per version that answered requests and per monitoring window of the log's last ``days``:
    the rows answered, the realized performance where labels arrived, and the drift share; why
    there is none; and the span shown (with whether the log holds older predictions). Read
    only: the log is not landed, no alert is raised, nothing is published."""
    project = ctx.project
    try:
        monitoring = project.monitoring
        if monitoring.model != model:
            return [], f"the monitoring watches {monitoring.model}, not {model}", None
        preds = monitoring.log.predictions()
    except LoopmlError as exc:
        return [], exc.message, None
    if preds is None or preds.num_rows == 0:
        return (
            [],
            "no prediction has been logged yet: realized performance appears once the model "
            "serves and labels arrive",
            None,
        )
    import pyarrow as pa
    import pyarrow.compute as pc

    from loopml.monitoring import default_metric

    if "mode" in preds.column_names:  # shadow answers were never served
        preds = preds.filter(pc.fill_null(pc.not_equal(preds["mode"], "shadow"), True))
    if preds.num_rows == 0:
        return [], "only shadow answers were logged: none was served", None
    first, last = (int(x.as_py()) for x in pc.min_max(preds["at"]).values())
    day = 86_400_000_000  # windows start at a day (or an hour of it), as the monitoring's do
    since_us = max(first, (last - days * day) // day * day)
    since = datetime.fromtimestamp(since_us / 1e6, UTC)
    recent = preds.filter(pc.greater_equal(preds["at"], pa.scalar(since_us, preds["at"].type)))
    versions = sorted(v for v in pc.unique(recent["version"]).to_pylist() if v is not None)
    span = {
        "since": since,
        "until": datetime.fromtimestamp(last / 1e6, UTC),
        "older": first < since_us,
        "rows": recent.num_rows,
    }
    spec = project.spec.monitoring.performance
    out: list[dict[str, Any]] = []
    for v in versions:
        try:
            found = monitoring.windows(version=v, land=False, since=since)
        except LoopmlError as exc:
            return out, f"version {v}: {exc.message}", span
        if found is None:
            continue
        wl, _, _ = found
        metric = spec.metric or default_metric(wl.task)
        for b in range(wl.n_buckets):
            lo, hi = wl.rows_of("current", b)
            if hi == lo:
                continue
            e = wl.evaluate("current", b)
            value = e.performance.get(metric)
            guess = e.estimated.get(metric)  # from the scores alone, before labels arrive
            out.append(
                {
                    "version": v,
                    "start": datetime.fromtimestamp(e.start / 1e6, UTC),
                    "end": datetime.fromtimestamp(e.end / 1e6, UTC),
                    "rows": e.rows,
                    "labelled": e.labelled,
                    "metric": metric,
                    "value": value if isinstance(value, int | float) else None,
                    "estimated": guess if isinstance(guess, int | float) else None,
                    "drift_share": e.features.share,
                }
            )
    return out, "", span


def _figure(
    model: str,
    moves: list[dict[str, Any]],
    windows: list[dict[str, Any]],
    rollouts: list[dict[str, Any]],
) -> tuple[str, str]:
    """The chart's HTML and a note on its clocks ('' when nothing to draw)."""
    if not moves and not windows:
        return "", ""
    now = datetime.now(UTC)
    steps: dict[str, tuple[list[datetime], list[int | None]]] = {}
    for m in moves:
        x, y = steps.setdefault(m["alias"], ([], []))
        x.append(m["at"])
        y.append(m["to_version"])
    served_span = (moves[0]["at"], now) if moves else None
    log_span = (windows[0]["start"], max(w["end"] for w in windows)) if windows else None
    shared = bool(
        served_span and log_span and served_span[0] < log_span[1] and log_span[0] < served_span[1]
    )
    note = ""
    if served_span and log_span and not shared:
        note = (
            "The alias moves are at the registry's clock and the monitoring windows at the "
            "prediction log's (a replay runs on its own days), so each is drawn on its own time "
            "axis."
        )
    rows = 1 + (2 if windows else 0)
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=shared,
        vertical_spacing=0.12 if not shared else 0.06,
        subplot_titles=[
            "version holding each alias",
            *(
                [
                    "realized (solid) and estimated (dotted) performance per window, by version",
                    "drift share per window",
                ]
                if windows
                else []
            ),
        ],
    )
    for alias, (x, y) in sorted(steps.items(), key=lambda kv: _alias_key(kv[0])):
        if y and y[-1] is not None:  # still held: the step runs to now
            x, y = [*x, now], [*y, y[-1]]
        line = ALIAS_LINE.get(alias, {"color": "#52606d", "dash": "dashdot"})
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                name=alias,
                mode="lines+markers",
                line={"shape": "hv", **line},
                connectgaps=False,
                hovertemplate=f"{alias}: v%{{y}}<br>%{{x}}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    if served_span:  # the traffic splits on the registry's clock too (not in a replay)
        xs: list[datetime | None] = []
        ys: list[int | None] = []
        for r in rollouts:
            end = r["ended_at"] or now
            if end <= served_span[0] or r["started_at"] >= served_span[1]:
                continue
            for arm in r["arms"][1:]:
                xs += [r["started_at"], end, None]
                ys += [arm, arm, None]
        if xs:
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    name="rollout arms",
                    mode="lines",
                    line={"color": "#7b8794", "width": 6},
                    opacity=0.35,
                    hovertemplate="rollout arm v%{y}<br>%{x}<extra></extra>",
                ),
                row=1,
                col=1,
            )
    if windows:
        by_version: dict[int, list[dict[str, Any]]] = {}
        for w in windows:
            by_version.setdefault(w["version"], []).append(w)
        metric = windows[0]["metric"]
        for i, (v, ws) in enumerate(sorted(by_version.items())):
            color = COLORS[i % len(COLORS)]
            fig.add_trace(
                go.Scatter(
                    x=[w["start"] for w in ws],
                    y=[w["value"] for w in ws],
                    name=f"v{v} {metric}",
                    mode="lines+markers",
                    line={"color": color},
                    customdata=[[w["rows"], w["labelled"]] for w in ws],
                    hovertemplate=f"v{v}: {metric} %{{y:.4g}}<br>%{{customdata[0]:,}} rows, "
                    "%{customdata[1]:,} labelled<extra></extra>",
                ),
                row=2,
                col=1,
            )
            if any(w["estimated"] is not None for w in ws):
                fig.add_trace(
                    go.Scatter(
                        x=[w["start"] for w in ws],
                        y=[w["estimated"] for w in ws],
                        name=f"v{v} {metric}, estimated",
                        mode="lines",
                        line={"color": color, "dash": "dot"},
                        hovertemplate=f"v{v}: estimated {metric} %{{y:.4g}} (from the scores, "
                        "before labels)<extra></extra>",
                    ),
                    row=2,
                    col=1,
                )
            fig.add_trace(
                go.Bar(
                    x=[w["start"] for w in ws],
                    y=[w["drift_share"] for w in ws],
                    name=f"v{v} drift share",
                    marker={"color": color},
                    showlegend=False,
                    hovertemplate=f"v{v}: %{{y:.1%}} of features drifted<extra></extra>",
                ),
                row=3,
                col=1,
            )
        last = max(w["end"] for w in windows)
        for r in rollouts:  # the traffic splits, on the log's clock
            if r["started_at"] >= last:
                continue
            fill = ROLLOUT_FILL.get(r["status"], "#7b8794")
            label = (
                f"#{r['id']} {r['strategy']} v{', v'.join(map(str, r['arms'][1:]))}: "
                f"{r['status'].replace('_', ' ')}"
            )
            span = {"x0": r["started_at"], "x1": r["ended_at"] or last, "col": 1}
            shade = {"fillcolor": fill, "opacity": 0.07, "line_width": 0}
            fig.add_vrect(
                **span,
                **shade,
                row=2,
                annotation_text=label,
                annotation_position="top left",
                annotation_font_size=10,
            )
            fig.add_vrect(**span, **shade, row=3)
        fig.update_yaxes(title_text=metric, row=2, col=1)
        fig.update_yaxes(title_text="share", tickformat=".0%", range=[0, 1], row=3, col=1)
    held = [m["to_version"] for m in moves if m["to_version"] is not None]
    # A tick per version while there are few; beyond that, plotly's own (one per version over
    # thousands of them draws thousands of labels and hangs the browser).
    few = not held or max(held) - min(held) <= 20
    fig.update_yaxes(title_text="version", dtick=1 if few else None, tickformat="d", row=1, col=1)
    fig.update_layout(**kit.layout("", 260 + 220 * (rows - 1), barmode="group"))
    return chart(fig, f"served-{model}"), note
