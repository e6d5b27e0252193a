"""`loopml loop step | run | status | trigger | timeline`: the continual-learning loop."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from loopml.cli._common import JsonOpt, ProjectOpt, err, open_project, out, print_json, table
from loopml.cli.rollout import show_rollout
from loopml.errors import UsageError

if TYPE_CHECKING:
    from loopml.controller import StepResult

app = typer.Typer(
    help="The continual-learning loop: triggers, retraining, the gate, the rollout, promotion.",
    no_args_is_help=True,
)

LAST_EVENTS = 10


@app.command("step")
def step(
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="The loop's clock, ISO 8601 with a timezone (default: the wall clock); "
            "for replays and tests.",
        ),
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """One pass of the loop: do what is due now and return (for cron or Airflow).

    When another controller holds the loop, does nothing and says who holds it; the exit code
    is 0 either way."""
    from loopml.controller import Controller

    moment = _now(now)
    with open_project(project) as p:
        controller = Controller(p)
        try:
            result = controller.step(moment)
        finally:
            # One pass: free the lease so the next invocation (another process) can act at once.
            controller.release()
    if json:
        print_json({**result.to_dict(), "now": moment})
        return 0
    if not result.acted:
        out.print(result.note)
        return 0
    for e in result.events:
        out.print(_line(e))
    if result.events:
        out.print(f"now {result.phase}, cycle {result.cycle}")
    else:
        out.print(f"nothing due at {moment.isoformat()[:19]}: {result.phase}, cycle {result.cycle}")
        _show_triggers(result.triggers)
    return 0


@app.command("run")
def run(
    interval: Annotated[
        float | None,
        typer.Option("--interval", min=0.0, help="Seconds between steps (default: loop.interval)."),
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Step until stopped by Ctrl-C or SIGTERM, printing what each step does.

    On a signal the current step finishes first; a second signal aborts it. With --json, one
    JSON line per step that did something."""
    from loopml.controller import Controller

    stop = threading.Event()
    with open_project(project) as p:
        controller = Controller(p)
        wait = interval if interval is not None else controller.spec.interval.total_seconds()
        err.print(
            f"the loop of {controller.name}: a step every {wait:g} s; Ctrl-C or SIGTERM stops it"
        )
        with _stop_on_signals(stop):
            controller.run(interval=interval, stop=stop.is_set, on_step=_printer(json))
    err.print("stopped")
    return 0


@app.command("status")
def status(project: ProjectOpt = Path("."), json: JsonOpt = False) -> int:
    """The loop's phase and cycle, the aliases, the rollout, the lease and the last events."""
    from loopml.controller import Controller

    with open_project(project) as p:
        s = Controller(p).status()
    if json:
        print_json(s)
        return 0
    out.print(f"{s['model']}: {s['phase']}, cycle {s['cycle']}")
    out.print("triggers:" if s["phase"] == "idle" else f"triggers (judged once {s['phase']} ends):")
    _show_triggers(s["triggers"])
    aliases = s["aliases"]
    out.print(
        "aliases: "
        + (", ".join(f"{a} {v}" for a, v in sorted(aliases.items())) if aliases else "none")
    )
    manual = s["data"].get("manual")
    if manual:
        out.print(
            f"asked: a retrain by {manual.get('by')} ({manual.get('reason')}); "
            + (
                "it starts at the next step"
                if s["phase"] == "idle"
                else "it starts once the loop is idle"
            )
        )
    if s["rollout"]:
        show_rollout(s["rollout"], s["counts"] or {})
    else:
        out.print("rollout: none")
    out.print(f"lease: {_lease(s['lease'])}")
    events = s["events"][-LAST_EVENTS:]
    if events:
        _events_table(f"last {len(events)} events", events)
    else:
        out.print("no events yet: `loopml loop step` runs the loop once")
    return 0


