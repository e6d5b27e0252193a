"""Serving and experiments: how the champion is served (the serving spec, the advisor, a running
server's live numbers) and every rollout and experiment: a canary's steps and the decisions
that moved it, an A/B test's always-valid interval as it narrowed, a bandit's shares and
P(best), an interleaving's wins.

Lists are keyset pages of the ``rollouts`` table; a rollout's page reads its typed records
(plan, experiment configuration, progress) and its shared counters. What needs the prediction
log (an A/B test's intervals recomputed at successive looks, a bandit's or an interleaving's
current numbers) is computed in a fragment the page loads after it shows (htmx), from the log as
last landed, never recorded.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from sqlalchemy import and_, func, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse

from loopml import _htmlkit as kit
from loopml.errors import ConflictError, LoopmlError, NotFoundError, UsageError
from loopml.serving import load_advice
from loopml.storage import tables as t
from loopml.ui._context import PREFIX
from loopml.ui._format import chart
from loopml.ui._pages import _live
from loopml.ui._pages._common import form_of, parse_int, ui

router = APIRouter()

STATUSES = ("active", "promoted", "rolled_back", "stopped")
STRATEGIES = ("canary", "shadow", "ab", "bandit", "interleave")
STRATEGY_NAMES = {
    "canary": "canary",
    "shadow": "shadow",
    "ab": "A/B test",
    "bandit": "bandit",
    "interleave": "interleaving",
}
REFRESH_S = 5
LOOKS = 12


# ------------------------------------------------------------------------------------ serving


def _serving_config(ctx: Any) -> dict[str, Any]:
    spec = ctx.project.spec
    s = spec.serving
    fb = s.fallback
    if fb.kind == "precomputed":
        fallback = "the static table's value for the key"
    elif fb.kind == "model":
        fallback = f"a smaller model ({fb.model or 'not named'})"
    elif fb.value is not None:
        fallback = f"the value {fb.value}"
    else:
        fallback = "the training prior (the default value)"
    if fb.kind != "default" and fb.then_default:
        fallback += ", then the default"
    return {
        "model": spec.model.name if spec.model is not None else None,
        "mode": s.mode,
        "alias": s.alias,
        "key": s.static.key,
        "head": s.hybrid.head,
        "latency_budget": s.latency_budget.total_seconds() if s.latency_budget else None,
        "fallback": fallback,
        "breaker": f"opens after {s.breaker.failures} consecutive failures, "
        f"for {s.breaker.cooldown.total_seconds():g} s",
        "watch_s": s.watch_interval.total_seconds(),
        "feature_cache_s": s.feature_cache.total_seconds(),
        "token_env": s.token_env,
        "log": s.log.enabled,
        "bandit_update_s": s.bandit_update.total_seconds() if s.bandit_update else None,
    }


def _serving_values(request: Request) -> dict[str, Any]:
    ctx = ui(request)
    live = _live.read(ctx.live, ctx.serving_url, ctx.scrapes)
    return {
        "page_name": "serving",
        "config": _serving_config(ctx),
        "live": live,
        "refresh_s": REFRESH_S,
        "kept": load_advice(ctx.project.root),
    }


@router.get("/serving", response_class=HTMLResponse)
def serving(request: Request) -> HTMLResponse:
    return ui(request).render(request, "serving/serving.html", **_serving_values(request))


@router.get("/serving/live", response_class=HTMLResponse)
def serving_live(request: Request) -> HTMLResponse:
    """The live panel (htmx refreshes it every few seconds; alone, the whole page)."""
    return ui(request).render(request, "serving/serving.html", **_serving_values(request))


# --------------------------------------------------------------------------------- the list


def rollout_page(
    conn: Any,
    *,
    status: str | None,
    strategy: str | None,
    model: str | None,
    before: int | None,
    limit: int,
) -> tuple[list[dict[str, Any]], int | None]:
    """One keyset page of rollouts, newest first, and the cursor of the next (None: the end)."""
    ro = t.rollouts
    where = []
    if status:
        where.append(ro.c.status == status)
    if strategy:
        where.append(ro.c.strategy == strategy)
    if model:
        where.append(ro.c.model == model)
    if before:
        where.append(ro.c.id < before)
    query = select(ro).order_by(ro.c.id.desc()).limit(limit + 1)
    if where:
        query = query.where(and_(*where))
    rows = [dict(r) for r in conn.execute(query).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return [_row(r) for r in rows], (rows[-1]["id"] if more and rows else None)


def _row(r: dict[str, Any]) -> dict[str, Any]:
    from loopml.rollout import parse_data

    plan, experiment, progress, _ = parse_data(r["data"])
    arms = experiment.arms if experiment is not None and experiment.arms else None
    result = progress.result or {}
    return {
        **{k: r[k] for k in ("id", "model", "strategy", "status", "champion", "challenger")},
        **{k: r[k] for k in ("step", "share", "started_at", "ended_at", "unit")},
        "kind": STRATEGY_NAMES.get(r["strategy"], r["strategy"]),
        "arms": arms or [r["champion"], r["challenger"]],
        "steps": plan.steps,
        "reason": progress.reason,
        "decisions": len(progress.decisions),
        "decision": result.get("decision"),
        "winner": result.get("winner"),
    }


def _counts_by(conn: Any, column: Any) -> dict[str, int]:
    rows = conn.execute(select(column, func.count()).group_by(column)).all()
    return {str(k): int(n) for k, n in rows}


@router.get("/experiments", response_class=HTMLResponse)
def experiments(request: Request) -> HTMLResponse:
    ctx = ui(request)
    q = request.query_params
    status = q.get("status") or None
    strategy = q.get("strategy") or None
    model = q.get("model") or None
    if status is not None and status not in STATUSES:
        status = None
    if strategy is not None and strategy not in STRATEGIES:
        strategy = None
    before = parse_int(q.get("before"), "before", default=0, low=0, high=2**62) or None
    limit = parse_int(q.get("limit"), "limit", default=50, low=1, high=500)
    with ctx.project.store.read() as conn:
        rows, older = rollout_page(
            conn, status=status, strategy=strategy, model=model, before=before, limit=limit
        )
        by_status = _counts_by(conn, t.rollouts.c.status)
        by_strategy = _counts_by(conn, t.rollouts.c.strategy)
    keep = {k: v for k, v in (("status", status), ("strategy", strategy), ("model", model)) if v}
    if q.get("limit"):
        keep["limit"] = str(limit)
    return ctx.render(
        request,
        "serving/experiments.html",
        page_name="serving",
        rows=rows,
        status_filter=status,
        strategy=strategy,
        model=model,
        statuses=STATUSES,
        strategies=STRATEGIES,
        names=STRATEGY_NAMES,
        by_status=by_status,
        by_strategy=by_strategy,
        older_href=f"{PREFIX}/experiments?{urlencode({**keep, 'before': older})}"
        if older
        else None,
        newest_href=f"{PREFIX}/experiments?{urlencode(keep)}" if before else None,
    )


# ------------------------------------------------------------------------------- one rollout


def _rollout(ctx: Any, rollout_id: int) -> Any:
    try:
        return ctx.project.rollouts.get(rollout_id)
    except NotFoundError:
        raise NotFoundError(
            f"no rollout or experiment {rollout_id}: see the list at /ui/experiments",
            details={"rollout": rollout_id},
        ) from None


COUNTER_LABELS = {
    "requests": "requests",
    "errors": "errors",
    "latency_us": "mean latency",
    "shadowed": "shadow scorings",
    "rankings": "rankings",
}


def _counts(ctx: Any, r: Any) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]]]:
    """The shared counters: one row per version, one column per name (requests first; a
    latency as its mean, the rest as how many), each version's share of the requests."""
    counts = ctx.project.rollouts.counts(r.id)
    names = sorted({n for v in counts.values() for n in v}, key=lambda n: (n != "requests", n))
    columns = [
        (n, COUNTER_LABELS.get(n, n.replace("_", " ")), "latency" if n.endswith("_us") else "n")
        for n in names
    ]
    total = sum(v["requests"].n for v in counts.values() if "requests" in v)
    rows = []
    for version in sorted(set(r.arms) | set(counts)):
        got = counts.get(version, {})
        requests = got["requests"].n if "requests" in got else None
        values = {
            n: (got[n].mean if kind == "latency" else got[n].n)
            for n, _, kind in columns
            if n in got
        }
        rows.append(
            {
                "version": version,
                "role": _role(r, version),
                "values": values,
                "share": requests / total if requests is not None and total else None,
            }
        )
    return columns, rows


