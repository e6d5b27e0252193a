"""The gate: a challenger against the champion on the same held-out test set and on a backtest
over the most recent labelled data, with bounds from ``loopml.yaml``; a smoke test loads the
registered artifact and predicts (``loopml.training._verified.smoke``, the rule a serving
worker applies too). The verdict and its numbers are recorded on the version, and only a passing
verdict against the current champion lets ``promote`` move the alias.

Every check the gate is asked for is in the verdict with the rows it was judged on, or skipped
with the reason: a check missing from a verdict would read as a check passed. The models are
judged only on rows they did not learn from: the challenger's held-out model on its test rows
(those of them after the champion's own training rows, when there is a champion) and on the
backtest (labelled rows after both models' training rows). A refitted version is judged by its
held-out model, the one its metrics come from; its artifact, refitted on every row, is what the
smoke test loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import LoopmlError, UsageError
from loopml.spec import GateSpec, MetricBound, ModelSpec, format_duration
from loopml.training._model import Model
from loopml.training._report import _clean, evaluate_scores, higher_is_better, primary_metric
from loopml.training._train import labels
from loopml.training._verified import smoke
from loopml.training._verified import test_table as test_table  # rollout reads it from here

TIME = "_event_time"


@dataclass
class Check:
    """One check of the gate: passed, failed, or skipped (not judged; the detail says why)."""

    name: str
    passed: bool
    detail: str
    rows: int | None = None
    skipped: bool = False

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else "passed" if self.passed else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "passed": self.passed,
            "rows": self.rows,
            "detail": self.detail,
        }


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

    def skipped(self) -> list[Check]:
        return [c for c in self.checks if c.skipped]

    def summary(self) -> str:
        """``PASSED (4 checks passed, 2 skipped)``: the verdict and how it was reached."""
        counts = {s: sum(c.status == s for c in self.checks) for s in ("passed", "failed")}
        parts = [f"{counts['passed']} passed"]
        if self.skipped():
            parts.append(f"{len(self.skipped())} skipped")
        if counts["failed"]:
            parts.append(f"{counts['failed']} failed")
        word = "PASSED" if self.passed else "REFUSED"
        return f"{word} ({len(self.checks)} checks: {', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        return _clean(
            {
                "model": self.model,
                "version": self.version,
                "against": self.against,
                "passed": self.passed,
                "summary": self.summary(),
                "checks": [c.to_dict() for c in self.checks],
                "numbers": self.numbers,
                "evaluation_id": self.evaluation_id,
            }
        )


@dataclass
class Judged:
    """A model the gate judges, and the newest row it learned from (None: unknown)."""

    model: Model
    learned_until: datetime | None


@dataclass
class EvalSet:
    """Rows the models are judged on, and why these (an empty table: why there are none)."""

    name: str
    table: pa.Table
    why: str

    def describe(self) -> dict[str, Any]:
        t = self.table
        times = t[TIME] if TIME in t.column_names and t.num_rows else None
        return {
            "rows": t.num_rows,
            "start": _iso(pc.min(times).as_py()) if times is not None else None,
            "end": _iso(pc.max(times).as_py()) if times is not None else None,
            "why": self.why,
        }


def default_bounds(task: str) -> dict[str, MetricBound]:
    """With no bounds declared: the primary metric may not fall more than 0.005 behind."""
    metric = primary_metric(task)
    if higher_is_better(metric):
        return {metric: MetricBound(min_change=-0.005)}
    return {metric: MetricBound(max_change_rel=0.01)}


def run_gate(
    spec: ModelSpec,
    gate: GateSpec,
    *,
    name: str,
    version: int,
    load_challenger: Callable[[], tuple[Model, Judged, pa.Table]],
    champion: tuple[int, Callable[[], Judged]] | None,
    recent: Callable[[], pa.Table | None],
    as_of: datetime | None = None,
) -> Verdict:
    """Judge a challenger. ``load_challenger`` gives the registered artifact (smoke-tested),
    the model judged and its test rows; ``recent`` the labelled rows the backtest is chosen
    from (None: no backtest), ending at ``as_of`` (default: the latest labelled row)."""
    verdict = Verdict(name, version, champion[0] if champion else None)
    try:
        served, judged, test = load_challenger()
        n = smoke(served, test, gate.smoke_rows)
        verdict.checks.append(
            Check("smoke", True, f"loaded from the registry and predicted {n:,} rows", rows=n)
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

    challenger = judged.model
    label = challenger.meta.get("label") or spec.label or ""
    champ: Judged | None = None
    if champion is not None:
        champ = champion[1]()
        missing = [f for f in champ.model.encoding.features if f not in test.column_names]
        if missing:
            raise UsageError(
                f"the champion reads features the challenger's test set lacks ({', '.join(missing)}); "
                "evaluate them on a common training set"
            )
    sets = [_test_set(test, champ)]
    if gate.backtest is None:
        verdict.checks.append(
            Check(
                "backtest",
                True,
                "no backtest asked for (gate.backtest: null, or --backtest off)",
                skipped=True,
            )
        )
    else:
        after, who = _learned_until(judged, champ)
        sets.append(choose_backtest(recent(), label, gate, as_of=as_of, after=after, who=who))
    bounds = gate.metrics or default_bounds(spec.task)
    for es in sets:
        table = es.table
        info = es.describe()
        verdict.numbers[es.name] = info
        if table.num_rows == 0:
            for metric in bounds:
                _not_computable(verdict, f"{es.name}:{metric}", es.why, 0, gate)
            if es.name == "test":
                _skip_slices(verdict, gate, f"no test rows to compare slices on: {es.why}")
            continue
        y, _ = labels(
            spec.task, table[label], challenger.classes if spec.task == "multiclass" else None
        )
        ours = evaluate_scores(spec, challenger, table, y, challenger.predict(table))
        theirs = (
            evaluate_scores(spec, champ.model, table, y, champ.model.predict(table))
            if champ is not None
            else None
        )
        info.update(challenger=ours, champion=theirs)
        for metric, bound in bounds.items():
            _bound_checks(verdict, es.name, metric, bound, ours, theirs, y, spec.task, gate)
        if es.name == "test":
            if champ is None:
                _skip_slices(verdict, gate, "no champion to compare slices with")
            else:
                _slice_check(verdict, spec, gate, challenger, champ.model, table, y)
    metric_checks = [c for c in verdict.checks if ":" in c.name]
    if verdict.passed and metric_checks and all(c.skipped for c in metric_checks):
        verdict.checks.append(
            Check(
                "metrics",
                False,
                "no metric could be computed on any set: nothing shows this version is good "
                "enough; promote it with --force and a reason if you know otherwise",
            )
        )
    return verdict


def _learned_until(judged: Judged, champ: Judged | None) -> tuple[datetime | None, str]:
    """The newest row either model learned from, and which one it was."""
    ours = judged.learned_until
    theirs = champ.learned_until if champ is not None else None
    if theirs is not None and (ours is None or theirs > ours):
        return theirs, "the champion"
    if ours is not None and theirs is not None and ours == theirs:
        return ours, "both models"
    return ours, "the challenger"


def _test_set(test: pa.Table, champ: Judged | None) -> EvalSet:
    n = test.num_rows
    until = champ.learned_until if champ is not None else None
    if until is None or TIME not in test.column_names:
        return EvalSet("test", test, f"the challenger's {n:,} held-out rows")
    kept = test.filter(_after(test, until))
    if kept.num_rows == n:
        return EvalSet("test", test, f"the challenger's {n:,} held-out rows")
    return EvalSet(
        "test",
        kept,
        f"{kept.num_rows:,} of the challenger's {n:,} held-out rows: the champion learned from "
        f"the {n - kept.num_rows:,} up to {_when(until)}",
    )


def choose_backtest(
    table: pa.Table | None,
    label: str,
    gate: GateSpec,
    *,
    as_of: datetime | None,
    after: datetime | None,
    who: str = "the challenger",
) -> EvalSet:
    """The backtest's rows: labelled, after ``after`` (rows a model learned from are left out),
    up to ``as_of``; the latest ``gate.backtest_min_rows`` of them (``auto``) or those of the
    declared period. The reason is in the set's ``why``, also when it holds no row."""
    empty = pa.table({TIME: pa.array([], pa.timestamp("us", tz="UTC"))})
    if table is None or label not in table.column_names or TIME not in table.column_names:
        return EvalSet("backtest", empty, "no labelled rows to backtest on")
    table = table.filter(pc.is_valid(table[label]))
    if as_of is not None:
        table = table.filter(pc.less_equal(table[TIME], _scalar(as_of, table[TIME].type)))
    if table.num_rows == 0:
        when = f" up to {_when(as_of)}" if as_of is not None else ""
        return EvalSet("backtest", table, f"no labelled rows{when}")
    latest = pc.max(table[TIME]).as_py()
    unseen = ""
    if after is not None:
        table = table.filter(_after(table, after))
        unseen = f" after {_when(after)} ({who} learned from the rows before)"
    if gate.backtest == "auto":
        wanted = gate.backtest_min_rows
        if table.num_rows == 0:
            return EvalSet(
                "backtest",
                table,
                f"auto: no labelled rows{unseen}; the latest labelled row is {_when(latest)}",
            )
        times = np.sort(table[TIME].cast(pa.int64()).to_numpy(zero_copy_only=False))
        first = times[max(0, len(times) - wanted)]
        rows = table.filter(pc.greater_equal(table[TIME].cast(pa.int64()), pa.scalar(first)))
        fewer = (
            f" (only {rows.num_rows:,} exist; {wanted:,} wanted)" if rows.num_rows < wanted else ""
        )
        return EvalSet(
            "backtest",
            rows,
            f"auto: the latest {rows.num_rows:,} labelled rows{unseen}{fewer}, over {_span(rows)}",
        )
    period_length = gate.backtest
    assert period_length is not None and not isinstance(period_length, str)
    end = as_of if as_of is not None else latest
    start = end - period_length
    rows = table.filter(pc.greater_equal(table[TIME], _scalar(start, table[TIME].type)))
    period = f"gate.backtest {format_duration(period_length)}"
    if rows.num_rows == 0:
        return EvalSet(
            "backtest",
            rows,
            f"{period}: no labelled rows{unseen} from {_when(start)} to {_when(end)}; the latest "
            f"labelled row is {_when(latest)} (a longer period, or auto, finds some)",
        )
    return EvalSet(
        "backtest",
        rows,
        f"{period}: the {rows.num_rows:,} labelled rows{unseen} from {_when(start)} to {_when(end)}",
    )


