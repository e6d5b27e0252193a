"""Rollouts and their counters in the metadata store, shared by every serving worker and the
controller. Every change is one transaction; step changes and endings are compare-and-set, so a
controller that resumes after a crash cannot apply a step twice, and counters are added with an
atomic ``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`` (no lost updates between
workers)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection, RowMapping

from loopml.errors import ConflictError, NotFoundError, UsageError
from loopml.rollout._records import (
    ExperimentConfig,
    Plan,
    Progress,
    RecordedDecision,
    dump_data,
    parse_data,
)
from loopml.storage import Counter, CounterStore, Counts, SqlMetadataStore
from loopml.storage import tables as t

ACTIVE = "active"
CHALLENGER_ALIAS = "challenger"  # the registry alias a rollout's challenger holds
ENDED = ("promoted", "rolled_back", "stopped")
STRATEGIES = ("shadow", "canary", "ab", "bandit", "interleave")
EXPERIMENTS = ("ab", "bandit", "interleave")  # arms compared on their own traffic, ended by hand
REWARDS = "rewards"  # the counters snapshot of a bandit's rewards per arm


@dataclass(frozen=True)
class Rollout:
    """One challenger's way to traffic: shadow (scored beside the champion, never answering) or
    canary (answering a stepped share of requests)."""

    id: int
    model: str
    strategy: str
    champion: int
    challenger: int
    status: str
    step: int
    share: float
    shadow: float
    unit: str | None
    started_at: datetime
    step_started_at: datetime
    ended_at: datetime | None
    plan: Plan = field(default_factory=Plan)
    experiment: ExperimentConfig | None = None  # an experiment's configuration
    progress: Progress = field(default_factory=Progress)
    extra: dict[str, Any] = field(default_factory=dict)  # stored keys no record names

    @property
    def steps(self) -> list[float]:
        return list(self.plan.steps)

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    @property
    def arms(self) -> list[int]:
        """The versions compared: an experiment's arms (the control first), else the champion
        and the challenger."""
        arms = self.experiment.arms if self.experiment is not None else None
        return list(arms) if arms else [self.champion, self.challenger]

    @property
    def is_experiment(self) -> bool:
        return self.strategy in EXPERIMENTS

    def stored(self) -> dict[str, Any]:
        """The JSON its row holds (its records serialized, the one place they are)."""
        return dump_data(self.plan, self.experiment, self.progress, self.extra)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "strategy": self.strategy,
            "champion": self.champion,
            "challenger": self.challenger,
            "status": self.status,
            "step": self.step,
            "share": self.share,
            "shadow": self.shadow,
            "unit": self.unit,
            "started_at": self.started_at.isoformat(),
            "step_started_at": self.step_started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            **{k: v for k, v in self.stored().items() if k in _SHOWN},
        }


_SHOWN = ("steps", "decisions", "reason", "arms", "shares", "experiment", "result")


def counts_summary(counts: Counts) -> dict[str, dict[str, dict[str, float | None]]]:
    """The shared counters as ``{version: {name: {"n", "mean"}}}`` (JSON-ready)."""
    return {
        str(version): {name: {"n": c.n, "mean": c.mean} for name, c in names.items()}
        for version, names in counts.items()
    }


def utcnow() -> datetime:
    return datetime.now(UTC)


class Rollouts:
    """The rollouts of a project's models."""

    def __init__(self, store: SqlMetadataStore, counters: CounterStore | None = None) -> None:
        self.store = store
        if counters is None:
            from loopml.storage import SqlCounters

            counters = SqlCounters(store)
        self.counters: CounterStore = counters

    # ------------------------------------------------------------------------------ reading

    def active(self, model: str) -> Rollout | None:
        """The model's active rollout, if any (at most one at a time)."""
        with self.store.read() as conn:
            row = _active_row(conn, model)
        return _rollout(row) if row is not None else None

    def get(self, rollout_id: int) -> Rollout:
        with self.store.read() as conn:
            row = conn.execute(select(t.rollouts).where(t.rollouts.c.id == rollout_id)).mappings()
            found = row.first()
        if found is None:
            raise NotFoundError(f"no rollout {rollout_id}", details={"rollout": rollout_id})
        return _rollout(found)

    def list(self, model: str, *, limit: int = 50) -> builtins.list[Rollout]:
        """The model's rollouts, newest first."""
        with self.store.read() as conn:
            rows = conn.execute(
                select(t.rollouts)
                .where(t.rollouts.c.model == model)
                .order_by(t.rollouts.c.id.desc())
                .limit(limit)
            ).mappings()
            return [_rollout(r) for r in rows]

    # ------------------------------------------------------------------------------ changes

    def start(
        self,
        model: str,
        *,
        strategy: str,
        champion: int,
        challenger: int,
        steps: builtins.list[float] | None = None,
        shadow: float = 0.0,
        unit: str | None = None,
        at: datetime | None = None,
        experiment: ExperimentConfig | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Rollout:
        """Start a rollout; refused while the model has another active one."""
        if strategy not in STRATEGIES:
            raise UsageError(
                f"unknown rollout strategy {strategy!r}: one of {', '.join(STRATEGIES)}",
                details={"strategy": strategy},
            )
        if champion == challenger:
            raise UsageError(f"{model}:{challenger} is the champion already; nothing to roll out")
        steps = list(steps or [])
        if strategy == "canary" and not steps:
            raise UsageError("a canary needs its steps (shares of traffic), e.g. [0.05, 0.25, 1]")
        at = at or utcnow()
        with self.store.write() as conn:
            row = _active_row(conn, model)
            if row is not None:
                current = _rollout(row)
                raise ConflictError(
                    f"model {model!r} has an active {current.strategy} rollout ({current.id}: "
                    f"version {current.challenger}); end it first",
                    details={"model": model, "rollout": current.id},
                )
            result = conn.execute(
                t.rollouts.insert().values(
                    model=model,
                    strategy=strategy,
                    champion=champion,
                    challenger=challenger,
                    status=ACTIVE,
                    step=0,
                    share=steps[0] if strategy == "canary" else 0.0,
                    shadow=shadow,
                    unit=unit,
                    started_at=at,
                    step_started_at=at,
                    ended_at=None,
                    data=dump_data(
                        Plan(steps=steps), experiment, Progress(decisions=[]), extra or {}
                    ),
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            rollout_id = int(key[0])
        return self.get(rollout_id)

    def advance(
        self, rollout: Rollout, *, at: datetime, decision: Mapping[str, Any] | None = None
    ) -> Rollout:
        """Move a canary to its next step (compare-and-set on the step it was at)."""
        nxt = rollout.step + 1
        if nxt >= len(rollout.steps):
            raise UsageError(f"rollout {rollout.id} is at its last step; promote or end it")
        data = _stored(rollout, _with_decision(rollout, decision, at))
        with self.store.write() as conn:
            done = conn.execute(
                update(t.rollouts)
                .where(
                    and_(
                        t.rollouts.c.id == rollout.id,
                        t.rollouts.c.status == ACTIVE,
                        t.rollouts.c.step == rollout.step,
                    )
                )
                .values(step=nxt, share=rollout.steps[nxt], step_started_at=at, data=data)
            ).rowcount
        if not done:
            raise ConflictError(
                f"rollout {rollout.id} moved on meanwhile (it is no longer at step {rollout.step})",
                details={"rollout": rollout.id},
            )
        return self.get(rollout.id)

    def record(
        self,
        rollout: Rollout,
        *,
        result: Mapping[str, Any] | None = None,
        p_values: Mapping[str, float] | None = None,
    ) -> Rollout:
        """Keep an active experiment's last analysis (one transaction; the stored progress,
        not the caller's copy, is what is updated)."""
        patch: dict[str, Any] = {}
        if result is not None:
            patch["result"] = dict(result)
        if p_values is not None:
            patch["p_values"] = dict(p_values)
        with self.store.write() as conn:
            now = _still_active(conn, rollout)
            data = _stored(now, now.progress.model_copy(update=patch))
            conn.execute(
                update(t.rollouts)
                .where(and_(t.rollouts.c.id == rollout.id, t.rollouts.c.status == ACTIVE))
                .values(data=data)
            )
        return self.get(rollout.id)

    def end(
        self,
        rollout: Rollout,
        status: str,
        *,
        at: datetime,
        reason: str,
        decision: Mapping[str, Any] | None = None,
    ) -> Rollout:
        """End an active rollout as ``promoted``, ``rolled_back`` or ``stopped``."""
        if status not in ENDED:
            raise UsageError(f"a rollout ends as one of {', '.join(ENDED)}, not {status!r}")
        with self.store.write() as conn:
            # The stored data, not the caller's copy: a decision recorded since it was read
            # (an advance racing a stop) must survive the ending.
            now = _still_active(conn, rollout)
            data = _stored(
                now, _with_decision(now, decision, at).model_copy(update={"reason": reason})
            )
            conn.execute(
                update(t.rollouts)
                .where(and_(t.rollouts.c.id == rollout.id, t.rollouts.c.status == ACTIVE))
                .values(status=status, share=0.0, shadow=0.0, ended_at=at, data=data)
            )
        return self.get(rollout.id)

    # ----------------------------------------------------------------------------- counters

    def add_counts(self, rollout_id: int, counts: Mapping[tuple[int, str], Counter]) -> None:
        """Add to the shared counters atomically (no update lost between workers)."""
        self.counters.add(rollout_id, counts)

    def counts(self, rollout_id: int) -> Counts:
        """The shared counters of a rollout: version -> name -> counter."""
        return self.counters.counts(rollout_id)


def _active_row(conn: Connection, model: str) -> RowMapping | None:
    return (
        conn.execute(
            select(t.rollouts).where(
                and_(t.rollouts.c.model == model, t.rollouts.c.status == ACTIVE)
            )
        )
        .mappings()
        .first()
    )


def _still_active(conn: Connection, rollout: Rollout) -> Rollout:
    """The rollout as stored now; :class:`ConflictError` when it has ended meanwhile."""
    row = conn.execute(select(t.rollouts).where(t.rollouts.c.id == rollout.id)).mappings().first()
    if row is None or row["status"] != ACTIVE:
        raise ConflictError(
            f"rollout {rollout.id} has already ended", details={"rollout": rollout.id}
        )
    return _rollout(row)


def _with_decision(rollout: Rollout, decision: Mapping[str, Any] | None, at: datetime) -> Progress:
    if decision is None:
        return rollout.progress
    made = RecordedDecision.model_validate({"at": at.isoformat(), "step": rollout.step, **decision})
    return rollout.progress.model_copy(update={"decisions": [*rollout.progress.decisions, made]})


def _stored(rollout: Rollout, progress: Progress) -> dict[str, Any]:
    return dump_data(rollout.plan, rollout.experiment, progress, rollout.extra)


def _rollout(row: RowMapping) -> Rollout:
    plan, experiment, progress, extra = parse_data(row["data"])
    return Rollout(
        id=int(row["id"]),
        model=row["model"],
        strategy=row["strategy"],
        champion=int(row["champion"]),
        challenger=int(row["challenger"]),
        status=row["status"],
        step=int(row["step"]),
        share=float(row["share"]),
        shadow=float(row["shadow"]),
        unit=row["unit"],
        started_at=row["started_at"],
        step_started_at=row["step_started_at"],
        ended_at=row["ended_at"],
        plan=plan,
        experiment=experiment,
        progress=progress,
        extra=extra,
    )
