"""Monitoring in ``loopml.yaml``: windows, drift tests and their false-alarm control, performance
tolerance, labels, and alert rules with their sinks."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loopml.spec._types import MAX_ROWS, Duration, PositiveDuration

Op = Literal[">", ">=", "<", "<="]
SinkName = Literal["log", "file", "webhook"]


class _Model(BaseModel):
    # Numbers are finite: .inf or .nan in loopml.yaml would silently turn a check off.
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, protected_namespaces=(), allow_inf_nan=False
    )


class DriftSpec(_Model):
    """How drift is tested. A feature drifts when its test is significant after the correction
    across features *and* its effect size is above what the reference shows between its own
    chunks (so that a million-row window does not alarm on a negligible difference)."""

    alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="False-alarm rate per check across all features (after the correction).",
    )
    correction: Literal["bh", "bonferroni"] = Field(
        "bh", description="Benjamini-Hochberg (default) or Bonferroni across features."
    )
    bins: int = Field(10, ge=4, le=100, description="Quantile bins per numeric feature.")
    top_k: int = Field(
        20,
        ge=1,
        le=1000,
        description="Categories kept per categorical feature; the rest are 'other'.",
    )
    chunks: int = Field(
        10, ge=4, le=100, description="Reference chunks used to calibrate effect-size thresholds."
    )
    min_rows: int = Field(
        100, ge=10, le=MAX_ROWS, description="Windows with fewer rows are not tested."
    )
    exact_ks_max: int = Field(
        5000,
        ge=0,
        le=10_000_000,
        description="Up to this many rows a numeric feature gets an exact two-sample KS test; above, KS from bins.",
    )


class PerformanceSpec(_Model):
    """When realized performance counts as decayed."""

    metric: str | None = Field(
        None, description="The metric watched (default: pr_auc for binary, macro_f1, rmse, ndcg)."
    )
    max_drop: float = Field(
        0.05, ge=0, description="A drop larger than this from the reference value is decay."
    )
    relative: bool = Field(False, description="Read max_drop as a share of the reference value.")
    min_labels: int = Field(
        200, ge=10, le=MAX_ROWS, description="Windows with fewer labels are not judged."
    )


class AlertRule(_Model):
    """One alert rule on a monitored metric (``loopml monitor --json`` lists their names)."""

    metric: str = Field(
        description="e.g. drift.features, drift.share, drift.<feature>, drift.prediction, drift.label, performance.pr_auc, performance.drop, performance.decayed (0/1), estimated.pr_auc, latency.p99_ms, error_rate, fallback_rate, quarantine_rate, shift.covariate, shift.label, shift.concept."
    )
    op: Op = Field(">", description="How the value is compared with the threshold.")
    threshold: float = Field(0.0, description="The value the metric is compared with.")
    window: Literal["current", "sliding", "cumulative"] = Field(
        "current", description="Which window's value is judged."
    )
    for_: int = Field(
        1,
        ge=1,
        le=1000,
        alias="for",
        description="Consecutive windows the condition must hold first.",
    )
    cooldown: Duration = Field(
        timedelta(hours=6), description="After a notification, none for this rule for this long."
    )
    severity: Literal["info", "warning", "critical"] = "warning"
    sinks: list[SinkName] = Field(default_factory=lambda: ["log"])  # type: ignore[arg-type]


class FileSinkSpec(_Model):
    path: str = Field("alerts.jsonl", description="JSON Lines file, relative to the project.")


class WebhookSinkSpec(_Model):
    url: str | None = Field(None, description="POSTed one JSON alert per call.")
    timeout: PositiveDuration = Field(timedelta(seconds=3))
    token_env: str | None = Field(
        None, description="Environment variable holding a bearer token for the webhook."
    )


class SinksSpec(_Model):
    file: FileSinkSpec = Field(default_factory=FileSinkSpec)
    webhook: WebhookSinkSpec = Field(default_factory=WebhookSinkSpec)


class MonitoringSpec(_Model):
    """Windows, drift, performance, labels and alerts."""

    window: PositiveDuration | None = Field(
        None,
        description=(
            "The current window (one bucket). Default: chosen from the prediction log, the "
            "shortest of 1d, 7d, 14d, 30d, 91d, 182d and 365d that holds at least "
            "max(drift.min_rows, performance.min_labels) predictions at the log's rate."
        ),
    )
    sliding: PositiveDuration | None = Field(
        None,
        description="The sliding window: the latest buckets adding up to this (default: 7 days, "
        "or the window if longer).",
    )
    drift: DriftSpec = Field(default_factory=DriftSpec)
    performance: PerformanceSpec = Field(default_factory=PerformanceSpec)
    label: str | None = Field(
        None,
        description="Feedback field holding the label (default: the model's label name, then 'label').",
    )
    join_keys: list[str] | None = Field(
        None,
        description=(
            "Features that identify an event for labels sent by keys (default: the event "
            "source's primary key). When they do not identify one event, labels must also "
            "carry event_time."
        ),
    )
    on_conflict: Literal["first", "last", "refuse"] = Field(
        "first",
        description=(
            "Several labels that disagree for one prediction: the first received wins (first), "
            "the last received wins (last), or the prediction stays unlabelled (refuse). "
            "Conflicts are counted and reported whatever the policy."
        ),
    )
    alerts: dict[str, AlertRule] = Field(default_factory=dict)
    sinks: SinksSpec = Field(default_factory=SinksSpec)

    @model_validator(mode="after")
    def _windows(self) -> MonitoringSpec:
        if self.window is not None and self.sliding is not None and self.sliding < self.window:
            raise ValueError(
                f"sliding ({self.sliding}) must be at least the window ({self.window})"
            )
        for name, rule in self.alerts.items():
            if "webhook" in rule.sinks and not self.sinks.webhook.url:
                raise ValueError(
                    f"alert {name!r} sends to the webhook, but sinks.webhook.url is not set"
                )
        return self

    def sliding_for(self, window: timedelta) -> timedelta:
        """The sliding window that goes with a current window: as set, else 7 days or the
        window if longer (never shorter than the window)."""
        return max(self.sliding or timedelta(days=7), window)
