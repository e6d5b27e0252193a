"""Experiments in production: A/B tests, bandits and interleaving over model versions.

An experiment is a rollout (strategy ``ab``, ``bandit`` or ``interleave``) whose arms are model
versions, the first one the control. Serving workers route requests to the arms (``ab``: a
stable hash of the unit into the declared shares; ``bandit``: a draw from the policy's
probabilities, logged with its propensity; ``interleave``: ``POST /rank`` merges two rankers'
lists by team draft) and log every answer with the experiment's id. The outcome of each arm is
read from the feedback log: the landed predictions joined with their labels, so that the metric
is the one users live with, never the model's own opinion.

- ``ab``: the per-unit metric of each arm against the control with always-valid (sequential)
  inference; the minimum sample size is computed when the test starts.
- ``bandit``: each arm's rewards are recomputed from the log and stored as one snapshot (a
  compare-and-set on the number of labels it counts) that every worker reads to choose arms.
- ``interleave``: each ranking shown is credited to the ranker whose items got more clicks; a
  sign test says which ranker users prefer.

Each strategy's statistics live beside its algorithm (``evaluate_ab`` in ``_sequential``,
``evaluate_bandit`` in ``_bandit``, ``evaluate_interleave`` in ``_interleave``, all free of
storage); :meth:`Experiments.evaluate` reads the log, dispatches through :data:`LOOKS` by
strategy and keeps what must survive between looks.

Ending an experiment promotes the winner through the registry (an evaluation recording the
experiment's numbers, then the gated alias move) or stops it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import ConflictError, UsageError
from loopml.features import to_micros
from loopml.rollout._decide import per_row_loss
from loopml.rollout._records import ExperimentConfig
from loopml.rollout._services import check_parts
from loopml.rollout._store import EXPERIMENTS, REWARDS, Rollout
from loopml.storage import Counter

if TYPE_CHECKING:
    from loopml.registry import Registry
    from loopml.rollout._services import ExperimentParts, OutcomeLog
    from loopml.rollout._store import Rollouts
    from loopml.training import Models

# metric -> (kind of the per-prediction value, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "accuracy": ("proportion", True),
    "error": ("proportion", False),
    "label": ("proportion", True),  # the outcome itself (a click, a conversion)
    "log_loss": ("mean", False),
    "brier": ("mean", False),
    "squared_error": ("mean", False),
    "absolute_error": ("mean", False),
}


def metric_values(
    metric: str, scores: np.ndarray, y: np.ndarray, *, task: str, threshold: float | None
) -> np.ndarray:
    """The metric of each prediction (``accuracy``: 1 when the decision was right)."""
    if metric not in METRICS:
        raise UsageError(
            f"unknown experiment metric {metric!r}: one of {', '.join(METRICS)}",
            details={"metric": metric},
        )
    if metric == "label":
        return np.asarray(y, dtype=float)
    if metric in ("accuracy", "error"):
        if task == "binary":
            wrong = per_row_loss("error", scores, y, threshold=threshold)
        elif task == "multiclass":  # scores: the predicted class names
            wrong = (np.asarray(scores, dtype=object) != np.asarray(y, dtype=object)).astype(float)
        else:
            wrong = (np.asarray(scores, dtype=float) != np.asarray(y, dtype=float)).astype(float)
        return 1.0 - wrong if metric == "accuracy" else wrong
    return per_row_loss(metric, scores, y, threshold=threshold)


class Experiments:
    """Start, read and end a project's experiments: from its rollouts, its model's versions
    (``models``, ``registry``) and the monitored log (``monitoring``), or from one object
    holding them (``Experiments(project)``)."""

    @overload
    def __init__(self, parts: ExperimentParts, /) -> None: ...

    @overload
    def __init__(
        self, /, *, rollouts: Rollouts, models: Models, registry: Registry, monitoring: OutcomeLog
    ) -> None: ...

    def __init__(
        self,
        parts: ExperimentParts | None = None,
        /,
        *,
        rollouts: Rollouts | None = None,
        models: Models | None = None,
        registry: Registry | None = None,
        monitoring: OutcomeLog | None = None,
    ) -> None:
        given = {
            "rollouts": rollouts,
            "models": models,
            "registry": registry,
            "monitoring": monitoring,
        }
        check_parts("Experiments", parts, given)
        if parts is not None:
            rollouts, models = parts.rollouts, parts.models
            registry, monitoring = parts.registry, parts.monitoring
        # check_parts refused a missing part; this tells the type checker so
        assert rollouts is not None and models is not None
        assert registry is not None and monitoring is not None
        self.rollouts = rollouts
        self.models = models
        self.registry = registry
        self.monitoring = monitoring
        self.name = models.name

    # ------------------------------------------------------------------------------- start

    def start(
        self,
        strategy: str,
        arms: Sequence[int],
        *,
        shares: Sequence[float] | None = None,
        unit: str | None = None,
        metric: str | None = None,
        effect: float | None = None,
        alpha: float = 0.05,
        power: float = 0.8,
        policy: str = "thompson",
        options: Mapping[str, Any] | None = None,
        k: int = 10,
        at: datetime | None = None,
        by: str | None = None,
    ) -> Rollout:
        """Start an experiment over ``arms`` (versions; the first is the control)."""
        from loopml.rollout._bandit import make_policy
        from loopml.rollout._sequential import sample_size

        if strategy not in EXPERIMENTS:
            raise UsageError(
                f"unknown experiment {strategy!r}: one of {', '.join(EXPERIMENTS)}",
                details={"strategy": strategy},
            )
        arms = [int(a) for a in arms]
        if len(arms) < 2 or len(set(arms)) != len(arms):
            raise UsageError(
                f"an experiment needs two or more different versions, got {arms}",
                details={"arms": arms},
            )
        if strategy == "interleave" and len(arms) != 2:
            raise UsageError(
                f"interleaving compares exactly two rankers, got {len(arms)} versions",
                details={"arms": arms},
            )
        models = self.models
        control = models.get(arms[0])
        for version in arms:
            problem = models.smoke(version)  # every file checked, its own test rows predicted
            if problem is not None:
                raise UsageError(
                    f"version {version} cannot serve, so it cannot be an arm: {problem}",
                    details={"version": version},
                )
        profile = self.monitoring.profile(control)
        task = profile.task or "binary"
        metric = metric or ("squared_error" if task == "regression" else "accuracy")
        if metric not in METRICS:
            raise UsageError(
                f"unknown experiment metric {metric!r}: one of {', '.join(METRICS)}",
                details={"metric": metric},
            )
        if task == "multiclass" and metric not in ("accuracy", "error"):
            raise UsageError(
                f"a multiclass model's experiment reads accuracy or error, not {metric!r}",
                details={"metric": metric, "task": task},
            )
        kind, higher = METRICS[metric]
        if task == "regression" and metric in ("accuracy", "error", "label"):
            kind = "mean"
        config: dict[str, Any] = {
            "metric": metric,
            "kind": kind,
            "higher_is_better": higher,
            "alpha": alpha,
            "task": task,
        }
        share_list: list[float] = []
        if strategy == "ab":
            share_list = _shares(shares, len(arms))
            if effect is None:
                effect = 0.02 if kind == "proportion" else None
            if effect is None or effect <= 0:
                raise UsageError(
                    f"an A/B test of {metric} needs the smallest difference worth detecting "
                    "(--effect, in the metric's units)",
                    details={"field": "effect"},
                )
            baseline, sd = self._baseline(control, metric, task, profile)
            size = sample_size(
                effect=effect,
                kind=kind,
                # near 1 (or 0) the same difference is sized as a step down to the baseline
                baseline=_sizing_base(baseline, effect) if kind == "proportion" else None,
                sd=sd if kind == "mean" else None,
                alpha=alpha,
                power=power,
                arms=len(arms),
            )
            config.update(
                effect=effect,
                power=power,
                baseline=baseline,
                sd=sd,
                sample_size=size.to_dict(),
                warnings=[],
            )
            if unit is not None:
                seen = self.unit_values(unit)
                config["unit_values"] = seen
                config["warnings"] = _unit_warnings(seen, size.to_dict())
        elif strategy == "bandit":
            opts = dict(options or {})
            if policy == "thompson" and "reward" not in opts:
                # Beta-Bernoulli for 0/1 rewards, Gaussian for a continuous metric
                opts["reward"] = "binary" if kind == "proportion" else "gaussian"
            made = make_policy(policy, **opts)
            config.update(policy=made.name, options=opts)
        else:
            if k < 1:
                raise UsageError(f"k must be at least 1, got {k}", details={"field": "k"})
            config.update(k=k, metric="label", kind="proportion", higher_is_better=True)
        champion = self.registry.aliases(self.name).get("champion")
        experiment = ExperimentConfig(
            arms=arms, shares=share_list, **config, champion_at_start=champion, by=by
        )
        return self.rollouts.start(
            self.name,
            strategy=strategy,
            champion=arms[0],
            challenger=arms[1],
            unit=unit,
            at=at,
            experiment=experiment,
        )

    def unit_values(self, unit: str) -> dict[str, Any]:
        """How many distinct values of the request field ``unit`` the prediction log holds,
        among how many logged answers (``distinct`` None: the field was never logged)."""
        from loopml.monitoring import FEATURE_PREFIX

        mon = self.monitoring
        mon.land()
        preds = mon.log.predictions()
        logged = preds.num_rows if preds is not None else 0
        column = FEATURE_PREFIX + unit
        if preds is None or column not in preds.column_names:
            return {"unit": unit, "distinct": None, "logged": logged}
        return {
            "unit": unit,
            "distinct": len(pc.unique(preds[column].drop_null())),
            "logged": logged,
        }

    def _baseline(
        self, control: Any, metric: str, task: str, profile: Any
    ) -> tuple[float | None, float | None]:
        """The control's metric on its own held-out rows: the baseline proportion, or the
        standard deviation of the per-prediction metric."""
        verified = self.models.verified(control)
        if "test.parquet" not in verified.files:
            return None, None
        # A refitted version learned its test rows: its held-out model tells how it does on
        # rows it has not seen, which is what the arms will meet.
        model = verified.holdout() or verified.model()
        test = verified.test()
        label = model.label or self.monitoring.label_name()
        if not label or label not in test.column_names:
            return None, None
        scores = model.predict(test)
        if task == "binary":
            from loopml.monitoring import binary_truth

            y = pc.fill_null(binary_truth(test[label], profile.classes), False).to_numpy(
                zero_copy_only=False
            )
        elif task == "multiclass":
            y = np.asarray([None if v is None else str(v) for v in test[label].to_pylist()])
            scores = _class_names(np.asarray(scores), model.classes or profile.classes)
        else:
            y = pc.cast(test[label], pa.float64()).to_numpy(zero_copy_only=False)
        values = metric_values(metric, scores, y, task=task, threshold=profile.threshold)
        if len(values) == 0:
            return None, None
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None

    # ------------------------------------------------------------------------------- read

    def outcomes(
        self, rollout: Rollout, *, until: datetime | None = None, land: bool = True
    ) -> pa.Table:
        """The experiment's answers (shadows excluded) with their labels known by ``until``."""
        mon = self.monitoring
        if land:
            mon.land()
        preds = mon.log.predictions()
        if preds is None or preds.num_rows == 0 or "rollout" not in preds.column_names:
            return pa.table({"id": pa.array([], pa.string())})
        keep = pc.and_(
            pc.equal(pc.fill_null(preds["rollout"], -1), rollout.id),
            pc.not_equal(pc.fill_null(preds["mode"], ""), "shadow"),
        )
        preds = preds.filter(keep)
        task = rollout.experiment.task if rollout.experiment is not None else "binary"
        kind = "text" if task == "multiclass" else "number"
        joined, _ = mon.log.joined(
            preds, mon.join_keys(), kind, observed_since=to_micros(rollout.started_at)
        )
        hi = to_micros(until) if until is not None else 2**62
        known = pc.and_(
            pc.is_valid(joined["label"]),
            pc.less_equal(pc.fill_null(joined["label_at"], 2**62), hi),
        )
        return joined.append_column("known", pc.fill_null(known, False))

    def evaluate(
        self,
        rollout: Rollout | int,
        *,
        until: datetime | None = None,
        record: bool = True,
        land: bool = True,
    ) -> dict[str, Any]:
        """Where the experiment stands: each arm's outcome and the decision. ``record``
        keeps what must survive between looks (running always-valid p-values, the bandit's
        reward snapshot); ``land=False`` reads the log as last landed (a reader's look, which
        changes nothing)."""
        r = self.rollouts.get(rollout) if isinstance(rollout, int) else rollout
        if not r.is_experiment:
            raise UsageError(
                f"rollout {r.id} is a {r.strategy}, not an experiment",
                details={"rollout": r.id},
            )
        table = self.outcomes(r, until=until, land=land)
        assigned = {
            v: names["requests"].n
            for v, names in self.rollouts.counts(r.id).items()
            if "requests" in names
        }
        result = LOOKS[r.strategy](self, r, table, record)
        result.update(
            rollout=r.id,
            strategy=r.strategy,
            versions=r.arms,
            assigned={str(v): assigned.get(v, 0.0) for v in r.arms},
            logged=int(table.num_rows),
            labelled=int(pc.sum(table["known"]).as_py() or 0) if table.num_rows else 0,
        )
        return result

    def looks(
        self, rollout: Rollout | int, *, points: int = 12, land: bool = False
    ) -> list[dict[str, Any]]:
        """An A/B test's comparison as it narrowed: recomputed, from one read of the log, with
        the first 1/points, 2/points, ... of its labelled outcomes in the order they became
        known (the label's time, then the answer's), each look as :meth:`evaluate` gives it
        (``difference``, ``low``, ``high``, ``p_value`` per arm) with ``at`` (when its last
        outcome became known) and ``labelled``. The always-valid interval holds at every look,
        so the narrowing may be watched; the p-value is the running minimum over these looks.
        Nothing is recorded; ``land=False`` reads the log as last landed."""
        from loopml.rollout._sequential import evaluate_ab

        r = self.rollouts.get(rollout) if isinstance(rollout, int) else rollout
        if r.strategy != "ab":
            raise UsageError(
                f"rollout {r.id} is a {r.strategy}, not an A/B test", details={"rollout": r.id}
            )
        if points < 1:
            raise UsageError(f"points must be at least 1, got {points}", details={"points": points})
        table = self.outcomes(r, land=land)
        if table.num_rows == 0:
            return []
        known = table.filter(table["known"])
        if known.num_rows == 0:
            return []
        label_at = pc.fill_null(known["label_at"], 0).to_numpy(zero_copy_only=False)
        answered = pc.cast(known["at"], pa.int64()).to_numpy(zero_copy_only=False)
        order = np.lexsort((answered, label_at))
        known = known.take(pa.array(order))
        label_at, answered = label_at[order], answered[order]
        n = known.num_rows
        cuts = sorted({max(1, round(n * i / points)) for i in range(1, points + 1)})
        out: list[dict[str, Any]] = []
        running: dict[str, float] = {}
        cfg = _config(r)
        for cut in cuts:
            values, units = self._values(r, known.slice(0, cut))
            look, running = evaluate_ab(r.arms, cfg, values, units, previous=running)
            last = max(int(label_at[cut - 1]), int(answered[cut - 1]))
            look.update(labelled=cut, at=datetime.fromtimestamp(last / 1e6, UTC))
            out.append(look)
        return out

    def _values(
        self, r: Rollout, table: pa.Table
    ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray | None]]:
        """Each arm's per-prediction metric (labelled answers only) and, when the unit was
        logged, each value's unit."""
        cfg = _config(r)
        out: dict[int, np.ndarray] = {v: np.zeros(0) for v in r.arms}
        units: dict[int, np.ndarray | None] = {v: None for v in r.arms}
        if table.num_rows == 0:
            return out, units
        table = table.filter(table["known"])
        task = cfg.task
        from loopml.monitoring import FEATURE_PREFIX

        unit_col = FEATURE_PREFIX + r.unit if r.unit else None
        for v in r.arms:
            part = table.filter(pc.equal(table["version"], v))
            if part.num_rows == 0:
                continue
            # each arm's own decision threshold and class names
            profile = self.monitoring.profile(self.registry.get(self.name, v))
            scores = part["score"].to_numpy(zero_copy_only=False).astype(float)
            ok = np.isfinite(scores)
            predicted: np.ndarray = scores
            if task == "binary":
                from loopml.monitoring import binary_truth

                y = pc.fill_null(binary_truth(part["label"], profile.classes), False)
                yv = y.to_numpy(zero_copy_only=False)
            elif task == "multiclass":
                yv = np.asarray([str(x) for x in part["label"].to_pylist()], dtype=object)
                probs = part["proba"].to_pylist() if "proba" in part.column_names else []
                ok = np.asarray([bool(p) for p in probs], dtype=bool)
                predicted = np.full(part.num_rows, None, dtype=object)
                if ok.any():
                    predicted[ok] = _class_names(
                        np.asarray([p for p in probs if p]), profile.classes
                    )
            else:
                yv = pc.cast(part["label"], pa.float64()).to_numpy(zero_copy_only=False)
            out[v] = metric_values(
                cfg.metric,
                predicted[ok],
                yv[ok],
                task=task,
                threshold=profile.threshold,
            )
            if unit_col and unit_col in part.column_names:
                units[v] = np.asarray(part[unit_col].to_pylist(), dtype=object)[ok]
        return out, units

    # One look per strategy: the strategy's statistics live beside its algorithm (A/B in
    # _sequential, bandits in _bandit, interleaving in _interleave); these read the log and
    # keep what must survive between looks.

    def _look_ab(self, r: Rollout, table: pa.Table, record: bool) -> dict[str, Any]:
        from loopml.rollout._sequential import evaluate_ab

        values, units = self._values(r, table)
        out, p_values = evaluate_ab(r.arms, _config(r), values, units, previous=r.progress.p_values)
        if record:
            self._record(r, result=_brief(out), p_values=p_values)
        return out

    def _look_bandit(self, r: Rollout, table: pa.Table, record: bool) -> dict[str, Any]:
        from loopml.rollout._bandit import evaluate_bandit

        values, _ = self._values(r, table)
        counters = self.rollouts.counters

        def keep(labelled: float, stats: dict[int, Counter]) -> tuple[float, dict[int, Counter]]:
            counters.put_snapshot(r.id, REWARDS, labelled, stats)
            return counters.snapshot(r.id, REWARDS)

        return evaluate_bandit(
            r.arms, _config(r), values, table, seed=r.id, keep=keep if record else None
        )

    def _look_interleave(self, r: Rollout, table: pa.Table, record: bool) -> dict[str, Any]:
        from loopml.rollout._interleave import evaluate_interleave

        return evaluate_interleave(r.arms, _config(r), table)

    def _record(
        self, r: Rollout, *, result: Mapping[str, Any], p_values: Mapping[str, float]
    ) -> None:
        with contextlib.suppress(ConflictError):  # ended meanwhile: nothing more to keep
            self.rollouts.record(r, result=result, p_values=p_values)

    # -------------------------------------------------------------------------------- end

    def end(
        self,
        rollout: Rollout | int,
        *,
        promote: int | str | None = "winner",
        reason: str = "",
        by: str,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """End the experiment: promote ``"winner"`` (the decided one), a chosen version, or
        nothing (``None``: stopped). The promotion goes through the registry's gate with an
        evaluation that records the experiment's numbers."""
        r = self.rollouts.get(rollout) if isinstance(rollout, int) else rollout
        if not r.active:
            raise ConflictError(f"rollout {r.id} has already ended", details={"rollout": r.id})
        at = at or datetime.now(UTC)
        result = self.evaluate(r)
        numbers = _brief(result)
        if promote is None:
            ended = self.rollouts.end(
                r, "stopped", at=at, reason=reason or f"stopped by {by}", decision=numbers
            )
            return {"rollout": ended.to_dict(), "promoted": None, "result": result}
        if promote == "winner":
            version = result.get("winner")
            if version is None:
                raise UsageError(
                    f"experiment {r.id} has no winner yet (decision: {result.get('decision')}); "
                    "keep it running, promote a version by hand, or stop it",
                    details={"rollout": r.id, "decision": result.get("decision")},
                )
        else:
            version = int(promote)
            if version not in r.arms:
                raise UsageError(
                    f"version {version} is not an arm of experiment {r.id} ({r.arms})",
                    details={"version": version},
                )
        models = self.models
        champion = self.registry.aliases(self.name).get("champion")
        why = reason or f"{r.strategy} experiment {r.id}: version {version} won"
        if champion == version:
            ended = self.rollouts.end(
                r, "stopped", at=at, reason=f"{why}; it is the champion already", decision=numbers
            )
            return {"rollout": ended.to_dict(), "promoted": None, "result": result}
        problem = models.smoke(version)
        if problem is not None:
            raise UsageError(
                f"version {version} fails to load, so it is not promoted: {problem}",
                details={"version": version},
            )
        self.registry.record_evaluation(
            self.name,
            version,
            against_version=champion,
            passed=True,
            report={"experiment": r.id, "strategy": r.strategy, "result": numbers},
            by=by,
        )
        move = models.promote(version, "champion", by=by, reason=why)
        ended = self.rollouts.end(r, "promoted", at=at, reason=why, decision=numbers)
        return {
            "rollout": ended.to_dict(),
            "promoted": version,
            "previous": champion,
            "move": move.id if hasattr(move, "id") else None,
            "result": result,
        }


def _unit_warnings(seen: Mapping[str, Any], size: Mapping[str, Any]) -> list[str]:
    """What makes an A/B plan unreachable with its unit: more units needed than the unit's
    values ever seen (each value is one unit, however many requests it makes)."""
    unit, distinct, logged = seen["unit"], seen["distinct"], seen["logged"]
    if distinct is None:
        return [
            f"no logged request has the field {unit} (of {logged:,} answers logged): its values "
            f"cannot be counted; is {unit} sent with every request?"
        ]
    per_arm, arms = int(size["per_arm_sequential"]), int(size["arms"])
    if per_arm * arms <= distinct:
        return []
    return [
        f"the plan needs {per_arm:,} units per arm ({per_arm * arms:,} for {arms} arms; "
        f"{int(size['per_arm_fixed']):,} per arm for a single look), but the prediction log "
        f"holds only {distinct:,} distinct values of {unit} ({logged:,} logged answers): unless "
        f"that many new values come, the test cannot reach its power; choose a finer --unit or "
        f"a larger --effect"
    ]


def _sizing_base(baseline: float | None, effect: float) -> float | None:
    """The lower of the two proportions a difference of ``effect`` around ``baseline`` spans,
    kept inside (0, 1) (the sample size of a difference is the same either way)."""
    if baseline is None:
        return None
    return baseline - effect if baseline + effect >= 1 else baseline


def _class_names(proba: np.ndarray, classes: Sequence[Any]) -> np.ndarray:
    """The most probable class of each row of a probability matrix, by name."""
    names = np.asarray([str(c) for c in classes], dtype=object)
    return names[np.argmax(proba, axis=1)]


def _shares(shares: Sequence[float] | None, n: int) -> list[float]:
    if shares is None or len(shares) == 0:
        return [1.0 / n] * n
    out = [float(s) for s in shares]
    if len(out) != n:
        raise UsageError(
            f"{len(out)} shares for {n} arms: give one share per arm", details={"field": "shares"}
        )
    if any(not (s > 0) for s in out) or abs(sum(out) - 1.0) > 1e-6:
        raise UsageError(
            f"shares must be positive and sum to 1, got {out}", details={"field": "shares"}
        )
    return out


def _brief(result: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers kept on the rollout and in the registry: small and JSON-ready."""
    keep = (
        "decision",
        "winner",
        "reasons",
        "control",
        "control_n",
        "control_mean",
        "arms",
        "arms_detail",
        "metric",
        "effect",
        "alpha",
        "wins_a",
        "wins_b",
        "ties",
        "p_value",
        "delta",
        "sample_size",
    )
    return {k: result[k] for k in keep if k in result}


Look = Callable[[Experiments, Rollout, pa.Table, bool], dict[str, Any]]
LOOKS: dict[str, Look] = {
    "ab": Experiments._look_ab,
    "bandit": Experiments._look_bandit,
    "interleave": Experiments._look_interleave,
}
"""Each experiment strategy's look: the experiments, the rollout, its outcomes, whether to keep
what must survive to the next look."""


def _config(r: Rollout) -> ExperimentConfig:
    """The experiment's configuration; the defaults for a row stored without one."""
    return r.experiment if r.experiment is not None else ExperimentConfig()