def _role(r: Any, version: int) -> str:
    if r.is_experiment:
        return "control" if version == r.arms[0] else "arm"
    return {r.champion: "champion", r.challenger: "challenger"}.get(version, "")


def shown(x: Any, digits: int = 3) -> Any:
    """Numbers as a table shows them: floats to ``digits`` significant digits (an interval's
    ends, p-values and differences of 0.004 read as 0.00406, never 0.004057321), through dicts
    and lists."""
    if isinstance(x, float) and math.isfinite(x) and x != 0:
        # below 0.001, two digits: 0.00046 (a table shows 6 decimal places as a raw float)
        keep = min(digits, 2) if abs(x) < 0.001 else digits
        # never fewer than the whole units: 12,345.678 units read 12,346, not 12,300
        return round(x, max(keep - 1 - math.floor(math.log10(abs(x))), 0))
    if isinstance(x, dict):
        return {
            k: [prose(str(t)) for t in v]
            if k == "reasons" and isinstance(v, list)
            else shown(v, digits)
            for k, v in x.items()
        }
    if isinstance(x, list | tuple):
        return [shown(v, digits) for v in x]
    return x


_LONG_NUMBER = re.compile(r"(?<![\d.:])([-+]?\d+\.\d{4,})(?![\d.])")


def prose(text: str) -> str:
    """A sentence the library wrote, its long numbers as a table shows them (:func:`shown`:
    0.03763 reads 0.0376, 0.000463 reads 0.00046); times are left as they are."""

    def short(m: re.Match[str]) -> str:
        v = float(m.group(1))
        out = f"{shown(v):.3g}" if v else "0"
        return ("+" + out) if m.group(1).startswith("+") and not out.startswith("-") else out

    return _LONG_NUMBER.sub(short, text)


