"""`loopml rollout status | stop`: the challenger's way to traffic, seen and stopped by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loopml.cli._common import JsonOpt, ProjectOpt, open_project, out, print_json, table, when
from loopml.errors import NotFoundError

if TYPE_CHECKING:
    pass

app = typer.Typer(
    help="The active shadow or canary rollout: its step, decisions and counters.",
    no_args_is_help=True,
)

RECENT = 5


@app.command("status")
def status(project: ProjectOpt = Path("."), json: JsonOpt = False) -> int:
    """The active rollout of the project's model, or the last ended ones.

    Shows its step, share, decisions and the counters every serving worker adds to."""
    from loopml.rollout import Rollouts, counts_summary

    with open_project(project) as p:
        model = p.models.name
        rollouts = Rollouts(p.store)
        active = rollouts.active(model)
        counts = counts_summary(rollouts.counts(active.id)) if active else None
        recent = [r for r in rollouts.list(model, limit=RECENT + 1) if not r.active][:RECENT]
    if json:
        print_json(
            {
                "model": model,
                "active": {**active.to_dict(), "counts": counts} if active else None,
                "recent": [r.to_dict() for r in recent],
            }
        )
        return 0
    if active is None:
        out.print(f"{model}: no active rollout" + ("; the last ones:" if recent else ""))
        for r in recent:
            out.print(
                f"  rollout {r.id}: {r.strategy} of version {r.challenger} against "
                f"{r.champion}, {r.status} {when(r.ended_at)} (started {when(r.started_at)})"
                + (f": {r.data['reason']}" if r.data.get("reason") else "")
            )
        return 0
    show_rollout(active.to_dict(), counts or {})
    return 0


@app.command("stop")
def stop(
    reason: Annotated[str, typer.Option(help="Why (recorded on the rollout).")] = "stopped by hand",
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """End the active rollout as stopped and free the challenger alias.

    The champion takes all the traffic again; the loop sees it at its next step and returns
    to idle."""
    from loopml.data import default_user
    from loopml.rollout import CHALLENGER_ALIAS, Rollouts

    by = default_user()
    with open_project(project) as p:
        model = p.models.name
        rollouts = Rollouts(p.store)
        active = rollouts.active(model)
        if active is None:
            raise NotFoundError(
                f"model {model!r} has no active rollout to stop; `loopml rollout status` shows "
                "the last ones",
                details={"model": model},
            )
        # Rollouts.end records no author: keep who stopped it in the reason.
        ended = rollouts.end(active, "stopped", at=datetime.now(UTC), reason=f"{reason} (by {by})")
        freed = p.registry.aliases(model).get(CHALLENGER_ALIAS) == active.challenger
        if freed:
            p.registry.remove_alias(
                model, CHALLENGER_ALIAS, by=by, reason=f"rollout {active.id} stopped: {reason}"
            )
    if json:
        print_json({**ended.to_dict(), "challenger_alias_freed": freed})
    else:
        out.print(
            f"rollout {ended.id} ({ended.strategy} of version {ended.challenger}) stopped; "
            f"version {ended.champion} takes all traffic"
            + (f"; alias {CHALLENGER_ALIAS} freed" if freed else "")
        )
    return 0


def show_rollout(r: dict[str, Any], counts: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Print a rollout (``Rollout.to_dict()``) and its counters."""
    if r["strategy"] == "canary":
        steps = r.get("steps") or []
        where = (
            f"step {r['step'] + 1} of {len(steps)} ({', '.join(f'{s:.0%}' for s in steps)}), "
            f"{r['share']:.0%} of the traffic"
        )
    else:
        where = f"scored beside the champion on {r['shadow']:.0%} of the requests"
    out.print(
        f"rollout {r['id']}: {r['strategy']} of version {r['challenger']} against champion "
        f"{r['champion']}, {r['status']}; {where}"
    )
    out.print(
        f"  started {_t(r['started_at'])}, this step since {_t(r['step_started_at'])}"
        + (f", unit {r['unit']}" if r.get("unit") else "")
    )
    for d in r.get("decisions") or []:
        out.print(
            f"  {d.get('at', '')[:19]} step {d.get('step', 0) + 1}: {d.get('action')}: "
            + "; ".join(d.get("reasons") or [])
        )
    roles = {str(r["champion"]): "champion", str(r["challenger"]): "challenger"}
    rows = [
        [version, roles.get(version, ""), name, f"{c['n']:,.0f}", _mean(c.get("mean"))]
        for version, names in sorted(counts.items())
        for name, c in sorted(names.items())
    ]
    if rows:
        table("shared counters", ["version", "arm", "counter", "n", "mean"], rows)
    else:
        out.print("  no requests counted yet")


def _mean(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}"


def _t(iso: str) -> str:
    return iso[:19].replace("T", " ")
