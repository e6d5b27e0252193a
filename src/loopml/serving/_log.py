"""The prediction log: every prediction goes to the events role, in batches, from a background
thread; the request path only appends to a queue (no database write per request)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from loopml.monitoring import PredictionRecord
from loopml.storage import EventLog

log = logging.getLogger("loopml.serving")


class PredictionLogger:
    """Batches predictions to an event stream. ``log`` is safe from any thread and never blocks;
    past ``max_queue`` unwritten entries, new ones are dropped and counted (serving matters more
    than its log)."""

    def __init__(
        self,
        events: Callable[[], EventLog],
        stream: str,
        *,
        batch: int = 500,
        interval: float = 0.2,
        max_queue: int = 100_000,
    ) -> None:
        self._events = events
        self.stream = stream
        self.batch = batch
        self.interval = interval
        self.max_queue = max_queue
        self._queue: deque[bytes] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0
        self.errors = 0

    def log(self, record: PredictionRecord) -> None:
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            return
        # Serialized here, a few microseconds each, rather than hundreds at once in the writer
        # thread, where holding the GIL would stall requests.
        self._queue.append(record.encode())
        if len(self._queue) >= self.batch:
            self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="loopml-prediction-log", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()
        self.flush()

    def flush(self) -> int:
        """Write what is queued now; returns how many were written."""
        written = 0
        while self._queue:
            chunk: list[bytes] = []
            while self._queue and len(chunk) < self.batch:
                chunk.append(self._queue.popleft())
            try:
                self._events().append(self.stream, chunk)
                written += len(chunk)
            except Exception:
                self.errors += 1
                self.dropped += len(chunk)
                log.exception("could not write %d predictions to %s", len(chunk), self.stream)
                time.sleep(min(self.interval, 1.0))
        self.written += written
        return written

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()
