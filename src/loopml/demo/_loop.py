"""Demo, part 8: the loop. March–December replayed day by day as live traffic through the
continual-learning loop, in two copies of the project taken before the replay: one retraining
from scratch on the latest 90 days (stateless), one warm-starting the champion on the new days
only (stateful). Each retrains on its triggers, goes through the gate and a canary, and is
promoted or rolled back on its own. Against them, static training: the January–February model
never retrained, on the same flights."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from loopml._project import Project
from loopml.evaluation import metrics

LOOP_FROM = datetime(2013, 3, 1, tzinfo=UTC)
LOOP_UNTIL = datetime(2014, 1, 1, tzinfo=UTC)
VARIANTS = ("stateless", "stateful")
SHOWN = ("pr_auc", "log_loss")
KINDS = (
    "triggered",
    "trained",
    "training_skipped",
    "gate_passed",
    "gate_refused",
    "canary_started",
    "canary_step",
    "promoted",
    "rolled_back",
    "rollback",
    "paused",
)


def copy_for_loop(directory: Path) -> dict[str, Path]:
    """Copies of the (closed) demo project, one per retraining mode, under ``loop/``."""
    roots = {}
    for variant in VARIANTS:
        dest = directory / "loop" / variant
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(
            directory, dest, ignore=shutil.ignore_patterns("incoming", "loop", "reports")
        )
        spec = dest / "loopml.yaml"
        text = spec.read_text()
        text = text.replace("project: flights_demo", f"project: flights_demo_{variant}", 1)
        if variant == "stateful":
            text = text.replace(
                "retrain: {mode: stateless, window: 90d, min_rows: 2000}",
                "retrain: {mode: stateful, min_rows: 2000}",
            )
        spec.write_text(text)
        roots[variant] = dest
    return roots


def run_variant(root: str, variant: str) -> dict[str, Any]:
    """Replay March–December through the loop of the project at ``root`` (a child process)."""
    from loopml.controller import Controller, replay

    started = time.perf_counter()
    with Project.open(root) as project:
        table = project.features.build(labelled_only=False).table
        controller = Controller(project, holder=f"demo-{variant}")
        result = replay(
            project,
            table,
            start=LOOP_FROM,
            until=LOOP_UNTIL,
            every=timedelta(days=1),
            controller=controller,
        )
        replay_s = time.perf_counter() - started
        months = _served_by_month(project)
        timeline = controller.timeline()
        history = [
            {"action": m.action, "from": m.from_version, "to": m.to_version, "reason": m.reason}
            for m in project.models.history("champion")
        ]
        answered: dict[str, int] = defaultdict(int)
        for period in result.periods:
            for version, n in period.answered.items():
                answered[str(version)] += n
    return {
        "variant": variant,
        "months": months,
        "timeline": timeline,
        "champion_history": history,
        "answered": dict(answered),
        "days": len(result.periods),
        "seconds": round(time.perf_counter() - started, 1),
        "replay_seconds": round(replay_s, 1),
    }


def _served_by_month(project: Project) -> dict[str, dict[str, float]]:
    """PR AUC and log loss of what was served (the canary's arms included), by month."""
    mon = project.monitoring
    mon.land()
    preds = mon.log.predictions()
    if preds is None:
        return {}
    at = preds["at"]
    lo, hi = int(LOOP_FROM.timestamp() * 1e6), int(LOOP_UNTIL.timestamp() * 1e6)
    preds = preds.filter(
        pc.and_(
            pc.and_(pc.greater_equal(at, lo), pc.less(at, hi)),
            pc.not_equal(pc.fill_null(preds["mode"], ""), "shadow"),
        )
    )
    joined, _ = mon.log.joined(preds, mon.join_keys(), "number")
    joined = joined.filter(pc.is_valid(joined["label"]))
    y = pc.greater(pc.cast(joined["label"], pa.float64()), 0.5).to_numpy(zero_copy_only=False)
    p = joined["score"].to_numpy(zero_copy_only=False).astype(float)
    return _monthly(joined["at"].to_numpy(zero_copy_only=False).astype(np.int64), y, p)


def _monthly(at_us: np.ndarray, y: np.ndarray, p: np.ndarray) -> dict[str, dict[str, float]]:
    months = np.array(
        [datetime.fromtimestamp(t / 1e6, UTC).strftime("%Y-%m") for t in at_us], dtype=object
    )
    out = {}
    for m in sorted(set(months)):
        rows = months == m
        got = metrics("binary", y[rows], p[rows])
        out[m] = {"pr_auc": got["pr_auc"], "log_loss": got["log_loss"], "n": float(rows.sum())}
    return out


def static_by_month(project: Project) -> dict[str, dict[str, float]]:
    """The January–February model on the same flights, never retrained."""
    table = project.features.build(labelled_only=True).table
    t = table["_event_time"]
    table = table.filter(
        pc.and_(
            pc.greater_equal(t, pa.scalar(LOOP_FROM, t.type)),
            pc.less(t, pa.scalar(LOOP_UNTIL, t.type)),
        )
    )
    first = project.models.versions()[0]
    model = project.models.load(first)
    label = project.monitoring.label_name()
    y = pc.fill_null(pc.cast(table[label], pa.bool_()), False).to_numpy(zero_copy_only=False)
    p = np.asarray(model.predict(table), dtype=float)
    at = pc.cast(table["_event_time"], pa.int64()).to_numpy(zero_copy_only=False)
    return _monthly(at, y, p)


def start_loops(roots: dict[str, Path]) -> tuple[ProcessPoolExecutor, dict[str, Any]]:
    """Both loops in their own processes (the machine's two cores), started now."""
    pool = ProcessPoolExecutor(
        max_workers=len(roots),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_one_thread,
    )
    futures = {v: pool.submit(run_variant, str(root), v) for v, root in roots.items()}
    return pool, futures


def _one_thread() -> None:
    # Two loops on two cores: LightGBM's threads would otherwise fight over them (OpenMP reads
    # this when the library loads, which is later, in the child).
    os.environ["OMP_NUM_THREADS"] = "1"


def run_loop(
    console: Console,
    project: Project,
    directory: Path,
    pool: ProcessPoolExecutor,
    futures: dict[str, Any],
    serving: dict[str, Any] | None = None,
) -> dict[str, Any]:
    console.print()
    console.rule("8. the loop: March–December, retrained on its triggers, canaried, promoted")
    started = time.perf_counter()
    static = static_by_month(project)
    results: dict[str, dict[str, Any]] = {}
    try:
        for variant, future in futures.items():
            results[variant] = future.result()
    finally:
        pool.shutdown()
    waited = time.perf_counter() - started
    for variant in VARIANTS:
        r = results[variant]
        _print_timeline(console, variant, r)
    table = Table(
        title="static training (the January–February model) against dynamic training (the loop), "
        "on the same flights",
        title_justify="left",
    )
    table.add_column("month")
    table.add_column("flights", justify="right")
    for name in ("static", *VARIANTS):
        for m in SHOWN:
            table.add_column(f"{name} {m.replace('_', ' ')}", justify="right")
    months = sorted(static)
    for month in months:
        cells = [month, f"{int(static[month]['n']):,}"]
        for source in (static, *(results[v]["months"] for v in VARIANTS)):
            got = source.get(month, {})
            cells += [_num(got.get(m)) for m in SHOWN]
        table.add_row(*cells)
    console.print(table)
    summary = _summary(static, results)
    for variant in VARIANTS:
        s = summary[variant]
        console.print(
            f"  {variant}: PR AUC better than static in {s['pr_auc_wins']} of {len(months)} "
            f"months ({s['after_summer_wins']} of {s['after_summer']} from August on), log loss "
            f"lower in {s['log_loss_wins']}; year PR AUC {s['pr_auc']:.3f} vs static "
            f"{summary['static']['pr_auc']:.3f}; {s['promotions']} promotions, "
            f"{s['rollbacks']} canaries rolled back, {s['trainings']} trainings; "
            f"{results[variant]['seconds']:.0f} s"
        )
    html = write_loop_html(directory / "reports" / "loop.html", static, results, summary, serving)
    console.print(f"report: {html}")
    return {
        "static": static,
        "variants": {
            v: {k: results[v][k] for k in ("months", "timeline", "answered", "seconds", "days")}
            for v in VARIANTS
        },
        "summary": summary,
        "waited_seconds": round(waited, 1),
        "report": str(html),
    }


def _summary(
    static: dict[str, dict[str, float]], results: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    def weighted(source: dict[str, dict[str, float]], metric: str) -> float:
        n = sum(v["n"] for v in source.values())
        return sum(v[metric] * v["n"] for v in source.values()) / n if n else float("nan")

    out: dict[str, Any] = {"static": {m: weighted(static, m) for m in SHOWN}}
    for variant, r in results.items():
        months = r["months"]
        kinds = [e["kind"] for e in r["timeline"]]
        common = [m for m in static if m in months]
        late = [m for m in common if m >= "2013-08"]
        out[variant] = {
            **{m: weighted(months, m) for m in SHOWN},
            "pr_auc_wins": sum(months[m]["pr_auc"] > static[m]["pr_auc"] for m in common),
            "log_loss_wins": sum(months[m]["log_loss"] < static[m]["log_loss"] for m in common),
            "after_summer": len(late),
            "after_summer_wins": sum(months[m]["pr_auc"] > static[m]["pr_auc"] for m in late),
            "promotions": kinds.count("promoted"),
            "rollbacks": kinds.count("rolled_back") + kinds.count("rollback"),
            "trainings": kinds.count("trained"),
            "gate_refused": kinds.count("gate_refused"),
        }
    return out


def _print_timeline(console: Console, variant: str, r: dict[str, Any]) -> None:
    table = Table(title=f"the {variant} loop: what happened, day by day", title_justify="left")
    for col in ("day", "cycle", "event", "detail"):
        table.add_column(col)
    for e in r["timeline"]:
        if e["kind"] not in KINDS:
            continue
        table.add_row(e["at"][:10], str(e["cycle"]), e["kind"], describe_event(e))
    console.print(table)


def describe_event(e: dict[str, Any]) -> str:
    """One line a person can read for a loop event."""
    kind = e["kind"]
    if kind == "triggered":
        parts = []
        for t in e.get("triggers", []):
            if t["kind"] == "alert":
                parts.append(f"alert {t['rule']}")
            elif t["kind"] == "schedule":
                parts.append(f"schedule ({t['every']})")
            elif t["kind"] == "new_data":
                parts.append(f"{t['rows']:,} new rows")
            else:
                parts.append(t["kind"])
        return ", ".join(parts)
    if kind == "trained":
        m = e.get("metrics", {})
        rows = e.get("rows", {})
        return (
            f"version {e.get('version')} ({e.get('mode', 'resumed')}, "
            f"{rows.get('train', 0):,} rows, {e.get('seconds', 0)} s): test PR AUC "
            f"{_num(m.get('pr_auc'))}"
        )
    if kind in ("gate_passed", "gate_refused"):
        failed = "; ".join(e.get("failed", []))[:90]
        return f"version {e.get('version')} against {e.get('against')}" + (
            f": {failed}" if failed else ""
        )
    if kind == "canary_started":
        return f"version {e.get('version')} answers {e.get('share', 0):.0%} of requests"
    if kind in ("canary_step", "promoted", "rolled_back"):
        reasons = "; ".join(e.get("reasons", []) or (e.get("decision") or {}).get("reasons", []))
        head = {
            "canary_step": f"{e.get('from', 0):.0%} → {e.get('to', 0):.0%}",
            "promoted": f"version {e.get('version')} is champion (was {e.get('previous')})",
            "rolled_back": f"version {e.get('version')} at {e.get('share', 0):.0%}",
        }[kind]
        return f"{head}: {reasons}"[:140]
    return ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("kind", "at", "cycle"))[:140]


def write_loop_html(
    path: Path,
    static: dict[str, dict[str, float]],
    results: dict[str, dict[str, Any]],
    summary: dict[str, Any],
    serving: dict[str, Any] | None,
) -> Path:
    """One self-contained page: static against dynamic training by month, each loop's
    timeline, the serving comparison, and a link to the monitoring report. Every number goes
    through the HTML toolkit's formatting (thousands separated, four significant digits)."""
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs
    from plotly.subplots import make_subplots

    from loopml import _htmlkit as kit

    months = sorted(static)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("PR AUC (higher is better)", "log loss"))
    for col, metric in enumerate(SHOWN, start=1):
        for name, source in (("static", static), *((v, results[v]["months"]) for v in VARIANTS)):
            y = [source.get(m, {}).get(metric) for m in months]
            fig.add_trace(
                go.Scatter(
                    x=months, y=y, name=name, legendgroup=name, showlegend=col == 1,
                    mode="lines+markers",
                ),
                row=1,
                col=col,
            )  # fmt: skip
    fig.update_layout(**kit.layout("", 420))
    rows = [
        [
            "static",
            kit.fmt(summary["static"]["pr_auc"]),
            kit.fmt(summary["static"]["log_loss"]),
            "0",
            "0",
            "0",
        ]
    ]
    for v in VARIANTS:
        s = summary[v]
        rows.append(
            [v, kit.fmt(s["pr_auc"]), kit.fmt(s["log_loss"])]
            + [kit.fmt(s[k]) for k in ("promotions", "rollbacks", "trainings")]
        )
    parts = [
        "<h1>The continual-learning loop on the flights year</h1>",
        '<p class="meta">March–December replayed day by day as live traffic. Static training: the '
        "January–February model, never retrained. Dynamic training: the loop, retraining on its "
        "triggers, through the gate and a canary. Figures are of what was served.</p>",
        kit.plot(fig, "loop-metrics"),
        "<h2>Summary</h2>",
        kit.table("|PR AUC|log loss|promotions|canaries rolled back|trainings", rows),
    ]
    if serving:
        modes = {m: v for m, v in (serving.get("modes") or {}).items() if isinstance(v, dict)}
        keys = sorted({k for m in modes.values() for k in m})
        parts.append("<h2>Serving: static, dynamic and hybrid</h2>")
        parts.append(
            kit.table(
                "|".join(("mode", *keys)),
                [[kit.e(mode), *(kit.fmt(m.get(k)) for k in keys)] for mode, m in modes.items()],
            )
        )
    for v in VARIANTS:
        parts.append(f"<h2>Timeline: the {v} loop</h2>")
        timeline = [
            [
                kit.when(e["at"][:10]),
                kit.fmt(e["cycle"]),
                kit.e(e["kind"]),
                kit.e(describe_event(e)),
            ]
            for e in results[v]["timeline"]
            if e["kind"] in KINDS
        ]
        parts.append(kit.table("day|cycle|event|detail", timeline, text=(0, 2, 3)))
    parts.append(
        '<p>Monitoring of the static model: <a href="monitoring.html">monitoring.html</a></p>'
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>loopml: the loop</title>\n"
        f"<style>{kit.CSS}</style>\n<script>{get_plotlyjs()}</script>\n</head>\n<body>\n<main>\n"
        + "\n".join(f"<section>{p}</section>" if p.startswith("<h2") else p for p in parts)
        + "\n</main>\n</body>\n</html>\n"
    )
    return kit.write_page(page, path)


def _num(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.3f}"
