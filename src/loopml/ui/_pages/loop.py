"""The loop: its state (phase, cycle, the phase's working data in words), the lease, what the
controller would do at its next step, the triggers configured and where each stands, its cycles
a page at a time with their outcomes, and a trigger by hand (token, who, why); a cycle's page
with every event in order, in words and numbers, linked to the versions, rollouts and alerts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from loopml.errors import LoopmlError, NotFoundError
from loopml.spec import format_duration
from loopml.storage import tables as t
from loopml.ui._context import PREFIX, UiContext
from loopml.ui._pages._common import form_of, parse_int, ui
from loopml.ui._pages._loopread import (
    PHASE_WORDS,
    Event,
    cycle_events,
    cycle_page,
    describe_trigger,
    flat,
    small,
    when_text,
)

router = APIRouter()


def spec_model(ctx: UiContext) -> str | None:
    model = ctx.project.spec.model
    return model.name if model is not None else None


def loop_models(ctx: UiContext) -> list[dict[str, Any]]:
    """Every model with a loop state (the project's model first, with or without one)."""
    ls = t.loop_state
    with ctx.project.store.read() as conn:
        rows = [dict(r) for r in conn.execute(select(ls).order_by(ls.c.model)).mappings()]
    return rows


def load_state(ctx: UiContext, model: str) -> dict[str, Any] | None:
    ls = t.loop_state
    with ctx.project.store.read() as conn:
        row = conn.execute(select(ls).where(ls.c.model == model)).mappings().first()
    return dict(row) if row is not None else None


def _known(ctx: UiContext, model: str) -> tuple[bool, dict[str, Any] | None]:
    """Whether ``model`` is the project's (its loop can be stepped and triggered), and its
    state; a model with neither is not found."""
    state = load_state(ctx, model)
    own = model == spec_model(ctx)
    if not own and state is None:
        known = spec_model(ctx)
        raise NotFoundError(
            f"no loop of model {model!r}"
            + (f": this project's model is {known!r}" if known else ": loopml.yaml declares none"),
            details={"model": model},
        )
    return own, state


# --------------------------------------------------------------------------- the pages


@router.get("/loop", response_class=HTMLResponse)
def index(request: Request) -> Response:
    ctx = ui(request)
    model = spec_model(ctx)
    if model is not None:
        return RedirectResponse(f"{PREFIX}/loop/{model}", status_code=307)
    return ctx.render(request, "loop/index.html", page_name="loop", loops=loop_models(ctx))


@router.get("/loop/{model}", response_class=HTMLResponse)
def loop_page(request: Request, model: str) -> HTMLResponse:
    ctx = ui(request)
    q = request.query_params
    limit = parse_int(q.get("limit"), "limit", default=20, low=1, high=200)
    before = parse_int(q.get("before"), "before", default=0, low=0, high=2**31)
    own, row = _known(ctx, model)
    phase = str(row["phase"]) if row else "idle"
    cycle = int(row["cycle"]) if row else 0
    data = dict(row["data"] or {}) if row else {}
    lease = lease_of(ctx, model)
    page = cycle_page(
        ctx.project.store, model, current=cycle, phase=phase, before=before or None, limit=limit
    )
    return ctx.render(
        request,
        "loop/page.html",
        page_name="loop",
        model=model,
        own=own,
        row=row,
        phase=phase,
        phase_words=PHASE_WORDS.get(phase, phase),
        cycle=cycle,
        since=last_event_at(ctx, model),
        working=working_data(data),
        lease=lease,
        configured=configured(ctx) if own else [],
        page=page,
        limit=limit,
    )


@router.get("/loop/{model}/next", response_class=HTMLResponse)
def next_view(request: Request, model: str) -> HTMLResponse:
    """What the controller would do at its next step and where each trigger stands now (the
    loop page loads it after itself: the new-data trigger counts rows in the lake)."""
    ctx = ui(request)
    own, row = _known(ctx, model)
    if not own:
        raise NotFoundError(
            f"the loop of {model!r} is not this project's: its next step is not known here",
            details={"model": model},
        )
    phase = str(row["phase"]) if row else "idle"
    cycle = int(row["cycle"]) if row else 0
    data = dict(row["data"] or {}) if row else {}
    fired: list[dict[str, Any]] = []
    standing: list[dict[str, Any]] = []
    problem = ""
    try:
        found, states = ctx.project.loop.signals.check(datetime.now(UTC), data)
        fired, standing = found, [s.to_dict() for s in states]
    except LoopmlError as exc:
        problem = exc.message
    return ctx.render(
        request,
        "loop/next.html",
        page_name="loop",
        model=model,
        next_step=next_step(phase, cycle, data, fired, lease_of(ctx, model)),
        problem=problem,
        standing=standing,
    )


@router.post("/loop/{model}/trigger", response_class=HTMLResponse)
async def trigger(request: Request, model: str) -> HTMLResponse:
    ctx = ui(request)
    form = await form_of(request)
    own, _ = _known(ctx, model)
    if not own:
        raise NotFoundError(
            f"the loop of {model!r} is not this project's: only {spec_model(ctx)!r} can be "
            "triggered here",
            details={"model": model},
        )

    def do(by: str, reason: str) -> dict[str, Any]:
        state = ctx.project.loop.trigger(reason, by=by)
        return {"recorded": "a retrain asked for", "phase": state.phase, "cycle": state.cycle}

    record = ctx.act(request, form, action="loop.trigger", target=model, do=do)
    outcome = record["outcome"]
    when = (
        f"the next loop step (loopml loop run, or loopml loop step) starts cycle "
        f"{int(outcome['cycle']) + 1} with it"
        if outcome["phase"] == "idle"
        else f"it waits until cycle {outcome['cycle']} ends (the loop is in {outcome['phase']}); "
        "then the next loop step starts a new cycle with it"
    )
    message = (
        f"Recorded a trigger by hand for {model}, by {record['by']}: {record['reason']} "
        f"(action {record['id']}). Nothing has been retrained yet: {when}. A trigger by hand "
        "does not wait for loop.triggers.min_interval."
    )
    return ctx.render(request, "done.html", message=message, back=f"{PREFIX}/loop/{model}")


@router.get("/loop/{model}/cycles/{cycle}", response_class=HTMLResponse)
def cycle_view(request: Request, model: str, cycle: int) -> HTMLResponse:
    ctx = ui(request)
    q = request.query_params
    limit = parse_int(q.get("limit"), "limit", default=200, low=1, high=1000)
    after = parse_int(q.get("after"), "after", default=0, low=0, high=2**62)
    _, row = _known(ctx, model)
    current = int(row["cycle"]) if row else 0
    phase = str(row["phase"]) if row else "idle"
    events, more = cycle_events(ctx.project.store, model, cycle, after=after, limit=limit)
    if not (1 <= cycle <= current or events or after):
        raise NotFoundError(
            f"no cycle {cycle} of the loop of {model!r}: it is at cycle {current}",
            details={"model": model, "cycle": cycle},
        )
    summary = cycle_page(
        ctx.project.store, model, current=current, phase=phase, before=cycle + 1, limit=1
    ).cycles
    return ctx.render(
        request,
        "loop/cycle.html",
        page_name="loop",
        model=model,
        cycle=cycle,
        current=current,
        summary=summary[0] if summary else None,
        events=[event_view(model, e) for e in events],
        more=more,
        limit=limit,
    )


# ------------------------------------------------------------------------ what it shows


def lease_of(ctx: UiContext, model: str) -> dict[str, Any] | None:
    le = t.leases
    with ctx.project.store.read() as conn:
        row = conn.execute(select(le).where(le.c.name == f"loop:{model}")).mappings().first()
    if row is None:
        return None
    expires = _utc(row["expires_at"])
    return {
        "holder": row["holder"],
        "acquired_at": _utc(row["acquired_at"]),
        "expires_at": expires,
        "expired": expires < datetime.now(UTC),
    }


def last_event_at(ctx: UiContext, model: str) -> datetime | None:
    le = t.loop_events
    q = select(le.c.at).where(le.c.model == model).order_by(le.c.id.desc()).limit(1)
    with ctx.project.store.read() as conn:
        at = conn.execute(q).scalar()
    return _utc(at) if at is not None else None


def _utc(x: datetime) -> datetime:
    return x.replace(tzinfo=UTC) if x.tzinfo is None else x


def working_data(data: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The phase's working data as (what, in words, link) rows."""
    out: list[tuple[str, str, str]] = []

    def time(key: str) -> str:
        return when_text(data.get(key)) if isinstance(data.get(key), str) else ""

    if data.get("cycle_started_at"):
        out.append(("cycle began", time("cycle_started_at") + " (the loop's clock)", ""))
    triggers = [describe_trigger(x) for x in data.get("triggers") or [] if isinstance(x, Mapping)]
    if triggers:
        out.append(("triggered by", "; ".join(triggers), ""))
    if data.get("version") is not None:
        out.append(("challenger", f"version {data['version']}", f"version:{data['version']}"))
    if data.get("rollout") is not None:
        out.append(("rollout", f"rollout {data['rollout']}", f"rollout:{data['rollout']}"))
    manual = data.get("manual")
    if isinstance(manual, Mapping):
        out.append(
            (
                "trigger by hand waiting",
                f"asked by {manual.get('by')} at {str(manual.get('at', ''))[:16]}: "
                f"{manual.get('reason')}",
                "",
            )
        )
    if data.get("champion_since"):
        out.append(("champion since", time("champion_since"), ""))
    elif data.get("watching_since"):
        out.append(("watching the champion since", time("watching_since"), ""))
    if data.get("last_trained_at"):
        out.append(("last trained", time("last_trained_at"), ""))
    monitor = data.get("monitor")
    if data.get("monitored_at"):
        said = monitor.get("summary") if isinstance(monitor, Mapping) else None
        out.append(("last monitored", time("monitored_at") + (f": {said}" if said else ""), ""))
    return out


def next_step(
    phase: str,
    cycle: int,
    data: Mapping[str, Any],
    fired: list[dict[str, Any]],
    lease: Mapping[str, Any] | None,
) -> str:
    """What the controller would do at its next step, in words."""
    held = ""
    if lease is not None and not lease["expired"]:
        held = (
            f" The loop is held by {lease['holder']} until "
            f"{lease['expires_at']:%Y-%m-%d %H:%M} UTC: only that controller acts until then."
        )
    if phase == "idle":
        if fired:
            why = "; ".join(describe_trigger(f) for f in fired)
            text = f"Start cycle {cycle + 1}: train a new version (due: {why})."
        else:
            text = "Wait: no trigger is due (where each stands is below)."
    elif phase == "training":
        text = f"Train the version of cycle {cycle} (or take the one already trained for it)."
    elif phase == "gating":
        text = f"Gate version {data.get('version')} against the champion."
    elif phase in ("canary", "shadow"):
        text = (
            f"Judge the {phase} of version {data.get('version')} (rollout "
            f"{data.get('rollout')}): advance it, hold, promote it or roll it back."
        )
    elif phase == "paused":
        text = "Stay paused while too much of the recent data is quarantined; resume otherwise."
    else:
        text = f"Act on phase {phase}."
    if phase != "idle" and data.get("manual"):
        text += " The trigger by hand waits until this cycle ends."
    return text + held


def configured(ctx: UiContext) -> list[tuple[str, str]]:
    """The triggers loopml.yaml sets (loop.triggers and loop.monitor_every)."""
    spec = ctx.project.spec.loop
    trig = spec.triggers
    new_rows = trig.new_rows
    return [
        ("schedule", f"every {format_duration(trig.schedule)}" if trig.schedule else "off"),
        (
            "new data",
            "off"
            if new_rows is None
            else (
                f"{new_rows:,} new rows"
                if isinstance(new_rows, int)
                else "auto: a tenth of the rows the champion was trained and tested on"
            ),
        ),
        (
            "monitoring",
            ", ".join(s.replace("_", " ") for s in trig.monitoring) or "off",
        ),
        ("alerts", ", ".join(trig.alerts) or "none named"),
        ("at least between cycles", format_duration(trig.min_interval)),
        (
            "monitoring the champion",
            f"every {format_duration(spec.monitor_every)}" if spec.monitor_every else "off",
        ),
    ]


def event_view(model: str, e: Event) -> dict[str, Any]:
    """An event with its links, facts, gate checks, reasons and numbers."""
    d = e.detail
    m = f"{PREFIX}/models/{model}/versions/"
    links: list[tuple[str, str]] = []
    facts: list[tuple[str, Any]] = []
    triggers: list[tuple[str, str]] = []
    if d.get("version") is not None:
        links.append((f"version {d['version']}", f"{m}{d['version']}"))
    for key in ("previous", "against", "to"):
        if isinstance(d.get(key), int):
            links.append((f"{key}: version {d[key]}", f"{m}{d[key]}"))
    if d.get("rollout") is not None:
        links.append((f"rollout {d['rollout']}", f"{PREFIX}/experiments/{d['rollout']}"))
    if e.kind == "triggered":
        for trig in d.get("triggers") or []:
            if not isinstance(trig, Mapping):
                continue
            href = (
                f"{PREFIX}/monitoring/alerts/{trig['alert']}"
                if trig.get("kind") == "alert" and trig.get("alert") is not None
                else ""
            )
            triggers.append((describe_trigger(trig), href))
    if e.kind == "trained":
        rows: Mapping[str, Any] = d["rows"] if isinstance(d.get("rows"), Mapping) else {}
        facts += [(f"{k} rows", v) for k, v in rows.items()]
        facts += [(k, v) for k, v in (d.get("metrics") or {}).items()]
        learned: Mapping[str, Any] = d["learned"] if isinstance(d.get("learned"), Mapping) else {}
        if learned.get("start"):
            facts.append(
                (
                    "learned from",
                    f"{when_text(learned['start'])} to {when_text(learned.get('end'))}",
                )
            )
        if d.get("seconds") is not None:
            facts.append(("seconds", d["seconds"]))
        if d.get("mode"):
            facts.append(("mode", d["mode"]))
    if e.kind in ("gate_passed", "gate_refused") and d.get("summary"):
        facts.append(("verdict", d["summary"]))
    for key in ("share", "from"):
        if isinstance(d.get(key), int | float):
            facts.append((key, f"{100 * float(d[key]):.3g}%"))
    if e.kind == "canary_step" and isinstance(d.get("to"), int | float):
        facts.append(("to", f"{100 * float(d['to']):.3g}%"))
    for key in ("status", "action", "reason", "quarantine_rate", "limit"):
        if d.get(key) is not None and key not in {f[0] for f in facts}:
            facts.append((key, d[key]))
    checks = [c for c in d.get("checks") or [] if isinstance(c, Mapping)]
    failed = [str(f) for f in d.get("failed") or []]
    reasons = [str(r) for r in d.get("reasons") or []]
    numbers = [(k, small(v)) for k, v in flat(d.get("numbers") or {})]
    facts = [(k, small(v)) for k, v in facts]
    return {
        "id": e.id,
        "kind": e.kind,
        "at": e.at,
        "recorded_at": e.recorded_at,
        "text": e.text,
        "severity": e.severity,
        "links": links,
        "facts": facts,
        "triggers": triggers,
        "checks": checks,
        "failed": failed,
        "reasons": reasons,
        "numbers": numbers,
    }