def _not_computable(verdict: Verdict, name: str, reason: str, rows: int, gate: GateSpec) -> None:
    """A check that cannot be judged, as the policy says: skipped, or refused."""
    if gate.not_computable == "refuse":
        verdict.checks.append(
            Check(name, False, f"not computable: {reason} (gate.not_computable: refuse)", rows)
        )
    else:
        verdict.checks.append(
            Check(name, True, f"not computable: {reason}; skipped", rows, skipped=True)
        )


def _why_not(task: str, y: np.ndarray, metric: str) -> str:
    n = len(y)
    if task in ("binary", "multiclass") and len(np.unique(y[np.isfinite(y)])) < 2:
        return f"one class in {n:,} rows"
    return f"{metric} is undefined on these {n:,} rows"


def _bound_checks(
    verdict: Verdict,
    where: str,
    metric: str,
    bound: MetricBound,
    ours: dict[str, Any],
    theirs: dict[str, Any] | None,
    y: np.ndarray,
    task: str,
    gate: GateSpec,
) -> None:
    name, n = f"{where}:{metric}", len(y)
    value = ours.get(metric)
    old = theirs.get(metric) if theirs is not None else None
    for v in (value, old) if theirs is not None else (value,):
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            _not_computable(verdict, name, _why_not(task, y, metric), n, gate)
            return
    assert value is not None
    problems = []
    if bound.min is not None and value < bound.min:
        problems.append(f"{metric} {value:.4f} < minimum {bound.min}")
    if bound.max is not None and value > bound.max:
        problems.append(f"{metric} {value:.4f} > maximum {bound.max}")
    detail = f"{metric} {value:.4f}"
    if old is not None:
        old = float(old)
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
    verdict.checks.append(Check(name, not problems, "; ".join([detail, *problems]), n))


