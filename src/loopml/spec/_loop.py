"""The continual-learning loop in ``loopml.yaml``: what triggers a retrain, how the challenger is
trained, how it is rolled out (directly, in shadow, or as a stepped canary), when it is rolled
back, and when the loop refuses to train at all (too much data in quarantine)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loopml.spec._types import MAX_ROWS, Duration, PositiveDuration

MonitoringSignal = Literal["decay", "concept_drift", "covariate_shift", "label_shift"]
DEFAULT_SIGNALS: tuple[MonitoringSignal, ...] = ("decay", "concept_drift")


class _Model(BaseModel):
    # Numbers are finite: .inf or .nan in loopml.yaml would silently turn a check off.
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, protected_namespaces=(), allow_inf_nan=False
    )


class TriggersSpec(_Model):
    """What starts a retrain. Any trigger that fires starts one cycle; a cycle is never started
    less than ``min_interval`` after the previous one began."""

    schedule: PositiveDuration | None = Field(
        None, description="Retrain at least this often (e.g. 30d); none: no schedule."
    )
    new_rows: Annotated[int, Field(ge=1, le=MAX_ROWS)] | Literal["auto"] | None = Field(
        "auto",
        description="Retrain once this many accepted rows of the event source are newer than "
        "the champion's data and the last cycle's start; auto: a tenth of the rows the "
        "champion was trained and tested on, at least loop.retrain.min_rows; null: off.",
    )
    monitoring: list[MonitoringSignal] = Field(
        default_factory=lambda: list(DEFAULT_SIGNALS),
        description="What the loop's own monitoring of the champion (every monitor_every) may "
        "find that triggers a retrain, with no alert rule to declare: decay (the watched "
        "metric fell beyond its tolerance), concept_drift, covariate_shift, label_shift; [] "
        "for none.",
    )
    alerts: list[str] = Field(
        default_factory=list,
        description="Names of monitoring alert rules (monitoring.alerts) whose firing triggers "
        "a retrain.",
    )
    min_interval: Duration = Field(
        timedelta(days=1), description="The least time between the starts of two cycles."
    )


class RetrainSpec(_Model):
    """How the challenger is trained."""

    mode: Literal["stateless", "stateful"] = Field(
        "stateless",
        description="stateless: from scratch on the data window; stateful: warm start from the "
        "champion on the rows newer than its data.",
    )
    window: PositiveDuration | None = Field(
        None,
        description="Stateless: train on the latest window of labelled data (default: all).",
    )
    min_rows: int = Field(
        200,
        ge=10,
        le=MAX_ROWS,
        description="Fewer new labelled rows than this: the cycle does not train.",
    )
    full_every: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="Stateful: every N-th cycle trains from scratch instead (trees only grow "
        "with warm starts).",
    )
    refit: bool = Field(
        True,
        description="Once fitted on the training rows and evaluated on the held-out ones, fit "
        "the challenger again on every row up to the cycle's cut-off (same parameters and "
        "rounds) and register that artifact: the newest rows, held out to test it, are learned "
        "too. The gate judges the held-out model; its metrics are the version's.",
    )


class CanarySpec(_Model):
    """A stepped canary: the challenger answers a growing share of requests; each step ends
    when the challenger is shown not worse (advance) or worse (roll back)."""

    steps: list[float] = Field(
        default_factory=lambda: [0.05, 0.25, 0.5, 1.0],
        description="The challenger's share of requests at each step, increasing; passing the "
        "last step below 1.0 promotes it (a final 1.0 stands for the promotion).",
    )
    metric: Literal["log_loss", "brier", "error", "squared_error", "absolute_error"] | None = Field(
        None,
        description="The per-prediction loss compared once labels arrive (default: log_loss "
        "for classifiers, squared_error for regression).",
    )
    margin: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Non-inferiority margin, relative to the champion's mean loss: the "
        "challenger may be up to this much worse and still pass.",
    )
    alpha: float = Field(0.05, gt=0, lt=0.5, description="Error rate of each decision.")
    min_labels: int = Field(
        300,
        ge=10,
        le=MAX_ROWS,
        description="Labelled predictions per arm before a step is judged.",
    )
    max_error_rate: float = Field(
        0.02, ge=0, le=1, description="Challenger answers failing or falling back, at most."
    )
    max_latency_ratio: float = Field(
        3.0, gt=0, le=1000, description="Challenger mean latency over the champion's, at most."
    )
    step_timeout: PositiveDuration = Field(
        timedelta(days=14),
        description="A step still undecided after this long is rolled back (inconclusive).",
    )

    @model_validator(mode="after")
    def _increasing(self) -> CanarySpec:
        s = self.steps
        if not s or any(not 0 < x <= 1 for x in s) or any(b <= a for a, b in itertools.pairwise(s)):
            raise ValueError(
                f"canary.steps must be increasing shares in (0, 1], e.g. [0.05, 0.25, 0.5, 1.0]; got {s}"
            )
        return self


class ShadowSpec(_Model):
    """Shadow: the challenger scores a share of requests in the background; only the
    champion's answers are returned."""

    fraction: float = Field(1.0, gt=0, le=1, description="Share of requests shadowed.")
    min_labels: int = Field(
        300, ge=10, le=MAX_ROWS, description="Labelled shadow pairs before judging."
    )
    then: Literal["promote", "canary"] = Field(
        "promote", description="After a passing shadow: promote, or go on to a canary."
    )


class RolloutSpec(_Model):
    """How a challenger that passed the gate reaches traffic."""

    strategy: Literal["direct", "shadow", "canary"] = Field(
        "canary", description="direct: promote after the gate; shadow; canary."
    )
    unit: str | None = Field(
        None,
        description="A request field whose value keeps a unit (user, session) on one arm; "
        "default: each request is assigned on its own (by prediction id).",
    )
    canary: CanarySpec = Field(default_factory=CanarySpec)
    shadow: ShadowSpec = Field(default_factory=ShadowSpec)


class QuarantineGuard(_Model):
    """Too much of the recent data in quarantine: pause retraining and alert instead."""

    max_rate: float = Field(0.05, ge=0, le=1, description="Quarantined rows / rows read, at most.")
    window: PositiveDuration = Field(timedelta(days=7), description="The recent period looked at.")


class LoopSpec(_Model):
    """The continual-learning loop of the project's model."""

    triggers: TriggersSpec = Field(default_factory=TriggersSpec)
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    quarantine: QuarantineGuard = Field(default_factory=QuarantineGuard)
    monitor_every: PositiveDuration | None = Field(
        timedelta(days=1),
        description="Judge the champion's monitoring windows (raising alerts) this often; "
        "none: leave it to `loopml monitor`.",
    )
    max_error_rate: float = Field(
        0.05,
        ge=0,
        le=1,
        description="A champion whose answers fail (or fall back on errors) more often than "
        "this in a monitoring window is rolled back.",
    )
    interval: PositiveDuration = Field(
        timedelta(minutes=1), description="`loopml loop run`: time between steps."
    )
    lease: PositiveDuration = Field(
        timedelta(minutes=5),
        description="How long a controller's lease lasts without renewal; another controller "
        "may act only after it expires.",
    )
