"""The serving side of a project (``project.serving``): precompute the static table, predict in
process, and build the HTTP app."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from loopml.errors import UsageError
from loopml.serving._engine import Prediction
from loopml.serving._precompute import precompute
from loopml.serving._runtime import Runtime

if TYPE_CHECKING:
    from fastapi import FastAPI

    from loopml.serving._parts import ServingParts


class Serving:
    """Precomputation, in-process prediction and the app of one project."""

    def __init__(self, parts: ServingParts) -> None:
        self.parts = parts
        self._runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        """An in-process serving runtime (loads the served alias; no background threads)."""
        if self._runtime is None:
            rt = Runtime(self.parts)
            rt.holder.check()
            self._runtime = rt
        return self._runtime

    def predict(self, rows: Sequence[dict[str, Any]]) -> list[Prediction]:
        """Predictions for request rows, in process, with the configured mode (no budget)."""
        rt = self.runtime
        rt.holder.poll()  # a version that failed to load is retried after its backoff
        served = rt.holder.current
        if served is None:
            raise UsageError(rt.holder.unavailable(), details=rt.holder.status())
        return rt.engine.answer(rt.engine.parse(list(rows)), served)

    def precompute(
        self,
        *,
        ref: str | int | None = None,
        head: int | None = None,
        keys: Sequence[dict[str, Any]] | None = None,
        window: timedelta | None = timedelta(days=28),
        snapshot: str | None = None,
    ) -> dict[str, Any]:
        """The static table of a version (the served alias by default): every key of
        ``serving.static.key``, or the ``head`` most requested keys (hybrid), or given ``keys``."""
        spec = self.parts.spec.serving
        if not spec.static.key:
            raise UsageError(
                "serving.static.key is not set: declare the features predictions are keyed by"
            )
        if head is not None and keys is None:
            from loopml.serving._advisor import top_keys

            keys = top_keys(self.parts, spec.static.key, head)
        elif keys is None and spec.mode == "hybrid" and spec.hybrid.keys is not None:
            keys = spec.hybrid.keys
        return precompute(
            self.parts.models,
            self.parts.features,
            self.parts.online,
            spec.static.key,
            ref=ref if ref is not None else spec.alias,
            snapshot=snapshot,
            # Keys asked for by name are precomputed however long ago they were last seen.
            window=None if keys is not None else window,
            keys=keys,
        )

    def app(self) -> FastAPI:
        from loopml.serving._app import create_app

        return create_app(runtime=Runtime(self.parts))

    def close(self) -> None:
        self._runtime = None