def _skip_slices(verdict: Verdict, gate: GateSpec, reason: str) -> None:
    if gate.max_slice_regression is not None:
        verdict.checks.append(Check("slices", True, reason, skipped=True))


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

    limit = gate.max_slice_regression
    if limit is None:
        return
    metric = primary_metric(spec.task)
    columns = [
        c for c in (spec.slices or list(challenger.encoding.categorical)) if c in table.column_names
    ]
    if spec.task == "ranking":
        _skip_slices(verdict, gate, "slices are not compared for ranking")
        return
    if not columns:
        _skip_slices(
            verdict, gate, "no column to slice by (model.slices, or a categorical feature)"
        )
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
    compared = 0
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
        compared += 1
        regression = (old - mine) if higher_is_better(metric) else (mine - old)
        if worst is None or regression > worst[0]:
            worst = (
                regression,
                f"{s['column']}={s['slice']} ({s['rows']:,} rows): {metric} {mine:.4f} vs {old:.4f}",
            )
    if worst is None:
        _skip_slices(
            verdict,
            gate,
            f"no slice of {', '.join(columns)} has {gate.slice_min_rows:,} rows "
            f"(gate.slice_min_rows) and a computable {metric} among the {table.num_rows:,} test rows",
        )
        return
    verdict.checks.append(
        Check(
            "slices",
            worst[0] <= limit,
            f"largest regression among {compared} slice{'s' if compared != 1 else ''} "
            f"{worst[0]:+.4f} (limit {limit}) at {worst[1]}",
            table.num_rows,
        )
    )


def _scalar(moment: datetime, type_: pa.DataType) -> pa.Scalar:
    if isinstance(type_, pa.TimestampType) and type_.tz is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return pa.scalar(moment, type_)


def _after(table: pa.Table, moment: datetime) -> pa.ChunkedArray:
    return pc.greater(table[TIME], _scalar(moment, table[TIME].type))


def _span(table: pa.Table) -> str:
    first, last = pc.min(table[TIME]).as_py(), pc.max(table[TIME]).as_py()
    days = (last - first).total_seconds() / 86400
    return f"{days:,.0f} days" if days >= 2 else f"{days * 24:,.1f} hours"


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M")


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if isinstance(moment, datetime) else None