def _decisions(r: Any) -> list[dict[str, Any]]:
    out = []
    for i, recorded in enumerate(r.progress.decisions):
        d = recorded.to_dict()  # the keys it was recorded with (a step's or an ending's)
        numbers = d.get("numbers") or {}
        ops = numbers.get("ops") or {}
        step = d.get("step")
        out.append(
            {
                "i": i,
                "at": kit.time(d.get("at")) or d.get("at"),
                "step": step,
                "share": r.steps[step] if isinstance(step, int) and step < len(r.steps) else None,
                "action": d.get("action") or d.get("decision"),
                "reasons": [prose(str(t)) for t in d.get("reasons") or []],
                "numbers": shown(numbers),
                "verdict": numbers.get("verdict"),
                "requests": ops.get("requests") or {},
                "error_rate": shown(ops.get("error_rate") or {}),
                "extra": {
                    k: v
                    for k, v in d.items()
                    if k not in ("at", "step", "action", "reasons", "numbers", "decision")
                },
            }
        )
    return out


def _decision_chart(r: Any, decisions: list[dict[str, Any]]) -> str | None:
    """A canary's looks: the difference challenger - champion and its interval at each decision,
    against the margin it must stay under."""
    import plotly.graph_objects as go

    looks = [d for d in decisions if d["numbers"].get("difference") is not None]
    if not looks:
        return None
    x = [f"{kit.when(d['at'])} (step {d['step']})" for d in looks]
    diff = [float(d["numbers"]["difference"]) for d in looks]
    low = [d["numbers"].get("lower") for d in looks]
    high = [d["numbers"].get("upper") for d in looks]
    plus = [h - v if h is not None else 0 for v, h in zip(diff, high, strict=True)]
    minus = [v - lo if lo is not None else 0 for v, lo in zip(diff, low, strict=True)]
    metric = looks[-1]["numbers"].get("metric", "metric")
    fig = go.Figure(
        [
            go.Scatter(
                x=x,
                y=diff,
                mode="markers+lines",
                name="challenger − champion",
                error_y={"type": "data", "array": plus, "arrayminus": minus, "visible": True},
            )
        ]
    )
    margins = [d["numbers"].get("margin") for d in looks]
    if any(m is not None for m in margins):
        fig.add_trace(kit.line(x, margins, "margin (worse beyond)", "#d62728", "dash"))
    fig.update_layout(
        kit.layout(
            f"{metric}: the challenger's difference at each decision, with its interval",
            300,
            yaxis={"title": f"{metric} difference", "zeroline": True},
        )
    )
    return chart(fig, f"decisions-{r.id}")


