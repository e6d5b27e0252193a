"""The model and the gate in ``loopml.yaml``: what to train, how to split and weigh the data, how
to judge it, and what a challenger must show before it may serve."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loopml.spec._types import MAX_ROWS, NAME_PATTERN, PositiveDuration

Task = Literal["binary", "multiclass", "regression", "ranking"]


class _Model(BaseModel):
    # Numbers are finite: .inf or .nan in loopml.yaml would silently turn a check off.
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, protected_namespaces=(), allow_inf_nan=False
    )


class SplitSpec(_Model):
    """How the training set is split into train, validation and test rows."""

    method: Literal["random", "stratified", "time", "group"] = Field(
        "time",
        description=(
            "time: the latest events are the test set (the honest choice for data that drifts); "
            "random; stratified (by the label); group (no group in two splits)."
        ),
    )
    test: float = Field(0.2, gt=0, lt=1, description="Share of rows for the test set.")
    valid: float = Field(0.1, ge=0, lt=1, description="Share of rows for validation.")
    column: str | None = Field(
        None,
        description="group: the grouping column; time: the time column (default: the event time).",
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Random seed of the split.")

    @model_validator(mode="after")
    def _shares(self) -> SplitSpec:
        if self.test + self.valid >= 0.9:
            raise ValueError("test + valid must leave at least 10% of the rows for training")
        return self


class ImbalanceSpec(_Model):
    """Class imbalance (binary and multiclass)."""

    class_weight: Literal["none", "balanced"] = "none"
    resample: Literal["none", "over", "under"] = Field(
        "none",
        description="Random over-sampling of the minority or under-sampling of the majority.",
    )
    ratio: float = Field(1.0, gt=0, le=1, description="Minority:majority ratio after resampling.")
    threshold: Literal["fixed", "f1", "youden", "precision"] = Field(
        "f1", description="How the decision threshold is chosen on validation data (binary)."
    )
    fixed_threshold: float = Field(0.5, gt=0, lt=1)
    min_precision: float | None = Field(
        None,
        gt=0,
        le=1,
        description="threshold: precision: the highest recall with this precision.",
    )


class BehaviourSpec(_Model):
    """Behavioural tests from the book: perturbation, invariance, directional expectations."""

    perturbation: float | None = Field(
        0.01,
        ge=0,
        le=1,
        description="Noise (share of each numeric feature's spread); null disables.",
    )
    invariant: list[str] = Field(
        default_factory=list, description="Features that should not change the prediction."
    )
    monotone: dict[str, Literal[1, -1]] = Field(
        default_factory=dict,
        description="Feature -> +1 or -1: the direction the prediction must move.",
    )
    enforce_monotone: bool = Field(
        False,
        description="Also constrain LightGBM to the declared directions (the test then holds by construction).",
    )
    sample: int = Field(2000, ge=10, le=10_000_000, description="Rows the tests run on.")


class WarmStartSpec(_Model):
    """How a stateful retrain continues its parent on new data only."""

    rounds: float = Field(
        0.25,
        gt=0,
        le=100_000,
        description="New trees: a share of the model's rounds (< 1) or a number (>= 1).",
    )
    learning_rate_scale: float = Field(
        0.5, gt=0, le=1, description="The new trees learn this much slower than the parent's."
    )


class ModelSpec(_Model):
    """The model a project trains."""

    name: str = Field(pattern=NAME_PATTERN)
    task: Task = "binary"
    estimator: str = Field(
        "lightgbm",
        description="lightgbm, or a scikit-learn estimator as module:Class (e.g. sklearn.linear_model:LogisticRegression).",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Estimator parameters.")
    label: str | None = Field(None, description="Default: the features' label.")
    features: list[str] | None = Field(None, description="Default: the features' vector.")
    categorical: list[str] | None = Field(
        None, description="Features encoded as categories (default: the string features)."
    )
    group: str | None = Field(None, description="ranking: the query column.")
    split: SplitSpec = Field(default_factory=SplitSpec)
    imbalance: ImbalanceSpec = Field(default_factory=ImbalanceSpec)
    slices: list[str] = Field(default_factory=list, description="Columns to evaluate slices of.")
    behaviour: BehaviourSpec = Field(default_factory=BehaviourSpec)
    warm_start: WarmStartSpec = Field(default_factory=WarmStartSpec)
    window: PositiveDuration | None = Field(
        None, description="Train on events of this last period only (default: all)."
    )
    refit: bool = Field(
        False,
        description="`loopml train`: once the model is fitted on the training rows and "
        "evaluated on the held-out ones, fit it again on every row up to the cut-off (train, "
        "validation and test) with the same parameters and number of rounds, and register that "
        "one; the metrics stay those of the held-out model (before the refit). The loop has its "
        "own switch, loop.retrain.refit (on by default).",
    )

    @model_validator(mode="after")
    def _ranking_group(self) -> ModelSpec:
        if self.task == "ranking" and not self.group:
            raise ValueError("a ranking model needs group: the column that identifies a query")
        if self.task in ("regression", "ranking") and self.imbalance.resample != "none":
            raise ValueError(f"resampling applies to classification, not {self.task}")
        return self


class MetricBound(_Model):
    """Bounds on one metric: on its value, and on its change from the champion."""

    min: float | None = None
    max: float | None = None
    min_change: float | None = Field(None, description="challenger - champion must be >= this.")
    max_change: float | None = Field(None, description="challenger - champion must be <= this.")
    min_change_rel: float | None = Field(
        None, description="(challenger - champion) / |champion| >= this."
    )
    max_change_rel: float | None = Field(
        None, description="(challenger - champion) / |champion| <= this."
    )


class GateSpec(_Model):
    """What a challenger must show against the champion before it may serve."""

    metrics: dict[str, MetricBound] = Field(default_factory=dict)
    max_slice_regression: float | None = Field(
        0.05,
        ge=0,
        description="The most any slice's primary metric may fall behind the champion's.",
    )
    slice_min_rows: int = Field(200, ge=1, le=MAX_ROWS)
    backtest: PositiveDuration | Literal["auto"] | None = Field(
        "auto",
        description="Also compare on the most recent labelled rows neither model learned from: "
        "auto (the shortest recent period holding backtest_min_rows of them), a period (e.g. "
        "30d, ending at --as-of or at the latest labelled row), or null (no backtest).",
    )
    backtest_min_rows: int = Field(
        200,
        ge=1,
        le=MAX_ROWS,
        description="auto: the labelled rows the backtest holds (fewer if fewer exist).",
    )
    not_computable: Literal["skip", "refuse"] = Field(
        "skip",
        description="A metric check that cannot be computed on its rows (no rows, or one class "
        "for an AUC): skip it (shown as skipped, with the reason) or refuse the challenger. A "
        "gate that could compute no metric check at all refuses either way.",
    )
    smoke_rows: int = Field(
        100,
        ge=1,
        le=1_000_000,
        description="Test rows the smoke test predicts with the loaded artifact: in the gate, "
        "in a forced promotion and before a serving worker serves a version.",
    )
