"""The stream consumer: events from the transport land in the lake (through the same validation
and quarantine as files) and update the online store, each exactly once in effect although the
transport delivers at least once.

Per micro-batch: (1) land the events not landed yet, recording the stream offset in the same
metadata transaction as the batch; (2) fold the landed rows into window tiles, marked per batch in
the online store atomically with the tiles; (3) upsert lookup values (newest wins, so repeating
it is harmless); (4) acknowledge. A crash between any two steps repeats only what did not take
effect. One consumer per stream and group: offsets assume ids arrive in order.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from loopml.data import Data, IngestJob, IngestResult, Landed, ingest_buffer
from loopml.errors import UsageError
from loopml.features._definitions import FeatureSet
from loopml.features._online import MARK_TILES, OnlineFeatures
from loopml.storage import EventLog, id_order
from loopml.storage import tables as t

GROUP = "loopml-lake"


def stream_name(source: str) -> str:
    return f"source.{source}"


@dataclass
class StepResult:
    events: int = 0
    skipped: int = 0
    landed: IngestResult | None = None
    tiles: int = 0
    lookups: int = 0
    acked: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "skipped": self.skipped,
            "rows_accepted": self.landed.rows_accepted if self.landed else 0,
            "rows_quarantined": self.landed.rows_quarantined if self.landed else 0,
            "batch_id": self.landed.batch_id if self.landed else None,
            "tiles": self.tiles,
            "lookups": self.lookups,
            "acked": self.acked,
        }


def publish(
    log: EventLog, source: str, rows: Iterable[dict[str, Any]], *, chunk: int = 5000
) -> int:
    """Append rows (dicts) to a source's stream as JSON; timestamps become ISO-8601 text."""
    n = 0
    buf: list[bytes] = []
    for row in rows:
        buf.append(orjson.dumps(row, default=_json_default, option=orjson.OPT_UTC_Z))
        if len(buf) >= chunk:
            n += len(log.append(stream_name(source), buf))
            buf = []
    if buf:
        n += len(log.append(stream_name(source), buf))
    return n


