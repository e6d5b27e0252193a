"""Hot swap: a worker watches the alias it serves, loads a new version in the background (checked
against its SHA-256, smoke-tested), then swaps it in with one reference assignment. Requests in
flight finish on the version they started with.

A version that fails to load is not served: the previous one keeps answering. The failure is kept
with what failed (the version, the file, the check) and retried with exponential backoff, and at
once on an explicit :meth:`ModelHolder.check` (``/admin/reload``), so a restored artifact is
served without a restart. A worker that has nothing loaded (it just started) falls back to the
newest earlier holder of the alias it can load: the last good champion, never a version that did
not hold the alias."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loopml.errors import LoopmlError
from loopml.features import OnlineFeatures
from loopml.registry import ModelVersion
from loopml.serving._predictor import RowPredictor
from loopml.training import Model, Models

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


@dataclass
class LoadFailure:
    """The alias's version could not be loaded: which, what failed, and when to try again."""

    version: ModelVersion
    check: str  # sha256 | exists | load | smoke
    file: str | None
    message: str
    attempts: int
    retry_at: float  # on the holder's clock


def _failure_of(mv: ModelVersion, exc: BaseException) -> tuple[str, str | None, str]:
    """(check, file, message) of a failed load: the registry's errors name the file and check."""
    if isinstance(exc, LoopmlError):
        return str(exc.details.get("check", "load")), exc.details.get("file"), exc.message
    return "load", None, f"{type(exc).__name__}: {exc}"


def _load_error(mv: ModelVersion, exc: BaseException) -> LoopmlError:
    _, file, message = _failure_of(mv, exc)
    return LoopmlError(
        f"{mv.ref} could not be built from its files: {message}",
        details={"check": "load", "file": file},
    )


