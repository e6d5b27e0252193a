"""Class imbalance, compared honestly: the plain model (no weights, threshold 0.5) against class
weights and random over- and under-sampling, each with its decision threshold chosen on the
validation rows, all on the same split and the same test rows."""

from __future__ import annotations

from typing import Any

from loopml.errors import UsageError
from loopml.features import TrainingSet
from loopml.spec import ImbalanceSpec, ModelSpec
from loopml.training._train import fit

STRATEGIES: dict[str, dict[str, Any]] = {
    "plain": {
        "class_weight": "none",
        "resample": "none",
        "threshold": "fixed",
        "fixed_threshold": 0.5,
    },
    "class_weight": {"class_weight": "balanced", "resample": "none", "threshold": "f1"},
    "oversample": {"class_weight": "none", "resample": "over", "threshold": "f1"},
    "undersample": {"class_weight": "none", "resample": "under", "threshold": "f1"},
    "threshold_only": {"class_weight": "none", "resample": "none", "threshold": "f1"},
}


def compare_imbalance(
    spec: ModelSpec, ts: TrainingSet, strategies: tuple[str, ...] = tuple(STRATEGIES)
) -> dict[str, Any]:
    """Train one model per strategy and say which won on PR AUC and on F1, and by how much."""
    if spec.task != "binary":
        raise UsageError("the imbalance comparison is for binary tasks")
    rows = []
    for name in strategies:
        variant = spec.model_copy(update={"imbalance": ImbalanceSpec(**STRATEGIES[name])})
        trained = fit(variant, ts)
        m = trained.metrics
        rows.append(
            {
                "strategy": name,
                "pr_auc": m["pr_auc"],
                "roc_auc": m["roc_auc"],
                "f1": m["f1"],
                "precision": m["precision"],
                "recall": m["recall"],
                "threshold": trained.model.threshold,
                "positive_rate": m["positive_rate"],
            }
        )
    plain = next((r for r in rows if r["strategy"] == "plain"), rows[0])
    out: dict[str, Any] = {"rows": rows, "test_rows": trained.sizes["test"]}
    sentences = []
    for metric in ("pr_auc", "f1"):
        best = max(rows, key=lambda r: r[metric])
        out[f"winner_{metric}"] = best["strategy"]
        out[f"margin_{metric}"] = best[metric] - plain[metric]
        if best is plain:
            sentences.append(f"on {metric}, the plain model won ({plain[metric]:.4f})")
        else:
            sentences.append(
                f"on {metric}, {best['strategy']} won: {best[metric]:.4f} against the plain "
                f"model's {plain[metric]:.4f} ({best[metric] - plain[metric]:+.4f})"
            )
    out["summary"] = "; ".join(sentences)
    return out
