"""Demo, part 3: the first flights model, trained on January–February as known on March 1st,
judged beside its baselines, through the gate, and promoted to champion."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from loopml._project import Project
from loopml.demo._features import AS_OF

SHOWN = ("pr_auc", "roc_auc", "log_loss", "brier", "f1", "ece")


def run_model(console: Console, project: Project) -> dict[str, Any]:
    console.print()
    console.rule("5. the first model: January–February, through the gate")
    result = project.models.train(as_of=AS_OF, by="demo", note="the first model")
    t, v = result.trained, result.version
    assert v is not None
    report = t.report
    console.print(
        f"trained {v.ref} (LightGBM) in {t.seconds:.1f} s on {t.sizes['train']:,} flights, "
        f"threshold {t.model.threshold:.3f} chosen on {t.sizes['valid']:,} validation flights"
    )
    table = Table(
        title=f"test set: the latest {t.sizes['test']:,} flights of the period",
        title_justify="left",
    )
    table.add_column("")
    for m in SHOWN:
        table.add_column(m)
    table.add_row("model", *(_num(report["metrics"].get(m)) for m in SHOWN))
    for name, b in report["baselines"].items():
        label = f"{name} ({b['column']})" if b.get("column") else name
        table.add_row(label, *(_num(b["metrics"].get(m)) for m in SHOWN))
    console.print(table)
    for s in report.get("worst_slices", [])[:3]:
        console.print(
            f"  worst slice {s['column']}={s['slice']} ({s['rows']:,} flights): PR AUC {_num(s.get('pr_auc'))}, {s['gap']:+.3f} from overall"
        )
    gain = report["importance"].get("gain", {})
    console.print(
        "  top features by gain: " + ", ".join(f"{k} {v:.0%}" for k, v in list(gain.items())[:5])
    )
    behaviour = report.get("behaviour", {})
    pert = behaviour.get("perturbation", {})
    if pert:
        console.print(
            f"  perturbation (1% noise): mean change {pert.get('mean_abs_change', 0):.4f}, decisions flipped {pert.get('decision_flip_rate') or 0:.2%}"
        )
    for col, d in behaviour.get("directional", {}).items():
        console.print(
            f"  directional: more {col} never lowers the risk? violations {d.get('violation_rate', 0):.2%} ({'passed' if d.get('passed') else 'not passed'})"
        )
    verdict = project.models.evaluate(v.version, as_of=AS_OF, by="demo")
    console.print(f"gate for {v.ref} (no champion yet): {verdict.summary()}")
    for name in ("test", "backtest"):
        info = verdict.numbers.get(name)
        if info:
            console.print(f"  {name}: {info['rows']:,} rows: {info['why']}")
    for c in verdict.checks:
        rows = f" ({c.rows:,} rows)" if c.rows is not None else ""
        mark = {"passed": "ok", "failed": "NO", "skipped": "skip"}[c.status]
        console.print(f"  {mark} {c.name}{rows}: {c.detail}")
    promoted = None
    if verdict.passed:
        move = project.models.promote(
            v.version, by="demo", reason="the first model, through the gate"
        )
        promoted = move.to_version
        console.print(f"champion: version {promoted}")
    return {
        "version": v.version,
        "metrics": report["metrics"],
        "prior_pr_auc": report["baselines"]["prior"]["metrics"]["pr_auc"],
        "gate_passed": verdict.passed,
        "champion": promoted,
        "train_seconds": round(t.seconds, 2),
    }


def _num(v: Any) -> str:
    return "" if v is None else f"{v:.3f}"