class ModelHolder:
    """The version a worker serves, swapped atomically when the alias moves.

    ``fallback`` (the champion's holder) lets a worker with nothing loaded serve the newest
    earlier holder of the alias it can load; a challenger's holder has none. A version that
    failed to load is retried after ``interval`` seconds, doubling up to ``max_backoff``.
    """

    def __init__(
        self,
        models: Models,
        online: Callable[[], OnlineFeatures | None],
        *,
        alias: str = "champion",
        interval: float = 2.0,
        max_backoff: float = 60.0,
        fallback: bool = True,
        on_swap: Callable[[Served], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.models = models
        self._online = online
        self.alias = alias
        self.interval = interval
        self.max_backoff = max(max_backoff, interval)
        self.fallback = fallback
        self.current: Served | None = None
        self.alias_version: int | None = None  # the version holding the alias, as last read
        self.failure: LoadFailure | None = None
        self.last_error: str | None = None
        self.swaps = 0
        self._on_swap = on_swap
        self._on_failure = on_failure
        self._clock = clock
        # The watch thread and /admin/reload may check at once: one load at a time.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load_version(self, mv: ModelVersion) -> Served:
        """Load, verify and smoke-test one version (raises on any problem; the error's
        ``details["check"]`` says which check failed: sha256, exists, load or smoke). The smoke
        test is the gate's (``Models.smoke_test``): a version the gate passed loads here."""
        version = self.models.verified(mv)  # SHA-256 of every file checked
        try:
            model = version.model()
        except Exception as exc:
            raise _load_error(mv, exc) from exc
        try:
            self.models.smoke_test(version, model)
        except Exception as exc:
            raise LoopmlError(
                f"{mv.ref} failed its smoke test: {_failure_of(mv, exc)[2]}",
                details={"check": "smoke", "file": "test.parquet"},
            ) from exc
        try:
            # Only once the smoke test has shown one output a row: the single-row path sizes
            # its buffers from the model's manifest.
            predictor = RowPredictor(model, online=self._online())
        except Exception as exc:
            raise _load_error(mv, exc) from exc
        prior = mv.metrics.get("positive_rate") if model.task == "binary" else None
        return Served(mv, model, predictor, prior)

    def check(self) -> bool:
        """Swap in the alias's version if it moved, retrying one that failed at once (what
        ``/admin/reload`` calls); True when a swap happened."""
        return self._check(retry_now=True)

    def poll(self) -> bool:
        """Like :meth:`check`, but a version that failed is retried only after its backoff
        (what the watch thread and per-call users do)."""
        return self._check(retry_now=False)

    def _check(self, *, retry_now: bool) -> bool:
        with self._lock:
            try:
                mv = self.models.registry.get(self.models.name, self.alias)
            except LoopmlError as exc:
                self.last_error = exc.message
                return False
            self.alias_version = mv.version
            if self.current is not None and mv.version == self.current.number:
                if self.failure is not None:  # served again (a rollback to it): nothing failing
                    self.failure = None
                    self.last_error = None
                return False
            failure = self.failure
            if failure is not None and failure.version.version == mv.version:
                if not retry_now and self._clock() < failure.retry_at:
                    return False
            else:
                failure = None  # another version: tried at once, with a fresh backoff
            try:
                served = self.load_version(mv)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the previous version serving
                self._failed(mv, exc, failure.attempts if failure else 0)
                return self._fall_back(mv)
            self.failure = None
            self.last_error = None
            self._swap(served)
            return True

    def _failed(self, mv: ModelVersion, exc: BaseException, attempts: int) -> None:
        check, file, message = _failure_of(mv, exc)
        attempts += 1
        backoff = min(self.max_backoff, max(self.interval, 0.1) * 2 ** (attempts - 1))
        self.failure = LoadFailure(mv, check, file, message, attempts, self._clock() + backoff)
        self._describe()
        log.error("%s (attempt %d, retried in %.0f s)", self.last_error, attempts, backoff)
        if self._on_failure is not None:
            self._on_failure(self.last_error or message)

    def _fall_back(self, failed: ModelVersion) -> bool:
        """With nothing loaded, serve the newest earlier holder of the alias that loads."""
        if self.current is not None or not self.fallback:
            return False
        for version in self._earlier_holders(failed.version):
            try:
                served = self.load_version(self.models.registry.get(self.models.name, version))
            except Exception as exc:  # noqa: BLE001 - try the one before it
                log.error("fallback %s:%s failed to load too: %s", failed.model, version, exc)
                continue
            self._swap(served)
            self._describe()
            return True
        return False

    def _earlier_holders(self, failed: int) -> list[int]:
        """Versions that held the alias before, most recent first (each once)."""
        moves = self.models.registry.history(self.models.name, self.alias)
        seen: list[int] = []
        for move in reversed(moves):
            v = move.to_version
            if v is not None and v != failed and v not in seen:
                seen.append(v)
        return seen

    def _describe(self) -> None:
        f = self.failure
        if f is None:
            return
        c = self.current
        serving = (
            f"serving {c.version.ref}, the {self.alias} before it"
            if c is not None
            else "serving nothing"
        )
        self.last_error = (
            f"{f.version.ref} (holding {self.alias!r}) failed to load ({f.check} check"
            + (f" of {f.file!r}" if f.file else "")
            + f"): {f.message}; {serving}"
        )

    def _swap(self, served: Served) -> None:
        previous, self.current = self.current, served  # the swap: one assignment
        self.swaps += previous is not None
        if self._on_swap is not None:
            self._on_swap(served)
        log.info(
            "serving %s%s",
            served.version.ref,
            f" (was {previous.version.ref})" if previous else "",
        )

    def unavailable(self) -> str:
        """Why nothing is served (for a 503): the failed load, or that no version holds the
        alias."""
        f = self.failure
        name = self.models.name
        if f is None:
            return self.last_error or (
                f"no version of {name} holds the alias {self.alias!r} yet: promote one"
            )
        earlier = self._safe_earlier(f.version.version)
        tried = (
            f"no earlier holder of {self.alias!r} ({', '.join(f'{name}:{v}' for v in earlier)}) "
            "loads either"
            if earlier
            else f"no other version of {name} held {self.alias!r}"
        )
        return (
            f"{self.last_error}: {tried}. Restore the artifact and POST /admin/reload, or "
            f"promote a good version"
        )

    def _safe_earlier(self, failed: int) -> list[int]:
        try:
            return self._earlier_holders(failed) if self.fallback else []
        except LoopmlError:
            return []

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
                self.poll()
            except Exception:
                log.exception("checking the %s alias failed", self.alias)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    @property
    def serving_fallback(self) -> bool:
        """True while the served version is not the one holding the alias (it failed to load)."""
        c = self.current
        return c is not None and self.failure is not None and c.number != self.alias_version

    def status(self) -> dict[str, Any]:
        c = self.current
        f = self.failure
        return {
            "alias": self.alias,
            "alias_version": self.alias_version,
            "version": c.number if c else None,
            "fallback": self.serving_fallback,
            "loaded_at": c.loaded_at if c else None,
            "swaps": self.swaps,
            "last_error": self.last_error,
            "failure": None
            if f is None
            else {
                "version": f.version.version,
                "ref": f.version.ref,
                "check": f.check,
                "file": f.file,
                "message": f.message,
                "attempts": f.attempts,
                "retry_in_s": round(max(0.0, f.retry_at - self._clock()), 1),
            },
        }
