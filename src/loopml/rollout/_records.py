"""The typed parts of a rollout's stored JSON: its plan (the canary's steps), an experiment's
configuration (arms, shares, metric, policy...) and what accumulates while it runs (the
decisions, each a :class:`RecordedDecision`, p-values, the last result, the reason it ended). Parsed once when a row is read
(:func:`parse_data`, tolerant of rows written before these records: a missing key takes its
default) and serialized once when written (:func:`dump_data`), so readers use attributes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Plan(BaseModel):
    """A canary's shares of traffic, one per step (empty for other strategies)."""

    model_config = ConfigDict(frozen=True)

    steps: list[float] = Field(default_factory=list)


class ExperimentConfig(BaseModel):
    """An experiment's configuration, fixed when it starts. Keys this record does not name are
    kept (``extra="allow"``) so that a row's JSON reads back and writes out unchanged."""

    model_config = ConfigDict(frozen=True, extra="allow")

    arms: list[int] = Field(default_factory=list)  # the control first
    shares: list[float] = Field(default_factory=list)  # an A/B test's declared shares
    metric: str = "accuracy"
    kind: str = "proportion"
    task: str = "binary"
    higher_is_better: bool = True
    alpha: float = 0.05
    # an A/B test's sizing
    effect: float | None = None
    power: float | None = None
    baseline: float | None = None
    sd: float | None = None
    sample_size: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    unit_values: dict[str, Any] | None = None
    # a bandit's policy
    policy: str = "thompson"
    options: dict[str, Any] = Field(default_factory=dict)
    # an interleaving's depth
    k: int | None = None
    champion_at_start: int | None = None
    by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``experiment`` JSON as stored and shown: the keys it was given, without the
        arms and shares (stored beside it)."""
        return self.model_dump(exclude={"arms", "shares"}, exclude_unset=True)


class RecordedDecision(BaseModel):
    """A decision recorded on a rollout: when (``at``, ISO 8601), at which step, and what was
    decided with its reasons and numbers. A canary or shadow step's (the controller's
    :class:`~loopml.rollout.Decision`: ``action``, ``reasons``, ``numbers``) or an experiment's
    ending (its result in brief: ``decision``, ``winner``, ``reasons`` and the statistics).
    Keys this record does not name are kept (``extra="allow"``) and a key a row lacks stays
    unset, so that a row's JSON reads back and writes out unchanged."""

    model_config = ConfigDict(frozen=True, extra="allow")

    at: str | None = None
    step: int = 0
    action: str | None = None  # a step's: advance | rollback | hold | ...
    reasons: list[str] = Field(default_factory=list)
    numbers: dict[str, Any] | None = None
    decision: str | None = None  # an experiment's: winner | continue | ...
    winner: int | None = None  # an experiment's winning version

    def to_dict(self) -> dict[str, Any]:
        """The decision's JSON as stored and shown: the keys it was given."""
        return self.model_dump(exclude_unset=True)


class Progress(BaseModel):
    """What accumulates while a rollout runs."""

    model_config = ConfigDict(frozen=True)

    decisions: list[RecordedDecision] = Field(default_factory=list)
    reason: str | None = None  # why it ended
    result: dict[str, Any] | None = None  # an experiment's last analysis, in brief
    p_values: dict[str, float] | None = None  # an A/B test's last p-value per arm


_KNOWN = ("steps", "decisions", "reason", "result", "p_values", "arms", "shares", "experiment")


def parse_data(
    data: Mapping[str, Any] | None,
) -> tuple[Plan, ExperimentConfig | None, Progress, dict[str, Any]]:
    """A stored row's JSON as its records (and the keys none of them names, kept as they are).
    A key the row lacks takes its record's default and stays unset, so that
    :func:`dump_data` writes back exactly the keys the row had."""
    data = dict(data or {})
    plan = Plan.model_validate({k: data[k] for k in Plan.model_fields if k in data})
    experiment = None
    if "experiment" in data or "arms" in data:
        fields: dict[str, Any] = dict(data.get("experiment") or {})
        fields.update((k, data[k]) for k in ("arms", "shares") if k in data)
        experiment = ExperimentConfig.model_validate(fields)
    progress = Progress.model_validate({k: data[k] for k in Progress.model_fields if k in data})
    extra = {k: v for k, v in data.items() if k not in _KNOWN}
    return plan, experiment, progress, extra


def dump_data(
    plan: Plan, experiment: ExperimentConfig | None, progress: Progress, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON stored for a rollout (the inverse of :func:`parse_data`): the keys set, the
    experiment's arms and shares beside its configuration as the first rows were written."""
    out: dict[str, Any] = plan.model_dump(exclude_unset=True)
    out.update(progress.model_dump(exclude_unset=True))
    if experiment is not None:
        out.update(experiment.model_dump(include={"arms", "shares"}, exclude_unset=True))
        out["experiment"] = experiment.to_dict()
    out.update(extra)
    return out