@router.get("/experiments/{rollout_id}", response_class=HTMLResponse)
def experiment(request: Request, rollout_id: int) -> HTMLResponse:
    ctx = ui(request)
    r = _rollout(ctx, rollout_id)
    names, counts = _counts(ctx, r)
    decisions = _decisions(r)
    chart = None if r.is_experiment else _decision_chart(r, decisions)
    cfg = r.experiment
    return ctx.render(
        request,
        "serving/experiment.html",
        page_name="serving",
        r=r,
        kind=STRATEGY_NAMES.get(r.strategy, r.strategy),
        cfg=cfg.to_dict() if cfg is not None else {},
        config=cfg,
        names=names,
        counts=counts,
        decisions=decisions,
        chart=chart,
        result=shown(r.progress.result or {}),
        p_values=r.progress.p_values or {},
        duration=_seconds(r.started_at, r.ended_at),
    )


def _seconds(start: datetime, end: datetime | None) -> float | None:
    if end is None:
        return None
    a = start if start.tzinfo else start.replace(tzinfo=UTC)
    b = end if end.tzinfo else end.replace(tzinfo=UTC)
    return (b - a).total_seconds()


# --------------------------------------------------------------------- an experiment's analysis


def _ab_chart(r: Any, looks: list[dict[str, Any]]) -> str | None:
    import plotly.graph_objects as go

    traces = []
    palette = ("#2563eb", "#3f9142", "#d69e2e", "#9333ea", "#d62728")
    for i, version in enumerate(r.arms[1:]):
        xs, diff, low, high = [], [], [], []
        for look in looks:
            arm = next((a for a in look["arms"] if a["version"] == version), None)
            if arm is None or arm.get("difference") is None:
                continue
            xs.append(look["labelled"])
            diff.append(arm["difference"])
            low.append(arm["low"])
            high.append(arm["high"])
        if not xs:
            continue
        color = palette[i % len(palette)]
        name = f"version {version} − {r.arms[0]}"
        traces += [
            go.Scatter(
                x=xs, y=high, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip"
            ),
            go.Scatter(
                x=xs,
                y=low,
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor="rgba(37,99,235,0.15)",
                name=f"{name}: always-valid interval",
            ),
            go.Scatter(x=xs, y=diff, mode="lines+markers", line={"color": color}, name=name),
        ]
    if not traces:
        return None
    fig = go.Figure(traces)
    cfg = r.experiment
    metric = cfg.metric if cfg is not None else "metric"
    shapes = [
        {
            "type": "line",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "y0": 0,
            "y1": 0,
            "line": {"color": "#52606d", "width": 1},
        }
    ]
    if cfg is not None and cfg.effect:
        for y in (cfg.effect, -cfg.effect):
            shapes.append(
                {
                    "type": "line",
                    "xref": "paper",
                    "x0": 0,
                    "x1": 1,
                    "y0": y,
                    "y1": y,
                    "line": {"color": "#d69e2e", "dash": "dot", "width": 1},
                }
            )
    fig.update_layout(
        kit.layout(
            f"{metric}: difference from the control as outcomes came in (dotted: ± the effect "
            "worth detecting)",
            320,
            xaxis={"title": "labelled outcomes"},
            yaxis={"title": f"{metric} difference"},
            shapes=shapes,
        )
    )
    return chart(fig, f"narrowing-{r.id}")


@router.get("/experiments/{rollout_id}/analysis", response_class=HTMLResponse)
def analysis(request: Request, rollout_id: int) -> HTMLResponse:
    """An experiment's numbers computed from the log as last landed (nothing recorded)."""
    ctx = ui(request)
    r = _rollout(ctx, rollout_id)
    looks: list[dict[str, Any]] = []
    chart = None
    current: dict[str, Any] = {}
    error = None
    if r.is_experiment:
        ex = ctx.project.experiments
        try:
            if r.strategy == "ab":
                looks = ex.looks(r, points=LOOKS)
                chart = _ab_chart(r, looks)
                current = looks[-1] if looks else {}
            else:
                current = ex.evaluate(r, record=False, land=False)
        except LoopmlError as exc:  # shown in the panel: a fragment's error page is not swapped in
            error = exc.message
    return ctx.render(
        request,
        "serving/analysis.html",
        page_name="serving",
        r=r,
        kind=STRATEGY_NAMES.get(r.strategy, r.strategy),
        looks=shown(looks),
        chart=chart,
        current=shown(current),
        error=error,
    )