@app.command("trigger")
def trigger(
    reason: Annotated[str, typer.Option(help="Why (recorded with the trigger).")] = "by hand",
    by: Annotated[
        str | None, typer.Option("--by", help="Who asks (default: LOOPML_USER or the login).")
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Ask for a retrain at the next step (a trigger by hand)."""
    from loopml.controller import Controller
    from loopml.data import default_user

    with open_project(project) as p:
        controller = Controller(p)
        state = controller.trigger(reason, by=by or default_user())
    manual = state.data["manual"]
    if json:
        print_json(
            {"model": controller.name, "phase": state.phase, "cycle": state.cycle, "manual": manual}
        )
        return 0
    when = (
        "at the next step"
        if state.phase == "idle"
        else f"once the loop is idle again (it is in {state.phase})"
    )
    out.print(
        f"retrain of {controller.name} asked by {manual['by']} ({manual['reason']}): "
        f"it starts {when}"
    )
    return 0


@app.command("timeline")
def timeline(project: ProjectOpt = Path("."), json: JsonOpt = False) -> int:
    """Every event the loop recorded, oldest first: its cycle, kind, loop time and details."""
    from loopml.controller import Controller

    with open_project(project) as p:
        events = Controller(p).timeline()
    if json:
        print_json(events)
    elif events:
        _events_table(None, events)
    else:
        out.print("no events yet: `loopml loop step` runs the loop once")
    return 0


# ------------------------------------------------------------------------------------ pieces


def _now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--now: {text!r} is not an ISO 8601 time; give e.g. 2024-01-17T00:00:00Z",
            details={"field": "now"},
        ) from None
    if moment.tzinfo is None:
        # The loop's times are compared with stored UTC times: a guess here would shift them.
        raise UsageError(
            f"--now: {text!r} has no timezone; give one, e.g. {moment.isoformat()}Z or "
            f"{moment.isoformat()}+00:00",
            details={"field": "now"},
        )
    return moment


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT or SIGTERM (a second one aborts), restoring the handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Python installs signal handlers only in the main thread: the caller stops us
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err.print(
            f"{signal.Signals(signum).name}: stopping after the current step (again to abort)"
        )

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def _printer(as_json: bool) -> Callable[[StepResult], None]:
    last_note = ""

    def on_step(result: StepResult) -> None:
        nonlocal last_note
        note_changed = result.note != last_note
        last_note = result.note
        if not result.events and not (result.note and note_changed):
            return  # quiet while nothing happens
        if as_json:
            line = orjson.dumps(
                result.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
            )
            sys.stdout.write(line.decode() + "\n")
            sys.stdout.flush()
            return
        if result.note:
            out.print(result.note)
        for e in result.events:
            out.print(_line(e))

    return on_step


_TRIGGER_NAMES = {
    "manual": "by hand",
    "no_champion": "no champion",
    "new_data": "new data",
}


def _show_triggers(triggers: list[dict[str, Any]]) -> None:
    """Each trigger and where it stands: what a quiet loop is waiting for."""
    for t in triggers:
        name = _TRIGGER_NAMES.get(t["kind"], t["kind"])
        out.print(f"  {name}: {t['detail']}" + ("  [due]" if t.get("fired") else ""))


def _lease(lease: dict[str, Any] | None) -> str:
    if lease is None:
        return "free"
    if lease["expired"]:
        return f"free (the hold of {lease['holder']} expired at {lease['expires_at'][:19]})"
    return f"held by {lease['holder']} until {lease['expires_at'][:19]}"


def _events_table(title: str | None, events: list[dict[str, Any]]) -> None:
    table(
        title,
        ["cycle", "kind", "loop time", "details"],
        [[e["cycle"], e["kind"], e["at"][:19].replace("T", " "), _details(e)] for e in events],
    )


def _line(e: dict[str, Any]) -> str:
    return f"cycle {e['cycle']}  {e['at'][:19].replace('T', ' ')}  {e['kind']}: {_details(e)}"


_OWN = frozenset({"id", "cycle", "kind", "at", "recorded_at"})


def _details(e: dict[str, Any]) -> str:
    """The main details of an event, in a line."""
    kind = e["kind"]
    if kind == "triggered":
        return ", ".join(_trigger(t) for t in e.get("triggers", []))
    if kind == "trained":
        if e.get("resumed"):
            return f"version {e['version']} (found after a restart)"
        rows = e.get("rows") or {}
        metrics = ", ".join(f"{k} {v}" for k, v in (e.get("metrics") or {}).items())
        learned = e.get("learned") or {}
        refit = (
            f"; refitted on all {learned['rows']:,} rows to {str(learned.get('end'))[:10]}"
            if e.get("refit") and learned
            else ""
        )
        return (
            f"version {e['version']} ({e.get('mode')}) on {_count(rows.get('train'))} rows "
            f"(valid {_count(rows.get('valid'))}, test {_count(rows.get('test'))}){refit} in "
            f"{e.get('seconds')} s"
            + (f"; test {metrics}" + (" (held-out model)" if refit else "") if metrics else "")
        )
    if kind in ("gate_passed", "gate_refused"):
        against = e.get("against")
        text = f"version {e['version']} against " + (
            f"version {against}" if against is not None else "no champion"
        )
        sets = e.get("sets") or {}
        text += "".join(f"; {n} {_count(v.get('rows'))} rows" for n, v in sets.items())
        checks = e.get("checks")
        if checks:
            return text + "; " + ", ".join(_check(c) for c in checks)
        return text + "".join(f"; {f}" for f in e.get("failed") or [])
    if kind == "promoted":
        previous = e.get("previous")
        return (
            f"version {e['version']} is the champion"
            + (f" (was {previous})" if previous is not None else "")
            + f": {e.get('reason')}"
        )
    if kind.endswith("_started"):
        share = (
            f"{e['share']:.0%} of the traffic"
            if e.get("share")
            else f"shadow on {e.get('shadow', 0):.0%}"
        )
        return (
            f"rollout {e.get('rollout')}"
            + (f", version {e['version']}" if "version" in e else "")
            + f", {share}"
        )
    if kind == "canary_step":
        return f"rollout {e['rollout']}: {e['from']:.0%} -> {e['to']:.0%}; " + "; ".join(
            e.get("reasons") or []
        )
    parts = [
        f"{k} {v}"
        for k, v in e.items()
        if k not in _OWN and k not in ("reasons", "numbers", "action") and _scalar(v)
    ]
    parts += e.get("reasons") or []
    return "; ".join(parts)


def _count(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "?"


def _check(c: dict[str, Any]) -> str:
    """A gate check in a few words: its name, status and rows; why, when not passed."""
    rows = f" on {c['rows']:,}" if c.get("rows") is not None else ""
    why = f" ({c['detail']})" if c.get("status") != "passed" and c.get("detail") else ""
    return f"{c['name']} {c.get('status')}{rows}{why}"


def _trigger(t: dict[str, Any]) -> str:
    kind = t.get("kind")
    if kind == "manual":
        return f"by hand ({t.get('by')}: {t.get('reason')})"
    if kind == "no_champion":
        return "no champion yet"
    if kind == "schedule":
        return f"schedule (every {t.get('every')})"
    if kind == "new_data":
        return f"{t.get('rows')} new rows (at least {t.get('limit')})"
    if kind == "monitoring":
        return f"monitoring: {str(t.get('signal')).replace('_', ' ')} ({t.get('detail')})"
    if kind == "alert":
        return f"alert {t.get('rule')} ({t.get('metric')} = {t.get('value')})"
    return str(kind)


def _scalar(v: Any) -> bool:
    return isinstance(v, str | int | float | bool)
