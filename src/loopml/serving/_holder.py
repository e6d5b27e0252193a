"""Hot swap: a worker watches the alias it serves, loads a new version in the background (checked
against its SHA-256, smoke-tested), then swaps it in with one reference assignment. Requests in
flight finish on the version they started with; a version that fails to load is not served and
the previous one keeps answering."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loopml.errors import LoopmlError
from loopml.features import OnlineFeatures
from loopml.registry import ModelVersion
from loopml.serving._predictor import RowPredictor
from loopml.training import Model, Models
from loopml.training._gate import test_table

log = logging.getLogger("loopml.serving")


@dataclass
class Served:
    """One loaded version and everything needed to answer with it."""

    version: ModelVersion
    model: Model
    predictor: RowPredictor
    prior: float | None
    loaded_at: float = field(default_factory=time.time)

    @property
    def number(self) -> int:
        return self.version.version


class ModelHolder:
    """The version a worker serves, swapped atomically when the alias moves."""

    def __init__(
        self,
        models: Models,
        online: Callable[[], OnlineFeatures | None],
        *,
        alias: str = "champion",
        interval: float = 2.0,
        on_swap: Callable[[Served], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.models = models
        self._online = online
        self.alias = alias
        self.interval = interval
        self.current: Served | None = None
        self.last_error: str | None = None
        self.failed_version: int | None = None
        self.swaps = 0
        self._on_swap = on_swap
        self._on_failure = on_failure
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load_version(self, mv: ModelVersion) -> Served:
        """Load, verify and smoke-test one version (raises on any problem)."""
        files = self.models.registry.load_files(mv)  # SHA-256 of every file checked
        model = Model.from_files(files, mv.trusted_types)
        predictor = RowPredictor(model, online=self._online())
        sample = test_table(files).slice(0, 5).to_pylist() if "test.parquet" in files else []
        for row in sample:
            out = predictor.score(row)
            if not np.all(np.isfinite(out)):
                raise LoopmlError(f"{mv.ref} predicted {out!r} on its own test rows")
        prior = mv.metrics.get("positive_rate") if model.task == "binary" else None
        return Served(mv, model, predictor, prior)

    def check(self) -> bool:
        """Swap in the alias's version if it moved; True when a swap happened."""
        try:
            mv = self.models.registry.get(self.models.name, self.alias)
        except LoopmlError as exc:
            self.last_error = exc.message
            return False
        if self.current is not None and mv.version == self.current.number:
            return False
        if mv.version == self.failed_version:
            return False  # already refused; wait for the alias to move again
        try:
            served = self.load_version(mv)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the previous version serving
            self.failed_version = mv.version
            self.last_error = (
                f"{mv.ref} failed to load, still serving "
                + (self.current.version.ref if self.current else "nothing")
                + f": {exc}"
            )
            log.error(self.last_error)
            if self._on_failure is not None:
                self._on_failure(self.last_error)
            return False
        previous, self.current = self.current, served  # the swap: one assignment
        self.failed_version = None
        self.last_error = None
        self.swaps += previous is not None
        if self._on_swap is not None:
            self._on_swap(served)
        log.info("serving %s%s", mv.ref, f" (was {previous.version.ref})" if previous else "")
        return True

    def start(self) -> None:
        """Load the alias now (if it exists) and watch it from a background thread."""
        self.check()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name="loopml-model-watch", daemon=True
            )
            self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:
                log.exception("checking the %s alias failed", self.alias)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def status(self) -> dict[str, Any]:
        c = self.current
        return {
            "alias": self.alias,
            "version": c.number if c else None,
            "loaded_at": c.loaded_at if c else None,
            "swaps": self.swaps,
            "last_error": self.last_error,
        }