# ------------------------------------------------------------------------------------ actions


def _stop(project: Any, r: Any, *, by: str, reason: str) -> dict[str, Any]:
    """End an active rollout as stopped, as ``loopml rollout stop`` does (an experiment through
    its service, which records its numbers; a canary's challenger alias freed)."""
    from loopml.rollout import CHALLENGER_ALIAS

    if not r.active:
        raise ConflictError(f"rollout {r.id} has already ended ({r.status})")
    if r.is_experiment:
        done = project.experiments.end(r, promote=None, reason=f"{reason} (by {by})", by=by)
        return {"rollout": r.id, "status": done["rollout"]["status"]}
    ended = project.rollouts.end(r, "stopped", at=datetime.now(UTC), reason=f"{reason} (by {by})")
    freed = project.registry.aliases(r.model).get(CHALLENGER_ALIAS) == r.challenger
    if freed:
        project.registry.remove_alias(
            r.model, CHALLENGER_ALIAS, by=by, reason=f"rollout {r.id} stopped: {reason}"
        )
    return {"rollout": r.id, "status": ended.status, "challenger_alias_freed": freed}


@router.post("/experiments/{rollout_id}/stop", response_class=HTMLResponse)
async def stop(request: Request, rollout_id: int) -> HTMLResponse:
    """Stop an active rollout or experiment: the champion takes all the traffic again."""
    ctx = ui(request)
    form = await form_of(request)
    r = await run_in_threadpool(_rollout, ctx, rollout_id)
    await run_in_threadpool(
        ctx.act,
        request,
        form,
        action="rollout.stop",
        target=f"rollout:{r.id}",
        do=lambda by, reason: _stop(ctx.project, r, by=by, reason=reason),
    )
    return ctx.render(
        request,
        "done.html",
        message=f"{STRATEGY_NAMES.get(r.strategy, r.strategy)} {r.id} stopped: version "
        f"{r.champion if not r.is_experiment else r.arms[0]} keeps the traffic it had before",
        back=f"{PREFIX}/experiments/{r.id}",
    )


@router.post("/experiments/{rollout_id}/promote", response_class=HTMLResponse)
async def promote(request: Request, rollout_id: int) -> HTMLResponse:
    """End an experiment by promoting its winner (or a chosen arm) through the registry's gate,
    with the experiment's numbers recorded as an evaluation."""
    ctx = ui(request)
    form = await form_of(request)
    r = await run_in_threadpool(_rollout, ctx, rollout_id)
    choice = str(form.get("version") or "winner").strip()
    if not r.is_experiment:
        raise UsageError(
            f"rollout {r.id} is a {r.strategy}: its judge promotes it step by step; stop it "
            "instead, or promote a version on its model's page"
        )
    target: int | str = (
        "winner"
        if choice == "winner"
        else parse_int(choice, "version", default=0, low=1, high=2**31)
    )

    def do(by: str, reason: str) -> dict[str, Any]:
        if not r.active:
            raise ConflictError(f"experiment {r.id} has already ended ({r.status})")
        done = ctx.project.experiments.end(r, promote=target, reason=reason, by=by)
        return {
            "rollout": r.id,
            "status": done["rollout"]["status"],
            "promoted": done.get("promoted"),
            "previous": done.get("previous"),
        }

    record = await run_in_threadpool(
        ctx.act, request, form, action="experiment.promote", target=f"rollout:{r.id}", do=do
    )
    outcome = record["outcome"]
    message = (
        f"version {outcome['promoted']} is the champion (was {outcome['previous']})"
        if outcome.get("promoted") is not None
        else f"experiment {r.id} ended: its winner is the champion already"
    )
    return ctx.render(request, "done.html", message=message, back=f"{PREFIX}/experiments/{r.id}")
