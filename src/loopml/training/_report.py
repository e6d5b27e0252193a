"""The evaluation report of a trained model: metrics on the held-out test set beside baselines,
slices with the worst listed, calibration, importance, and the book's behavioural tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from loopml.spec import ModelSpec
from loopml.training._model import Model

PRIMARY = {"binary": "pr_auc", "multiclass": "macro_f1", "regression": "rmse", "ranking": "ndcg@10"}
LOWER_IS_BETTER = {"log_loss", "brier", "ece", "mae", "rmse", "mape"}


def primary_metric(task: str) -> str:
    return PRIMARY[task]


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def _clean(value: Any) -> Any:
    """JSON-safe numbers (NaN and inf become None)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def evaluate_scores(
    spec: ModelSpec, model: Model, table: pa.Table, y: np.ndarray, scores: np.ndarray
) -> dict[str, Any]:
    """The task's metrics of scores against targets."""
    from loopml import evaluation

    kwargs: dict[str, Any] = {"threshold": model.threshold}
    if spec.task == "multiclass":
        kwargs["classes"] = list(range(len(model.classes or [])))
    if spec.task == "ranking":
        assert spec.group is not None
        kwargs["groups"] = table[spec.group].to_numpy(zero_copy_only=False)
    return dict(evaluation.metrics(spec.task, y, scores, **kwargs))


def build_report(
    spec: ModelSpec,
    model: Model,
    *,
    test: pa.Table,
    y_test: np.ndarray,
    scores: np.ndarray,
    train: pa.Table,
    y_train: np.ndarray,
) -> dict[str, Any]:
    from loopml import evaluation

    task = spec.task
    primary = primary_metric(task)
    metrics = evaluate_scores(spec, model, test, y_test, scores)
    categorical = list(model.encoding.categorical)
    candidates = list(dict.fromkeys([*spec.slices, *categorical]))
    classes = list(range(len(model.classes or []))) if task == "multiclass" else None
    groups = (
        test[spec.group].to_numpy(zero_copy_only=False)
        if task == "ranking" and spec.group
        else None
    )
    baselines = evaluation.baselines(
        task,
        y_train,
        y_test,
        train=train,
        test=test,
        candidates=candidates,
        classes=classes,
        groups_test=groups,
    )
    report: dict[str, Any] = {
        "task": task,
        "primary_metric": primary,
        "threshold": model.threshold,
        "rows": {"train": train.num_rows, "test": test.num_rows},
        "metrics": metrics,
        "baselines": baselines,
    }
    slice_columns = [c for c in (spec.slices or candidates) if c in test.column_names]
    if slice_columns and task != "ranking":
        slices = evaluation.slice_metrics(
            task,
            test,
            y_test,
            scores,
            columns=slice_columns,
            metric=primary,
            threshold=model.threshold,
            classes=classes,
        )
        report["slices"] = slices
        report["worst_slices"] = evaluation.worst_slices(slices, n=5)
    if task == "binary":
        report["calibration"] = evaluation.calibration_curve(y_test, scores, bins=10)
    report["importance"] = _importance(spec, model, test, y_test)
    report["behaviour"] = _behaviour(spec, model, test)
    return _clean(report)


def _importance(spec: ModelSpec, model: Model, test: pa.Table, y: np.ndarray) -> dict[str, Any]:
    from loopml import evaluation

    out: dict[str, Any] = {}
    gain = model.gain_importance()
    # SHAP values cost a tree walk per feature: a couple of hundred rows give the picture.
    sample = test.slice(0, min(test.num_rows, 200))
    if gain is not None:
        total = sum(gain.values()) or 1.0
        out["gain"] = dict(sorted(((f, g / total) for f, g in gain.items()), key=lambda kv: -kv[1]))
        contrib = model.contributions(sample)
        if contrib is not None:
            mean_abs = np.abs(contrib[:, :-1]).mean(axis=0)
            out["mean_abs_contribution"] = dict(
                sorted(
                    zip(model.encoding.features, mean_abs.tolist(), strict=True),
                    key=lambda kv: -kv[1],
                )
            )
            out["expected_value"] = float(contrib[:, -1].mean())
    elif spec.task != "ranking":
        perm = evaluation.permutation_importance(
            model.predict,
            sample,
            y[: sample.num_rows],
            task=spec.task,
            metric=primary_metric(spec.task),
            columns=model.encoding.features,
            repeats=2,
            threshold=model.threshold,
        )
        out["permutation"] = perm
    return out


def _behaviour(spec: ModelSpec, model: Model, test: pa.Table) -> dict[str, Any]:
    """Perturbation, invariance and directional expectation tests on a sample of test rows."""
    from loopml import evaluation

    b = spec.behaviour
    sample = test.slice(0, min(test.num_rows, b.sample))
    if spec.task in ("multiclass", "ranking") or sample.num_rows == 0:
        return {}

    def predict(t: pa.Table) -> np.ndarray:
        return model.predict(t)

    out: dict[str, Any] = {}
    numeric = [
        f
        for f in model.encoding.features
        if f not in model.encoding.categorical
        and (pa.types.is_floating(sample[f].type) or pa.types.is_integer(sample[f].type))
    ]
    if b.perturbation:
        out["perturbation"] = evaluation.perturbation_test(
            predict, sample, columns=numeric, scale=b.perturbation
        )
    out["invariance"] = {
        c: evaluation.invariance_test(predict, sample, c)
        for c in b.invariant
        if c in sample.column_names
    }
    out["directional"] = {
        c: evaluation.directional_test(predict, sample, c, direction=d)
        for c, d in b.monotone.items()
        if c in sample.column_names
    }
    return out
