"""`loopml rollout status | stop`: the challenger's way to traffic, seen and stopped by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from loopml.cli._common import JsonOpt, ProjectOpt, open_project, out, print_json, table, when
from loopml.errors import NotFoundError

app = typer.Typer(
    help="Rollouts and experiments: shadow, canary, A/B tests, bandits and interleaving.",
    no_args_is_help=True,
)

RECENT = 5
T = TypeVar("T", int, float)


def _numbers(text: str, what: str, kind: type[T]) -> list[T]:
    """A comma-separated option as numbers of ``kind`` (int or float)."""
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"{what} must be comma-separated {'integers' if kind is int else 'numbers'}, "
            f"got {text!r}"
        ) from None


@app.command("start")
def start(
    strategy: Annotated[str, typer.Option(help="ab | bandit | interleave")],
    arms: Annotated[str, typer.Option(help="Versions, comma-separated; the first is the control.")],
    shares: Annotated[
        str | None, typer.Option(help="A/B: each arm's share of units, e.g. 0.5,0.5.")
    ] = None,
    unit: Annotated[
        str | None,
        typer.Option(help="A/B: the request field whose value keeps a unit on one arm."),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="accuracy | error | label | log_loss | brier | squared_error | ..."),
    ] = None,
    effect: Annotated[
        float | None, typer.Option(help="A/B: the smallest difference worth detecting.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="False-positive rate.")] = 0.05,
    power: Annotated[float, typer.Option(help="A/B: the chance to detect --effect.")] = 0.8,
    policy: Annotated[
        str, typer.Option(help="Bandit: thompson | ucb1 | epsilon_greedy.")
    ] = "thompson",
    epsilon: Annotated[float | None, typer.Option(help="Bandit: epsilon-greedy's epsilon.")] = None,
    k: Annotated[int, typer.Option(help="Interleaving: how many items each ranking shows.")] = 10,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Start an experiment over model versions. An A/B test prints the sample size it needs
    per arm (fixed-horizon and sequential) from --effect and --power."""
    from loopml.data import default_user

    options = {"epsilon": epsilon} if epsilon is not None else {}
    with open_project(project) as p:
        r = p.experiments.start(
            strategy,
            _numbers(arms, "--arms", int),
            shares=_numbers(shares, "--shares", float) if shares else None,
            unit=unit,
            metric=metric,
            effect=effect,
            alpha=alpha,
            power=power,
            policy=policy,
            options=options,
            k=k,
            by=default_user(),
        )
    info = r.to_dict()
    if json:
        print_json(info)
        return 0
    from loopml.rollout import ExperimentConfig

    cfg = r.experiment if r.experiment is not None else ExperimentConfig()
    out.print(
        f"experiment {r.id} started: {r.strategy} over versions "
        + ", ".join(str(a) for a in r.arms)
        + f" (control {r.arms[0]}), metric {cfg.metric}"
    )
    size = cfg.sample_size
    if size:
        out.print(
            f"  to detect a difference of {size['effect']:g} with power {size['power']:.0%} at "
            f"alpha {size['alpha']:g}: {size['per_arm_fixed']:,} units per arm for a single "
            f"look, {size['per_arm_sequential']:,} per arm when looking as often as you like"
        )
    for warning in cfg.warnings:
        out.print(f"  warning: {warning}", style="yellow", markup=False)
    if r.strategy == "bandit":
        out.print(f"  policy {cfg.policy}; rewards come from the feedback log")
    return 0


