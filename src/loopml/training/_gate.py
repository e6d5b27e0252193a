"""The gate: a challenger against the champion on the same held-out test set and on a backtest
over the most recent labelled data, with bounds from ``loopml.yaml``; a smoke test loads the
registered artifact and predicts. The verdict and its numbers are recorded on the version, and
only a passing verdict against the current champion lets ``promote`` move the alias."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loopml.errors import LoopmlError, UsageError
from loopml.spec import GateSpec, MetricBound, ModelSpec
from loopml.training._model import Model
from loopml.training._report import _clean, evaluate_scores, higher_is_better, primary_metric
from loopml.training._train import labels


@dataclass
class Check:
    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass
class Verdict:
    """The outcome of the gate for one challenger against one champion (or none)."""

    model: str
    version: int
    against: int | None
    checks: list[Check] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    evaluation_id: int | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return _clean(
            {
                "model": self.model,
                "version": self.version,
                "against": self.against,
                "passed": self.passed,
                "checks": [c.to_dict() for c in self.checks],
                "numbers": self.numbers,
                "evaluation_id": self.evaluation_id,
            }
        )


def default_bounds(task: str) -> dict[str, MetricBound]:
    """With no bounds declared: the primary metric may not fall more than 0.005 behind."""
    metric = primary_metric(task)
    if higher_is_better(metric):
        return {metric: MetricBound(min_change=-0.005)}
    return {metric: MetricBound(max_change_rel=0.01)}


def smoke(model: Model, test: pa.Table, rows: int) -> int:
    """Predict the first ``rows`` test rows; :class:`UsageError` when a prediction is not
    finite. Returns how many rows were predicted."""
    sample = test.slice(0, min(rows, test.num_rows))
    if not np.all(np.isfinite(np.asarray(model.predict(sample), dtype=float))):
        raise UsageError("the model predicted NaN or infinity on the smoke rows")
    return sample.num_rows


def test_table(files: dict[str, bytes]) -> pa.Table:
    if "test.parquet" not in files:
        raise UsageError(
            "this version was registered without its test set; it cannot go through the gate"
        )
    return pq.read_table(io.BytesIO(files["test.parquet"]))


def run_gate(
    spec: ModelSpec,
    gate: GateSpec,
    *,
    name: str,
    version: int,
    load_challenger: Callable[[], tuple[Model, pa.Table]],
    champion: tuple[int, Callable[[], Model]] | None,
    recent: Callable[[], pa.Table | None],
) -> Verdict:
    """Judge a challenger. ``recent`` builds the backtest rows (None: no backtest)."""
    verdict = Verdict(name, version, champion[0] if champion else None)
    try:
        challenger, test = load_challenger()
        n = smoke(challenger, test, gate.smoke_rows)
        verdict.checks.append(
            Check("smoke", True, f"loaded from the registry and predicted {n} rows")
        )
    except LoopmlError as exc:
        verdict.checks.append(
            Check(
                "smoke", False, f"the registered artifact failed to load or predict: {exc.message}"
            )
        )
        return verdict
    except Exception as exc:  # noqa: BLE001
        verdict.checks.append(
            Check("smoke", False, f"the registered artifact failed to predict: {exc!r}")
        )
        return verdict

    label = challenger.meta.get("label") or spec.label
    champ: Model | None = None
    if champion is not None:
        champ = champion[1]()
        missing = [f for f in champ.encoding.features if f not in test.column_names]
        if missing:
            raise UsageError(
                f"the champion reads features the challenger's test set lacks ({', '.join(missing)}); "
                "evaluate them on a common training set"
            )
    sets = {"test": test}
    backtest = recent()
    if backtest is not None and backtest.num_rows:
        sets["backtest"] = backtest
    bounds = gate.metrics or default_bounds(spec.task)
    for set_name, table in sets.items():
        y, _ = labels(
            spec.task, table[label], challenger.classes if spec.task == "multiclass" else None
        )
        ours = evaluate_scores(spec, challenger, table, y, challenger.predict(table))
        theirs = (
            evaluate_scores(spec, champ, table, y, champ.predict(table))
            if champ is not None
            else None
        )
        verdict.numbers[set_name] = {"rows": table.num_rows, "challenger": ours, "champion": theirs}
        for metric, bound in bounds.items():
            _bound_checks(verdict, set_name, metric, bound, ours, theirs)
        if set_name == "test" and champ is not None and gate.max_slice_regression is not None:
            _slice_check(verdict, spec, gate, challenger, champ, table, y)
    return verdict


def _bound_checks(
    verdict: Verdict,
    where: str,
    metric: str,
    bound: MetricBound,
    ours: dict[str, Any],
    theirs: dict[str, Any] | None,
) -> None:
    value = ours.get(metric)
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        verdict.checks.append(
            Check(f"{where}:{metric}", False, f"{metric} could not be computed on the {where} rows")
        )
        return
    problems = []
    if bound.min is not None and value < bound.min:
        problems.append(f"{metric} {value:.4f} < minimum {bound.min}")
    if bound.max is not None and value > bound.max:
        problems.append(f"{metric} {value:.4f} > maximum {bound.max}")
    detail = f"{metric} {value:.4f}"
    if theirs is not None and theirs.get(metric) is not None:
        old = float(theirs[metric])
        change = value - old
        rel = change / abs(old) if old else float("inf") if change else 0.0
        detail += f" vs champion {old:.4f} (change {change:+.4f}, {rel:+.2%})"
        for attr, op, amount in (
            ("min_change", "<", change),
            ("max_change", ">", change),
            ("min_change_rel", "<", rel),
            ("max_change_rel", ">", rel),
        ):
            limit = getattr(bound, attr)
            if limit is not None and (
                (op == "<" and amount < limit) or (op == ">" and amount > limit)
            ):
                problems.append(f"{attr.replace('_', ' ')} {limit:+g} broken ({amount:+.4g})")
    verdict.checks.append(Check(f"{where}:{metric}", not problems, "; ".join([detail, *problems])))


def _slice_check(
    verdict: Verdict,
    spec: ModelSpec,
    gate: GateSpec,
    challenger: Model,
    champ: Model,
    table: pa.Table,
    y: np.ndarray,
) -> None:
    from loopml import evaluation

    metric = primary_metric(spec.task)
    columns = [
        c for c in (spec.slices or list(challenger.encoding.categorical)) if c in table.column_names
    ]
    if not columns or spec.task == "ranking":
        return
    classes = list(range(len(challenger.classes or []))) if spec.task == "multiclass" else None
    kwargs: dict[str, Any] = {
        "columns": columns,
        "metric": metric,
        "min_rows": gate.slice_min_rows,
        "classes": classes,
    }
    ours = evaluation.slice_metrics(
        spec.task, table, y, challenger.predict(table), threshold=challenger.threshold, **kwargs
    )
    theirs = evaluation.slice_metrics(
        spec.task, table, y, champ.predict(table), threshold=champ.threshold, **kwargs
    )
    champ_by = {(s["column"], s["slice"]): s for s in theirs}
    worst: tuple[float, str] | None = None
    for s in ours:
        other = champ_by.get((s["column"], s["slice"]))
        mine, old = s.get(metric), (other or {}).get(metric)
        if (
            other is None
            or mine is None
            or old is None
            or not np.isfinite(mine)
            or not np.isfinite(old)
        ):
            continue
        regression = (old - mine) if higher_is_better(metric) else (mine - old)
        if worst is None or regression > worst[0]:
            worst = (
                regression,
                f"{s['column']}={s['slice']} ({s['rows']} rows): {metric} {mine:.4f} vs {old:.4f}",
            )
    limit = gate.max_slice_regression
    assert limit is not None
    if worst is None:
        verdict.checks.append(Check("slices", True, "no slice with enough rows to compare"))
    else:
        verdict.checks.append(
            Check(
                "slices",
                worst[0] <= limit,
                f"largest slice regression {worst[0]:+.4f} (limit {limit}) at {worst[1]}",
            )
        )


def recent_rows(table: pa.Table, label: str, period: Any, as_of: datetime | None) -> pa.Table:
    """The labelled rows of the most recent ``period`` before ``as_of`` (or the data's end)."""
    table = table.filter(pc.is_valid(table[label]))
    if table.num_rows == 0:
        return table
    end = pc.max(table["_event_time"]).as_py() if as_of is None else as_of
    start = pa.scalar(end - period, table["_event_time"].type)
    return table.filter(pc.greater_equal(table["_event_time"], start))
