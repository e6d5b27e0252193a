"""Serving in ``loopml.yaml``: the mode (dynamic, static, hybrid), the latency budget and its
fallback, the circuit breaker, consistency, limits, and the prediction log."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loopml.spec._types import Duration, PositiveDuration


class _Model(BaseModel):
    # Numbers are finite: .inf or .nan in loopml.yaml would silently turn a check off.
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, protected_namespaces=(), allow_inf_nan=False
    )


class StaticSpec(_Model):
    """Precomputed predictions, looked up by a key made of request or derived features."""

    key: list[str] = Field(
        default_factory=list,
        description="The features a precomputed prediction is keyed by (e.g. store, product, hour).",
    )


class HybridSpec(_Model):
    """Precompute the head of the request distribution, compute the tail."""

    head: int = Field(
        1000, ge=1, le=10_000_000, description="Precompute the most requested keys, this many."
    )
    keys: list[dict[str, str | int | float | bool]] | None = Field(
        None, description="Or a declared list of keys to precompute."
    )


class FallbackSpec(_Model):
    """What answers when the model misses the latency budget or fails."""

    kind: Literal["precomputed", "model", "default"] = Field(
        "default",
        description="precomputed: the static table's value for the key; model: a smaller registered model; default: a value.",
    )
    model: str | None = Field(
        None, description="kind: model: the version or alias of the smaller model."
    )
    value: float | str | None = Field(
        None, description="kind: default: the value (default: the training prior)."
    )
    then_default: bool = Field(
        True,
        description="If the precomputed value or the small model is missing too, answer the default.",
    )


class BreakerSpec(_Model):
    """Stop calling a model that keeps failing or missing the budget."""

    failures: int = Field(
        5, ge=1, le=10_000, description="Consecutive failures that open the breaker."
    )
    cooldown: Duration = Field(
        timedelta(seconds=10), description="How long it stays open before a trial call."
    )


class ConsistencySpec(_Model):
    """The same entity gets the same prediction for a while (shared by all workers)."""

    key: list[str] = Field(min_length=1, description="The features that name the entity.")
    ttl: PositiveDuration = Field(description="How long a prediction holds for that entity.")


class LogSpec(_Model):
    """The prediction log: every prediction goes to the events role, batched, off the request path."""

    enabled: bool = True
    batch: int = Field(500, ge=1, le=100_000, description="Predictions per write.")
    interval: PositiveDuration = Field(
        timedelta(milliseconds=200), description="The longest a prediction waits to be written."
    )
    max_queue: int = Field(
        100_000,
        ge=1,
        le=100_000_000,
        description="Beyond this many unwritten predictions, new ones are dropped and counted.",
    )


class ServingSpec(_Model):
    """How the champion serves predictions."""

    mode: Literal["dynamic", "static", "hybrid"] = "dynamic"
    static: StaticSpec = Field(default_factory=StaticSpec)
    hybrid: HybridSpec = Field(default_factory=HybridSpec)
    alias: str = Field("champion", description="The alias served (hot-swapped when it moves).")
    watch_interval: PositiveDuration = Field(
        timedelta(seconds=2), description="How often workers check the alias."
    )
    bandit_update: PositiveDuration | None = Field(
        timedelta(seconds=30),
        description=(
            "How often a worker recomputes an active bandit's rewards from the feedback log "
            "(null: leave it to `loopml loop` and `loopml rollout status`)."
        ),
    )
    latency_budget: PositiveDuration | None = Field(
        None, description="Answer from the fallback when the model has not answered by then."
    )
    isolate: bool | None = Field(
        None,
        description=(
            "Run the model off the event loop so that a slow model cannot hold up other requests "
            "(default: yes when a latency budget is set)."
        ),
    )
    feature_cache: Duration = Field(
        timedelta(seconds=1),
        description=(
            "Keep online feature values (a lookup row, a window's values for an entity) this long "
            "in each worker: requests for the same entity read the store once. Every request "
            "checks the store's generations first, so a materialization or a stream micro-batch "
            "is seen by the next request; answers flag what came from the cache (0 disables)."
        ),
    )
    fallback: FallbackSpec = Field(default_factory=FallbackSpec)
    breaker: BreakerSpec = Field(default_factory=BreakerSpec)
    consistency: ConsistencySpec | None = None
    top_k: int = Field(
        3, ge=1, le=1000, description="Multiclass: how many classes a response lists."
    )
    max_body_bytes: int = Field(
        1_000_000,
        ge=1024,
        le=2**30,
        description="The largest request body on any route, enforced while it is read (413).",
    )
    body_timeout: PositiveDuration = Field(
        timedelta(seconds=30),
        description="A request body not fully arrived by then is answered 408.",
    )
    max_batch: int = Field(1000, ge=1, le=1_000_000, description="Rows in one /predict request.")
    token_env: str = Field(
        "LOOPML_TOKEN", description="The environment variable holding the bearer token."
    )
    log: LogSpec = Field(default_factory=LogSpec)

    @model_validator(mode="after")
    def _modes(self) -> ServingSpec:
        if self.mode in ("static", "hybrid") and not self.static.key:
            raise ValueError(
                f"mode {self.mode} needs static.key: the features a prediction is looked up by"
            )
        if self.fallback.kind == "model" and not self.fallback.model:
            raise ValueError("fallback.kind model needs fallback.model (a version or alias)")
        if self.fallback.kind == "precomputed" and not self.static.key:
            raise ValueError("fallback.kind precomputed needs static.key")
        return self

    @property
    def isolated(self) -> bool:
        return self.isolate if self.isolate is not None else self.latency_budget is not None