def _json_default(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    raise TypeError(f"cannot send {type(v).__name__} as JSON")


def read_rows(path: str | Path) -> pa.Table:
    """A CSV, Parquet or JSON Lines file (optionally .gz for text) as an Arrow table."""
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    from loopml.data import format_of

    name = str(path)
    fmt = format_of(name)
    if fmt == "parquet":
        return pq.read_table(name)
    if fmt == "jsonl":
        return pajson.read_json(name)
    if fmt == "csv":
        return pacsv.read_csv(name)
    raise UsageError(f"cannot tell the format of {name}: use .csv, .parquet or .jsonl")


def table_rows(table: pa.Table) -> Iterable[dict[str, Any]]:
    """Rows of an Arrow table as dicts with timestamps as ISO text (no pandas)."""
    converted = {}
    for name in table.column_names:
        col = table[name]
        if pa.types.is_timestamp(col.type):
            converted[name] = pc.strftime(
                col, format="%Y-%m-%dT%H:%M:%S" + ("Z" if col.type.tz else "")
            ).to_pylist()
        elif pa.types.is_date(col.type):
            converted[name] = pc.strftime(col, format="%Y-%m-%d").to_pylist()
        else:
            converted[name] = col.to_pylist()
    names = table.column_names
    for i in range(table.num_rows):
        yield {n: converted[n][i] for n in names}


class StreamConsumer:
    """Consumes one source's stream into the lake and the online store."""

    def __init__(
        self,
        data: Data,
        log: EventLog,
        source: str,
        *,
        features: Callable[[], tuple[FeatureSet, OnlineFeatures] | None] | None = None,
        group: str = GROUP,
        consumer: str | None = None,
        batch_size: int = 5000,
        by: str = "stream",
    ) -> None:
        self.data = data
        self.log = log
        self.source = source
        self.stream = stream_name(source)
        self._features = features
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch_size = batch_size
        self.by = by
        self._caught_up = False

    def step(self, *, block_ms: int = 0) -> StepResult:
        """Consume one micro-batch (up to ``batch_size`` events)."""
        if not self._caught_up:
            self._apply_missing_tiles()
            self._caught_up = True
        events = self.log.read(
            self.stream, self.group, self.consumer, count=self.batch_size, block_ms=block_ms
        )
        result = StepResult(events=len(events))
        if not events:
            return result
        events.sort(key=lambda e: id_order(e.id))
        landed_up_to = self._offset()
        fresh = [
            e for e in events if landed_up_to is None or id_order(e.id) > id_order(landed_up_to)
        ]
        result.skipped = len(events) - len(fresh)
        if fresh:
            result.landed = self._land(fresh)
            batch = result.landed.batch_id
            if result.landed.rows_accepted and batch is not None:
                result.tiles, result.lookups = self._apply(batch)
            elif result.landed.status == "held":
                result.notes.append(_held_note(result.landed, len(fresh)))
        result.acked = self.log.ack(self.stream, self.group, [e.id for e in events])
        return result

    def run(self, *, max_idle_steps: int | None = None, block_ms: int = 1000) -> list[StepResult]:
        """Consume until ``max_idle_steps`` reads in a row bring nothing (forever when None)."""
        results = []
        idle = 0
        while max_idle_steps is None or idle < max_idle_steps:
            r = self.step(block_ms=block_ms)
            if r.events:
                idle = 0
                results.append(r)
            else:
                idle += 1
        return results

    # ------------------------------------------------------------------------------ landing

    def _offset(self) -> str | None:
        with self.data.store.read() as conn:
            return conn.execute(
                select(t.stream_offsets.c.last_id).where(
                    (t.stream_offsets.c.stream == self.stream)
                    & (t.stream_offsets.c.consumer_group == self.group)
                )
            ).scalar()

    def _land(self, events: list[Any]) -> IngestResult:
        first, last = events[0].id, events[-1].id
        body = b"\n".join(e.payload for e in events) + b"\n"
        digest = hashlib.sha256(
            f"{self.stream}|{self.group}|{first}|{last}|".encode() + body
        ).hexdigest()
        stream, group = self.stream, self.group

        def record_offset(conn: Any, landed: Landed) -> None:
            now = datetime.now(UTC)
            updated = conn.execute(
                t.stream_offsets.update()
                .where(
                    (t.stream_offsets.c.stream == stream)
                    & (t.stream_offsets.c.consumer_group == group)
                )
                .values(last_id=last, updated_at=now)
            )
            if updated.rowcount == 0:
                conn.execute(
                    t.stream_offsets.insert().values(
                        stream=stream, consumer_group=group, last_id=last, updated_at=now
                    )
                )

        spec = self.data.register(self.source, fmt="jsonl")
        job = IngestJob(
            source=self.source,
            spec=spec.model_copy(update={"format": "jsonl"}),
            fmt="jsonl",
            file=f"stream:{self.stream}@{first}..{last}",
            content_hash=digest,
            by=self.by,
            origin={
                "kind": "stream",
                "stream": stream,
                "group": group,
                "first": first,
                "last": last,
            },
            # A micro-batch is as big as the events that happened to be waiting: batch checks
            # (row count, null rate) are for delivered files.
            delivery=False,
            on_commit=record_offset,
        )
        return ingest_buffer(self.data.store, self.data.lake, pa.py_buffer(body), job)

    # ---------------------------------------------------------------------- online features

    def _resolved(self) -> tuple[FeatureSet, OnlineFeatures] | None:
        # Resolved late: the stream's first micro-batch may be what gives the source a schema.
        return self._features() if self._features is not None else None

    def _apply(self, batch: str) -> tuple[int, int]:
        resolved = self._resolved()
        if resolved is None:
            return 0, 0
        _, online = resolved
        rec = next(b for b in self.data.batches(self.source) if b.id == batch)
        if rec.lake_path is None:
            return 0, 0
        return online.apply_batch(self.source, batch, self.data.lake.read_parquet(rec.lake_path))

    def _apply_missing_tiles(self) -> None:
        """After a crash between landing and tiles: fold in landed stream batches not folded."""
        resolved = self._resolved()
        if resolved is None:
            return
        fs, online = resolved
        windows = [w for w in fs.windows.values() if w.source == self.source]
        if not windows:
            return
        for b in self.data.batches(self.source):
            if b.origin.get("kind") != "stream" or not b.lake_path:
                continue
            if any(
                online.store.get_mark(MARK_TILES.format(name=w.name, batch=b.id)) is None
                for w in windows
            ):
                self._apply(b.id)


def _held_note(landed: IngestResult, events: int) -> str:
    """A micro-batch held whole is said out loud: its events reach neither the lake nor the
    online store until it is released."""
    why = "; ".join(f"{r['code']}: {r['message']}" for r in landed.batch_reasons)
    return (
        f"micro-batch {landed.file} held whole in quarantine {landed.quarantine_id} ({why}): "
        f"its {events} event{'s' if events != 1 else ''} reached neither the lake nor the "
        f"online store; see `loopml quarantine show {landed.quarantine_id}`"
    )
