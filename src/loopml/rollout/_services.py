"""The parts of a project that rollout is built from, each named by what rollout calls on it.

Rollout never imports the project: the composition root (``Project``) hands each service the
parts it uses. ``Experiments`` and ``BatchServer`` also accept, as their one positional
argument, any object that holds those parts as attributes (a ``Project`` does, structurally),
so that ``Experiments(project)`` keeps working; they take the parts from it once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from loopml.monitoring import MonitorLog, Profile
    from loopml.registry import ModelVersion, Registry
    from loopml.rollout._store import Rollouts
    from loopml.training import Models


class OutcomeLog(Protocol):
    """The monitoring readers an experiment and a rollout's comparison call: the landed
    prediction log joined with its labels, and each version's reference profile."""

    @property
    def log(self) -> MonitorLog: ...

    def land(self) -> object: ...

    def join_keys(self) -> list[str]: ...

    def label_name(self) -> str: ...

    def profile(self, version: ModelVersion) -> Profile: ...


class ScoreLog(Protocol):
    """Where a batch's answers are logged, as a serving worker logs its own."""

    def log_scored(
        self,
        table: pa.Table,
        scores: np.ndarray,
        *,
        version: int,
        ids: list[str],
        at: str = ...,
        latency_us: float = ...,
        features: list[str] | tuple[str, ...],
        mode: str = ...,
        of: list[str] | None = ...,
        rollout: int | None = ...,
        propensity: Sequence[float] | None = ...,
    ) -> int: ...


class ExperimentParts(Protocol):
    """What ``Experiments(parts)`` takes its services from (a ``Project``, for one)."""

    @property
    def rollouts(self) -> Rollouts: ...

    @property
    def models(self) -> Models: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def monitoring(self) -> OutcomeLog: ...


class BatchParts(Protocol):
    """What ``BatchServer(parts)`` takes its services from (a ``Project``, for one)."""

    @property
    def rollouts(self) -> Rollouts: ...

    @property
    def models(self) -> Models: ...

    @property
    def monitoring(self) -> ScoreLog: ...


def check_parts(owner: str, parts: object | None, given: Mapping[str, object]) -> None:
    """Refuse a constructor call that gives both an object holding the parts and parts by
    keyword, or neither (naming the parts missing): half-built services fail later and far
    from the call."""
    named = [k for k, v in given.items() if v is not None]
    if parts is not None and named:
        raise TypeError(
            f"{owner}() takes either one object holding its parts or the parts by keyword, "
            f"not both (got one and {', '.join(f'{k}=' for k in named)})"
        )
    if parts is None:
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise TypeError(
                f"{owner}() is missing {', '.join(f'{k}=' for k in missing)}: give every one of "
                f"{', '.join(f'{k}=' for k in given)}, or one object holding them (a Project)"
            )
