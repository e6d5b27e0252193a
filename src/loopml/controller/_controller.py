"""The continual-learning loop: triggers, retraining, the gate, the rollout, promotion or
rollback, as a state machine in the metadata store.

``step(now)`` does what is due at ``now`` and returns; ``run()`` steps forever. Each phase's
work is idempotent: a version trained for a cycle carries the cycle in its note, an evaluation
against the current champion is reused, an active rollout for the challenger is adopted, and a
canary step moves by compare-and-set. A controller killed at any point therefore resumes where
it was, and a lease keeps a second controller from acting at the same time.

Phases::

    idle ──trigger──▶ training ──▶ gating ──pass──▶ canary | shadow | (direct) ──▶ idle
      ▲                  │ too few rows │ refused          │ worse, errors, timeout: rollback
      └──────────────────┴──────────────┴──────────────────┘
    idle ◀──▶ paused  (too much of the recent data in quarantine)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from loopml.controller._signals import BY, Signals
from loopml.controller._state import Lease, LoopState, LoopStore, utcnow
from loopml.errors import ConflictError, LoopmlError, UsageError
from loopml.features import TrainingSet
from loopml.rollout import (
    CHALLENGER_ALIAS,
    Decision,
    Judge,
    Rollout,
    counts_summary,
    is_last_step,
    look_key,
)
from loopml.spec import LoopSpec

if TYPE_CHECKING:
    from loopml._project import Project

log = logging.getLogger("loopml.loop")

CHALLENGER = CHALLENGER_ALIAS


@dataclass
class StepResult:
    """What one step did."""

    acted: bool
    phase: str
    cycle: int
    events: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    # Where each trigger stood when the step found nothing due (why nothing happened).
    triggers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "acted": self.acted,
            "phase": self.phase,
            "cycle": self.cycle,
            "events": self.events,
            "note": self.note,
            "triggers": self.triggers,
        }


class Controller:
    """The loop of a project's model."""

    def __init__(
        self,
        project: Project,
        *,
        spec: LoopSpec | None = None,
        holder: str | None = None,
        hooks: dict[str, Callable[[], None]] | None = None,
    ) -> None:
        self.project = project
        self.spec = spec or project.spec.loop
        self.name = project.models.name
        self.states = LoopStore(project.store)
        self.rollouts = project.rollouts
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.signals = Signals(project, self.spec, self.name)
        self.lease = Lease(project.store, f"loop:{self.name}", self.holder, self.spec.lease)
        # Test seams: called at named points of a step (to kill or slow a controller there).
        self.hooks = hooks or {}
        self._events: list[dict[str, Any]] = []
        self._waiting: list[dict[str, Any]] = []
        self._built: tuple[int, datetime, TrainingSet] | None = None
        # What each phase of the state machine does at a step: an explicit table (a test checks
        # it covers every phase the state store knows).
        self._phases: dict[str, Callable[[LoopState, datetime], LoopState | None]] = {
            "idle": self._idle,
            "training": self._training,
            "gating": self._gating,
            "shadow": self._shadow,
            "canary": self._canary,
            "paused": self._paused,
        }

    @functools.cached_property
    def judge(self) -> Judge:
        """Judges rollout steps: the rollout package decides, the loop acts on the decision
        (built on first use: a loop without rollouts opens no monitoring for it)."""
        project = self.project
        return Judge(
            rollouts=self.rollouts,
            registry=project.registry,
            monitoring=project.monitoring,
            spec=self.spec.rollout,
            task=project.models.spec.task,
        )

    # ----------------------------------------------------------------------------- driving

    def step(self, now: datetime | None = None, *, max_transitions: int = 8) -> StepResult:
        """Do what is due at ``now`` (default: the wall clock)."""
        now = now or utcnow()
        if now.tzinfo is None:
            raise UsageError("the loop's clock must be timezone-aware (UTC)")
        try:
            taken = self.lease.acquire()
        except ConflictError:
            taken = False
        if not taken:
            state = self.states.load(self.name)
            holder = self.lease.current() or {}
            return StepResult(
                False,
                state.phase,
                state.cycle,
                note=f"the loop is held by {holder.get('holder')} until {holder.get('expires_at')}",
            )
        self._events, self._waiting = [], []
        state = self.states.load(self.name)
        for _ in range(max_transitions):
            nxt = self._phases[state.phase](state, now)
            if nxt is None:
                break
            state = nxt
            if not self.lease.acquire():
                break  # lost the lease while working (a very long training): stop here
        return StepResult(True, state.phase, state.cycle, self._events, triggers=self._waiting)

    def run(
        self,
        *,
        interval: float | None = None,
        stop: Callable[[], bool] | None = None,
        on_step: Callable[[StepResult], None] | None = None,
    ) -> None:
        """Step until ``stop()`` says so, sleeping ``interval`` seconds between steps."""
        wait = interval if interval is not None else self.spec.interval.total_seconds()
        try:
            while not (stop and stop()):
                try:
                    result = self.step()
                except LoopmlError as exc:
                    log.error("loop step failed: %s", exc)
                else:
                    if on_step is not None:
                        on_step(result)
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline and not (stop and stop()):
                    time.sleep(min(0.5, wait))
        finally:
            with contextlib.suppress(LoopmlError):
                self.lease.release()

    def release(self) -> None:
        """Give up the lease now (after one-off steps; `run` releases it when it stops)."""
        self.lease.release()

    def trigger(self, reason: str = "by hand", *, by: str | None = None) -> LoopState:
        """Ask for a retrain at the next step (a trigger by hand)."""
        for _ in range(5):
            state = self.states.load(self.name)
            data = dict(state.data)
            data["manual"] = {"reason": reason, "by": by or BY, "at": utcnow().isoformat()}
            try:
                return self.states.save(state, phase=state.phase, data=data)
            except ConflictError:
                continue
        raise ConflictError("the loop state kept changing; try again")

    def status(self, now: datetime | None = None) -> dict[str, Any]:
        """The loop's state, aliases, rollout, lease and last events, and where each trigger
        stands at ``now`` (default: the wall clock)."""
        state = self.states.load(self.name)
        rollout = self.rollouts.active(self.name)
        aliases = self.project.registry.aliases(self.name) if self.signals.has_model() else {}
        _, triggers = self.signals.check(now or utcnow(), dict(state.data))
        return {
            "model": self.name,
            **state.to_dict(),
            "triggers": [t.to_dict() for t in triggers],
            "aliases": aliases,
            "rollout": rollout.to_dict() if rollout else None,
            "counts": counts_summary(self.rollouts.counts(rollout.id)) if rollout else None,
            "lease": self.lease.current(),
            "events": [e.to_dict() for e in self.states.events(self.name)][-20:],
        }

    def timeline(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.states.events(self.name)]

    # ------------------------------------------------------------------------------ phases

    def _save(
        self,
        state: LoopState,
        phase: str,
        now: datetime,
        events: list[tuple[str, dict[str, Any]]],
        *,
        cycle: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> LoopState:
        saved = self.states.save(
            state,
            phase=phase,
            cycle=cycle,
            data=data,
            events=[(kind, now, detail) for kind, detail in events],
        )
        for kind, detail in events:
            entry = {"kind": kind, "at": now.isoformat(), "cycle": saved.cycle, **detail}
            self._events.append(entry)
            log.info("loop %s cycle %d: %s %s", self.name, saved.cycle, kind, detail)
        return saved

    def _idle(self, state: LoopState, now: datetime) -> LoopState | None:
        data = dict(state.data)
        events: list[tuple[str, dict[str, Any]]] = []
        # The loop watches a champion it did not promote from its first step on.
        data.setdefault("watching_since", now.isoformat())
        if self.spec.monitor_every is not None and self.signals.has_champion():
            last = data.get("monitored_at")
            if last is None or now - datetime.fromisoformat(last) >= self.spec.monitor_every:
                found = self.signals.monitor(now, data)
                data["monitored_at"] = now.isoformat()
                if found.get("judged"):
                    data["monitor"] = found["judged"]
                if found.get("rolled_back"):
                    events.append(("rollback", found["rolled_back"]))
                    return self._save(state, "idle", now, events, data=data)
        rate = self.signals.quarantine_rate(now)
        if rate is not None and rate > self.spec.quarantine.max_rate:
            self.signals.quarantine_alert(rate, now)
            events.append(
                (
                    "paused",
                    {
                        "quarantine_rate": round(rate, 4),
                        "limit": self.spec.quarantine.max_rate,
                        "reason": f"{rate:.1%} of the rows read in the last "
                        f"{self.spec.quarantine.window} were quarantined (limit "
                        f"{self.spec.quarantine.max_rate:.1%}): retraining waits",
                    },
                )
            )
            return self._save(state, "paused", now, events, data=data)
        experiment = self.rollouts.active(self.name)
        if experiment is not None and experiment.is_experiment:
            # An experiment owns the traffic until someone ends it: the loop keeps its
            # numbers current (a bandit's rewards) and starts no cycle meanwhile.
            self.project.experiments.evaluate(experiment, until=now)
            if data != state.data:
                self._save(state, "idle", now, events, data=data)
            return None
        fired, standing = self.signals.check(now, data)
        if not fired:
            self._waiting = [t.to_dict() for t in standing]
            if data != state.data:
                self._save(state, "idle", now, events, data=data)
            return None
        data.pop("manual", None)
        data["cycle_started_at"] = now.isoformat()
        data["triggers"] = fired
        for key in ("version", "verdict", "rollout"):
            data.pop(key, None)
        events.append(("triggered", {"triggers": fired}))
        return self._save(state, "training", now, events, cycle=state.cycle + 1, data=data)

    def _paused(self, state: LoopState, now: datetime) -> LoopState | None:
        rate = self.signals.quarantine_rate(now)
        if rate is not None and rate > self.spec.quarantine.max_rate:
            return None
        self.signals.quarantine_alert(rate or 0.0, now)
        return self._save(
            state, "idle", now, [("resumed", {"quarantine_rate": round(rate or 0.0, 4)})]
        )

    def _training(self, state: LoopState, now: datetime) -> LoopState | None:
        data = dict(state.data)
        marker = f"loop cycle {state.cycle}"
        versions = self.project.models.versions() if self.signals.has_model() else []
        found = [v for v in versions if v.note.startswith(marker + ":")]
        events: list[tuple[str, dict[str, Any]]]
        if found:
            version = found[-1]
            events = [("trained", {"version": version.version, "resumed": True})]
        else:
            self._hook("before_train")
            mode = self._mode(state)
            try:
                ts = self.project.features.build(as_of=now)
                self._built = (state.cycle, now, ts)  # the gate's backtest reads it too
                result = self.project.models.train(
                    training_set=ts,
                    as_of=now,
                    warm_start="champion" if mode == "stateful" else None,
                    window=self.spec.retrain.window if mode == "stateless" else None,
                    min_rows=self.spec.retrain.min_rows,
                    refit=self.spec.retrain.refit,
                    by=BY,
                    note=f"{marker}: {mode}, triggered by "
                    + ", ".join(f["kind"] for f in data.get("triggers", [])),
                )
            except UsageError as exc:
                return self._save(
                    state, "idle", now, [("training_skipped", {"reason": exc.message})], data=data
                )
            self._hook("after_train")
            assert result.version is not None
            version = result.version
            events = [
                (
                    "trained",
                    {
                        "version": version.version,
                        "mode": mode,
                        "rows": result.trained.sizes,
                        "refit": result.trained.refit,
                        "learned": result.trained.lineage["learned"],
                        "seconds": round(result.trained.seconds, 2),
                        "metrics": _pick(result.trained.metrics),
                    },
                )
            ]
        data["version"] = version.version
        return self._save(state, "gating", now, events, data=data)

    def _gating(self, state: LoopState, now: datetime) -> LoopState | None:
        data = dict(state.data)
        version = int(data["version"])
        models = self.project.models
        champion = self.signals.champion_version()
        verdict = self._reuse_verdict(version, champion)
        if verdict is None:
            self._hook("before_gate")
            built = self._built
            ts = built[2] if built is not None and built[:2] == (state.cycle, now) else None
            v = (
                models.evaluate(version, as_of=now, by=BY, training_set=ts)
                if champion != version
                else None
            )
            verdict = (
                _verdict_record(v.to_dict())
                if v is not None
                else {"passed": False, "failed": ["it is the champion already"]}
            )
        event = {"version": version, "against": champion, **_gate_summary(verdict)}
        if not verdict["passed"]:
            return self._save(state, "idle", now, [("gate_refused", event)], data=data)
        # The gate's smoke check loaded the artifact (its SHA-256 checked) and predicted.
        strategy = self.spec.rollout.strategy
        if champion is None or strategy == "direct":
            moved = self._promote(version, now, "passed the gate")
            return self._save(
                state, "idle", now, [("gate_passed", event), *moved], data=self._promoted(data, now)
            )
        rollout = self._start_rollout(strategy, champion, version, now)
        data["rollout"] = rollout.id
        return self._save(
            state,
            strategy,
            now,
            [
                ("gate_passed", event),
                (
                    f"{strategy}_started",
                    {
                        "rollout": rollout.id,
                        "version": version,
                        "share": rollout.share,
                        "shadow": rollout.shadow,
                    },
                ),
            ],
            data=data,
        )

    def _canary(self, state: LoopState, now: datetime) -> LoopState | None:
        return self._judge_rollout(state, now)

    def _shadow(self, state: LoopState, now: datetime) -> LoopState | None:
        return self._judge_rollout(state, now)

    def _judge_rollout(self, state: LoopState, now: datetime) -> LoopState | None:
        data = dict(state.data)
        rollout = self.rollouts.get(int(data["rollout"]))
        if not rollout.active:
            # Ended from outside (`loopml rollout stop`) or by an earlier, interrupted step.
            return self._finish_ended(state, rollout, now)
        missed = self._unrecorded_steps(rollout)
        if missed:
            return self._save(state, state.phase, now, missed, data=data)
        decision = self.judge.judge(rollout, now, data.get("looks", {}))
        if decision.action == "hold":
            if decision.numbers.get("looked") is not None:
                data.setdefault("looks", {}).setdefault(look_key(rollout), []).append(
                    decision.numbers["looked"]
                )
                return self._save(
                    state,
                    state.phase,
                    now,
                    [(f"{rollout.strategy}_hold", {"rollout": rollout.id, **decision.to_dict()})],
                    data=data,
                )
            return None
        self._hook("before_rollout_change")
        if decision.action == "rollback":
            self.rollouts.end(
                rollout,
                "rolled_back",
                at=now,
                reason="; ".join(decision.reasons),
                decision=decision.to_dict(),
            )
            self._free_challenger()
            return self._save(
                state,
                "idle",
                now,
                [
                    (
                        "rolled_back",
                        {
                            "rollout": rollout.id,
                            "version": rollout.challenger,
                            "step": rollout.step,
                            "share": rollout.share,
                            **decision.to_dict(),
                        },
                    )
                ],
                data=data,
            )
        if not is_last_step(rollout):
            moved = self.rollouts.advance(rollout, at=now, decision=decision.to_dict())
            return self._save(
                state,
                state.phase,
                now,
                [
                    (
                        "canary_step",
                        {
                            "rollout": rollout.id,
                            "version": rollout.challenger,
                            "from": rollout.share,
                            "to": moved.share,
                            **decision.to_dict(),
                        },
                    )
                ],
                data=data,
            )
        if rollout.strategy == "shadow" and self.spec.rollout.shadow.then == "canary":
            self.rollouts.end(
                rollout,
                "stopped",
                at=now,
                reason="passed in shadow; on to a canary",
                decision=decision.to_dict(),
            )
            canary = self._start_rollout("canary", rollout.champion, rollout.challenger, now)
            data["rollout"] = canary.id
            return self._save(
                state,
                "canary",
                now,
                [
                    ("shadow_passed", {"rollout": rollout.id, **decision.to_dict()}),
                    ("canary_started", {"rollout": canary.id, "share": canary.share}),
                ],
                data=data,
            )
        # The rollout ends first: a step that dies after it finishes the promotion on resume
        # (_finish_ended), where a champion moved under a still active rollout would be judged
        # again, against itself.
        self.rollouts.end(
            rollout,
            "promoted",
            at=now,
            reason="not worse than the champion",
            decision=decision.to_dict(),
        )
        events = self._promote(
            rollout.challenger, now, f"{rollout.strategy} {rollout.id} passed", decision
        )
        self._free_challenger()
        return self._save(state, "idle", now, events, data=self._promoted(data, now))

    def _finish_ended(self, state: LoopState, rollout: Rollout, now: datetime) -> LoopState:
        """The rollout ended without this step (resumed, or stopped by hand): finish the
        phase consistently with how it ended."""
        data = dict(state.data)
        events: list[tuple[str, dict[str, Any]]] = []
        champion = self.signals.champion_version()
        if rollout.status == "promoted":
            # Ended by a step that died before moving the champion, or after but before
            # recording it: finish (the move is idempotent) and record the promotion.
            last = rollout.progress.decisions[-1] if rollout.progress.decisions else None
            decided = (
                Decision(last.action, last.reasons, last.numbers or {})
                if last is not None and last.action is not None
                else None
            )
            events = self._promote(rollout.challenger, now, f"rollout {rollout.id} passed", decided)
            events[0][1]["resumed"] = True
            if champion == rollout.challenger:
                events[0][1]["previous"] = rollout.champion
        elif (
            rollout.status == "stopped"
            and rollout.strategy == "shadow"
            and (self.spec.rollout.shadow.then == "canary")
        ):
            active = self.rollouts.active(self.name)
            if active is not None and active.challenger == rollout.challenger:
                data["rollout"] = active.id
                return self._save(state, "canary", now, [], data=data)
        self._free_challenger()
        events.append(("rollout_ended", {"rollout": rollout.id, "status": rollout.status}))
        if rollout.status == "promoted":
            data = self._promoted(data, now)
        return self._save(state, "idle", now, events, data=data)

    # ----------------------------------------------------------------------------- pieces

    def _start_rollout(self, strategy: str, champion: int, version: int, now: datetime) -> Rollout:
        active = self.rollouts.active(self.name)
        if active is not None and active.challenger == version and active.strategy == strategy:
            return active  # started by an interrupted step
        if active is not None:
            self.rollouts.end(active, "stopped", at=now, reason=f"superseded by version {version}")
        aliases = self.project.registry.aliases(self.name)
        if aliases.get(CHALLENGER) != version:
            self.project.registry.set_alias(
                self.name, CHALLENGER, version, by=BY, reason=f"{strategy} rollout"
            )
        spec = self.spec.rollout
        return self.rollouts.start(
            self.name,
            strategy=strategy,
            champion=champion,
            challenger=version,
            steps=spec.canary.steps if strategy == "canary" else [],
            shadow=spec.shadow.fraction if strategy == "shadow" else 0.0,
            unit=spec.unit,
            at=now,
        )

    def _promote(
        self, version: int, now: datetime, reason: str, decision: Decision | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Promote through the registry (idempotent), then make sure the new champion loads;
        a champion that does not load is rolled back at once."""
        events: list[tuple[str, dict[str, Any]]] = []
        previous = self.signals.champion_version()
        if previous != version:
            self.project.models.promote(version, "champion", by=BY, reason=reason)
        detail: dict[str, Any] = {"version": version, "previous": previous, "reason": reason}
        if decision is not None:
            detail["decision"] = decision.to_dict()
        events.append(("promoted", detail))
        problem = self.project.models.smoke(version)
        if problem is not None and previous is not None:
            self.project.models.rollback(
                by=BY, reason=f"the new champion failed to load: {problem}"
            )
            events.append(("rollback", {"version": version, "to": previous, "reason": problem}))
        return events

    def _promoted(self, data: dict[str, Any], now: datetime) -> dict[str, Any]:
        data = dict(data)
        data["champion_since"] = now.isoformat()
        data["last_trained_at"] = data.get("cycle_started_at")
        data.pop("looks", None)
        return data

    def _unrecorded_steps(self, rollout: Rollout) -> list[tuple[str, dict[str, Any]]]:
        """The canary steps the rollout took that the loop's timeline lacks: a step that died
        between moving the rollout (compare-and-set) and saving the loop state. Recorded as
        they were decided."""
        if rollout.step == 0:
            return []
        recorded = sum(
            1
            for e in self.states.events(self.name, kind="canary_step")
            if e.detail.get("rollout") == rollout.id
        )
        decided = {d.step: d.to_dict() for d in rollout.progress.decisions if d.action == "advance"}
        steps = rollout.steps
        return [
            (
                "canary_step",
                {
                    "rollout": rollout.id,
                    "version": rollout.challenger,
                    "from": steps[s],
                    "to": steps[s + 1],
                    **{k: v for k, v in decided.get(s, {}).items() if k not in ("at", "step")},
                    "decided_at": decided.get(s, {}).get("at"),
                    "resumed": True,
                },
            )
            for s in range(recorded, rollout.step)
        ]

    def _free_challenger(self) -> None:
        if CHALLENGER in self.project.registry.aliases(self.name):
            self.project.registry.remove_alias(self.name, CHALLENGER, by=BY, reason="rollout ended")

    def _reuse_verdict(self, version: int, champion: int | None) -> dict[str, Any] | None:
        for e in reversed(self.project.registry.evaluations(self.name, version)):
            if e.against_version == champion:
                return _verdict_record({**(e.report or {}), "passed": e.passed})
        return None

    def _mode(self, state: LoopState) -> str:
        retrain = self.spec.retrain
        if retrain.mode == "stateless" or not self.signals.has_champion():
            return "stateless"
        if retrain.full_every and state.cycle % retrain.full_every == 0:
            return "stateless"
        return "stateful"

    def _hook(self, name: str) -> None:
        hook = self.hooks.get(name)
        if hook is not None:
            hook()


def _pick(metrics: dict[str, Any]) -> dict[str, Any]:
    keep = ("pr_auc", "roc_auc", "log_loss", "rmse", "macro_f1", "accuracy")
    return {k: round(v, 4) for k, v in metrics.items() if k in keep and isinstance(v, float)}


def _verdict_record(report: dict[str, Any]) -> dict[str, Any]:
    """What the loop keeps of a verdict (``Verdict.to_dict()`` or a recorded evaluation)."""
    checks = report.get("checks") or []
    return {
        "passed": bool(report.get("passed")),
        "summary": report.get("summary"),
        "failed": [c["detail"] for c in checks if not c.get("passed")],
        "checks": checks,
        "numbers": report.get("numbers") or {},
    }


def _gate_summary(verdict: dict[str, Any]) -> dict[str, Any]:
    """The gate's event: the verdict, every check with its rows (the reason of each one skipped
    or failed), and the rows of each set it judged."""
    numbers = verdict.get("numbers") or {}
    out: dict[str, Any] = {"passed": verdict["passed"]}
    if verdict.get("summary"):
        out["summary"] = verdict["summary"]
    if verdict.get("failed"):
        out["failed"] = verdict["failed"][:5]
    if verdict.get("checks"):
        out["checks"] = [
            {
                "name": c["name"],
                "status": c.get("status", "passed" if c.get("passed") else "failed"),
                "rows": c.get("rows"),
                **({"detail": c["detail"]} if c.get("status") != "passed" else {}),
            }
            for c in verdict["checks"]
        ]
    sets = {
        name: {k: info.get(k) for k in ("rows", "start", "end", "why")}
        for name, info in numbers.items()
        if isinstance(info, dict) and name in ("test", "backtest")
    }
    if sets:
        out["sets"] = sets
    test = numbers.get("test") if isinstance(numbers, dict) else None
    if isinstance(test, dict):
        out["test"] = {k: v for k, v in test.items() if isinstance(v, (int | float, dict))}
    return out