@app.command("end")
def end(
    promote: Annotated[
        str | None,
        typer.Option(help="'winner' (the decided one) or a version number to promote."),
    ] = None,
    stop: Annotated[bool, typer.Option("--stop", help="End without promoting.")] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """End the active experiment: promote its winner through the registry (with the
    experiment's numbers recorded as an evaluation) or stop it."""
    from loopml.data import default_user
    from loopml.errors import UsageError

    if stop == (promote is not None):
        raise UsageError("give either --promote winner|VERSION or --stop")
    by = default_user()
    with open_project(project) as p:
        active = p.rollouts.active(p.models.name)
        if active is None or not active.is_experiment:
            raise NotFoundError(
                f"model {p.models.name!r} has no active experiment; `loopml rollout status` "
                "shows the last ones",
                details={"model": p.models.name},
            )
        target: int | str | None = None
        if promote is not None:
            target = "winner" if promote == "winner" else _numbers(promote, "--promote", int)[0]
        done = p.experiments.end(active, promote=target, reason=reason, by=by)
    if json:
        print_json(done)
        return 0
    ended = done["rollout"]
    out.print(
        f"experiment {ended['id']} ended ({ended['status']})"
        + (
            f": version {done['promoted']} is the champion (was {done.get('previous')})"
            if done.get("promoted") is not None
            else ""
        )
    )
    return 0


@app.command("status")
def status(project: ProjectOpt = Path("."), json: JsonOpt = False) -> int:
    """The active rollout of the project's model, or the last ended ones.

    Shows its step, share, decisions and the counters every serving worker adds to."""
    from loopml.rollout import counts_summary

    with open_project(project) as p:
        model = p.models.name
        rollouts = p.rollouts
        active = rollouts.active(model)
        counts = counts_summary(rollouts.counts(active.id)) if active else None
        recent = [r for r in rollouts.list(model, limit=RECENT + 1) if not r.active][:RECENT]
        result = None
        if active is not None and active.is_experiment:
            result = p.experiments.evaluate(active)
    if json:
        print_json(
            {
                "model": model,
                "active": {**active.to_dict(), "counts": counts} if active else None,
                "experiment": result,
                "recent": [r.to_dict() for r in recent],
            }
        )
        return 0
    if result is not None and active is not None:
        show_experiment(active.to_dict(), result)
        return 0
    if active is None:
        out.print(f"{model}: no active rollout" + ("; the last ones:" if recent else ""))
        for r in recent:
            out.print(
                f"  rollout {r.id}: {r.strategy} of version {r.challenger} against "
                f"{r.champion}, {r.status} {when(r.ended_at)} (started {when(r.started_at)})"
                + (f": {r.progress.reason}" if r.progress.reason else "")
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
    from loopml.rollout import CHALLENGER_ALIAS

    by = default_user()
    with open_project(project) as p:
        model = p.models.name
        rollouts = p.rollouts
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


def show_experiment(r: dict[str, Any], result: dict[str, Any]) -> None:
    """Print an experiment's arms, their metric, confidence intervals and the decision."""
    cfg = r.get("experiment") or {}
    out.print(
        f"experiment {r['id']}: {r['strategy']} over versions "
        + ", ".join(str(a) for a in r.get("arms") or [])
        + f", started {_t(r['started_at'])}; {result.get('logged', 0):,} answers logged, "
        f"{result.get('labelled', 0):,} with feedback"
    )
    assigned = result.get("assigned") or {}
    if r["strategy"] == "ab":
        size = cfg.get("sample_size") or {}
        unit = "units" if result.get("per_unit") else "answers"
        control = str(result["control"])
        rows = [
            [
                control,
                "control",
                f"{assigned.get(control, 0):,.0f}",
                f"{result['control_n']:,.0f}",
                _mean(result.get("control_mean")),
                "",
                "",
                "",
            ]
        ]
        for a in result.get("arms") or []:
            ci = (
                f"{a['low']:+.3f} to {a['high']:+.3f}"
                if a.get("low") is not None and a.get("high") is not None
                else "-"
            )
            rows.append(
                [
                    str(a["version"]),
                    "test",
                    f"{assigned.get(str(a['version']), 0):,.0f}",
                    f"{a['n']:,.0f}",
                    _mean(a.get("mean")),
                    "-" if a.get("difference") is None else f"{a['difference']:+.3f}",
                    ci,
                    f"{a['p_value']:.2g}",
                ]
            )
        table(
            f"{result.get('metric')} per arm, by {unit[:-1]}; the difference from the control "
            f"with its always-valid {1 - result['alpha']:.1%} interval and p-value",
            ["version", "arm", "assigned", unit, "mean", "diff", "interval", "p"],
            rows,
        )
        if size:
            out.print(
                f"  planned: {size['per_arm_sequential']:,} per arm to detect "
                f"{size['effect']:g} with power {size['power']:.0%} "
                f"({size['per_arm_fixed']:,} for a single look)"
            )
        for warning in cfg.get("warnings") or []:
            out.print(f"  warning: {warning}", style="yellow", markup=False)
    elif r["strategy"] == "bandit":
        rows = [
            [
                str(a["version"]),
                f"{assigned.get(str(a['version']), 0):,.0f}",
                f"{a['rewards']:,.0f}",
                _mean(a.get("mean_reward")),
                f"{a['probability']:.1%}",
                f"{a['probability_best']:.1%}",
                _mean(a.get("off_policy_value")),
            ]
            for a in result.get("arms_detail") or []
        ]
        table(
            f"bandit ({result.get('policy')}) on {result.get('metric')}",
            ["version", "pulls", "labelled", "mean", "chosen now", "P(best)", "off-policy value"],
            rows,
        )
    else:
        out.print(
            f"  rankings {result.get('rankings', 0):,}: version {r['arms'][0]} won "
            f"{result.get('wins_a', 0):,}, version {r['arms'][1]} won {result.get('wins_b', 0):,}, "
            f"{result.get('ties', 0):,} tied; p = {result.get('p_value', 1.0):.3g}"
        )
    out.print(
        f"  decision: {result.get('decision')}"
        + (f" (version {result['winner']})" if result.get("winner") is not None else "")
    )
    for reason in result.get("reasons") or []:
        out.print(f"    {reason}")


def _mean(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}"


def _t(iso: str) -> str:
    return iso[:19].replace("T", " ")
