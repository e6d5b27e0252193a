"""Traffic answered in batches under the model's rollout: each request routed by the rule a serving
worker routes by (:func:`loopml.rollout.assign`), each arm's rows predicted by the batch path (equal
to the row path), every answer logged like a served one, and the arms' requests added to the shared
counters. Replays (the demo, the tests, a backfill) use it; so does anything that
predicts in bulk while a canary runs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import pyarrow as pa

from loopml.rollout._router import ArmShares, Assignment, arm_shares, assign
from loopml.rollout._services import check_parts
from loopml.storage import Counter, new_id
from loopml.training import Model

if TYPE_CHECKING:
    from loopml.rollout._services import BatchParts, ScoreLog
    from loopml.rollout._store import Rollouts
    from loopml.training import Models


class BatchServer:
    """Answers tables of requests for a model (``models``), under its active rollout
    (``rollouts``), logging every answer (``monitoring``); or for the parts one object holds
    (``BatchServer(project)``)."""

    @overload
    def __init__(
        self, parts: BatchParts, /, *, at: str = "_event_time", seed: int | None = None
    ) -> None: ...

    @overload
    def __init__(
        self,
        /,
        *,
        rollouts: Rollouts,
        models: Models,
        monitoring: ScoreLog,
        at: str = "_event_time",
        seed: int | None = None,
    ) -> None: ...

    def __init__(
        self,
        parts: BatchParts | None = None,
        /,
        *,
        rollouts: Rollouts | None = None,
        models: Models | None = None,
        monitoring: ScoreLog | None = None,
        at: str = "_event_time",
        seed: int | None = None,
    ) -> None:
        given = {"rollouts": rollouts, "models": models, "monitoring": monitoring}
        check_parts("BatchServer", parts, given)
        if parts is not None:
            rollouts, models, monitoring = parts.rollouts, parts.models, parts.monitoring
        # check_parts refused a missing part; this tells the type checker so
        assert rollouts is not None and models is not None and monitoring is not None
        self.rollouts = rollouts
        self.models = models
        self.monitoring = monitoring
        self.at = at
        self._loaded: dict[int, Model] = {}
        # Prediction ids unique to this server: the monitored log keeps the first of an id.
        self._run = new_id("b")[:12]
        self._sequence = 0
        self._rng = np.random.default_rng(seed)

    def model(self, version: int) -> Model:
        found = self._loaded.get(version)
        if found is None:
            found = self._loaded[version] = self.models.load(self.models.get(version))
        return found

    def serve(self, table: pa.Table, *, id_prefix: str | None = None) -> dict[str, Any]:
        """Predict and log every row; returns how many rows each version answered (and how
        many the challenger shadowed)."""
        if table.num_rows == 0:
            return {"rows": 0, "answered": {}, "shadowed": 0}
        champion = self.models.get("champion").version
        rollout = self.rollouts.active(self.models.name)
        self._sequence += 1
        # Given a prefix, the caller keeps it unique (a replay: by its start and period, so
        # that a replay is reproducible); without one, this server's own run and sequence.
        prefix = id_prefix or f"req-{self._run}-{self._sequence}"
        ids = [f"{prefix}-{i}" for i in range(table.num_rows)]
        # An experiment's probabilities are read once per batch, as a worker reads them once
        # per refresh; each row is assigned by the rule serving uses (rollout.assign).
        shares = (
            arm_shares(self.rollouts, rollout, self._rng)
            if rollout is not None and rollout.strategy in ("ab", "bandit")
            else None
        )
        unit = rollout.unit if rollout is not None else None
        units = table[unit].to_pylist() if unit and unit in table.column_names else None
        a = assign(rollout, ids, champion=champion, units=units, shares=shares, rng=self._rng)
        if shares is not None and a.propensity is not None:
            return self._serve_arms(table, a, shares, ids, unit if units is not None else None)
        answered: dict[int, int] = {}
        counts: dict[tuple[int, str], Counter] = {}
        for version in a.versions():
            rows = a.rows(version)
            self._answer(table, rows, version, [ids[i] for i in rows])
            answered[version] = len(rows)
            n = float(len(rows))
            counts[(version, "requests")] = Counter(n, n, n)
            counts[(version, "errors")] = Counter(0.0, 0.0, 0.0)
            # No latency counter: a batch's time per row says nothing of a served request's.
        n_shadow = int(a.shadow.sum())
        if rollout is not None and a.rollout is not None:
            # The other model scores the same requests in the background: the challenger those
            # the champion answered (shadow), the champion those the challenger answered (a
            # canary), so that every step compares the two on the same requests.
            for version, rows in (
                (rollout.challenger, np.flatnonzero(a.shadow)),
                (champion, np.flatnonzero(a.version != champion)),
            ):
                if len(rows) == 0:
                    continue
                self._answer(
                    table,
                    rows,
                    version,
                    [ids[i] + ":shadow" for i in rows],
                    mode="shadow",
                    of=[ids[i] for i in rows],
                )
                counts[(version, "shadowed")] = Counter(float(len(rows)), 0.0, 0.0)
            self.rollouts.add_counts(a.rollout, counts)
        return {
            "rows": table.num_rows,
            "answered": answered,
            "shadowed": n_shadow,
            "rollout": a.rollout,
        }

    def _serve_arms(
        self, table: pa.Table, a: Assignment, shares: ArmShares, ids: list[str], unit: str | None
    ) -> dict[str, Any]:
        """An A/B test's or a bandit's batch: each arm's rows predicted and logged with the
        arm's propensity, and the unit with the features (the test averages per unit)."""
        assert a.rollout is not None and a.propensity is not None  # an experiment's assignment
        answered: dict[int, int] = {}
        counts: dict[tuple[int, str], Counter] = {}
        for version in a.versions():
            rows = a.rows(version)
            self._answer(
                table,
                rows,
                version,
                [ids[j] for j in rows],
                extra=[unit] if unit else [],
                rollout=a.rollout,
                propensity=a.propensity[rows].tolist(),
            )
            answered[version] = len(rows)
            n = float(len(rows))
            counts[(version, "requests")] = Counter(n, n, n)
        self.rollouts.add_counts(a.rollout, counts)
        return {
            "rows": table.num_rows,
            "answered": answered,
            "shadowed": 0,
            "rollout": a.rollout,
            "probabilities": dict(zip(shares.versions, shares.probabilities, strict=True)),
        }

    def _answer(
        self,
        table: pa.Table,
        rows: np.ndarray,
        version: int,
        ids: list[str],
        *,
        extra: list[str] | None = None,
        **log: Any,
    ) -> None:
        """Predict ``rows`` of ``table`` with ``version`` and log them under ``ids`` (``log``:
        the prediction log's mode, ``of``, rollout and propensity)."""
        part = table.take(pa.array(rows))
        model = self.model(version)
        started = time.perf_counter()
        scores = model.predict(part)
        self.monitoring.log_scored(
            part,
            scores,
            version=version,
            ids=ids,
            at=self.at,
            latency_us=(time.perf_counter() - started) * 1e6 / len(rows),
            features=[*model.encoding.features, *(extra or [])],
            **log,
        )
