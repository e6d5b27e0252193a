"""The monitored log: predictions and feedback landed from the event streams into the lake, and
labels joined to predictions however late, duplicated or out of order they arrive.

Landing reads ``predictions.<model>`` and ``feedback.<model>`` with the consumer group
``loopml-monitor``, writes each micro-batch as a Parquet segment under
``monitoring/<model>/`` (written whole or not at all) and only then acknowledges it. A crash
between the two delivers the batch again; reads deduplicate by prediction id and event id, so
landing is idempotent. Payloads that cannot be read are kept, with the reason, under
``monitoring/<model>/rejected/``: nothing is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loopml.monitoring._join import FEATURE_PREFIX, join_labels, prepared
from loopml.monitoring._record import PredictionRecord
from loopml.storage import Event, EventLog, FileStore, id_order

GROUP = "loopml-monitor"


def predictions_stream(model: str) -> str:
    return f"predictions.{model}"


def feedback_stream(model: str) -> str:
    return f"feedback.{model}"


# -------------------------------------------------------------------------------------- landing


@dataclass
class Landed:
    predictions: int = 0
    feedback: int = 0
    rejected: int = 0
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "predictions": self.predictions,
            "feedback": self.feedback,
            "rejected": self.rejected,
            "files": self.files,
        }


class MonitorLog:
    """The landed predictions and feedback of one model."""

    def __init__(self, files: FileStore, model: str, *, on_conflict: str = "first") -> None:
        self.files = files
        self.model = model
        self.on_conflict = on_conflict
        self.root = f"monitoring/{model}"
        self._cache: dict[str, tuple[frozenset[str], pa.Table | None]] = {}
        self._prepared: tuple[pa.Table, tuple[str, ...], pa.Table, bool] | None = None

    def land(self, events: EventLog, *, consumer: str = "monitor", batch: int = 50_000) -> Landed:
        """Move everything the streams hold now into Parquet segments."""
        done = Landed()
        for stream, kind in (
            (predictions_stream(self.model), "predictions"),
            (feedback_stream(self.model), "feedback"),
        ):
            events.claim(stream, GROUP, consumer, min_idle_ms=60_000)
            while True:
                got = events.read(stream, GROUP, consumer, count=batch)
                if not got:
                    break
                table, rejected = (
                    _prediction_table(got) if kind == "predictions" else _feedback_table(got)
                )
                first = got[0].id.replace("-", "_")
                if table.num_rows:
                    rel = f"{self.root}/{kind}/{first}-{len(got)}.parquet"
                    self.files.write_atomic(rel, _parquet_writer(table))
                    done.files.append(rel)
                if rejected:
                    rel = f"{self.root}/rejected/{kind}-{first}-{len(got)}.jsonl"
                    self.files.write_bytes(rel, b"".join(orjson.dumps(r) + b"\n" for r in rejected))
                    done.files.append(rel)
                events.ack(stream, GROUP, [e.id for e in got])
                setattr(done, kind, getattr(done, kind) + table.num_rows)
                done.rejected += len(rejected)
        return done

    def _segments(self, kind: str) -> list[str]:
        folder = f"{self.root}/{kind}"
        if not self.files.exists(folder):
            return []
        return [f"{folder}/{p}" for p in self.files.list(folder) if p.endswith(".parquet")]

    def _read(self, kind: str, key: str) -> pa.Table | None:
        """Every landed row of ``kind`` once by ``key`` (the first landing wins).

        A segment never changes once landed (written whole, under a new name), so each is read
        once per process and the deduplicated table is extended with the new segments only:
        a loop stepping every day does not re-read and re-sort the whole log.
        """
        segments = self._segments(kind)
        if not segments:
            return None
        done, table = self._cache.get(kind, (frozenset(), None))
        if table is not None and done.issubset(segments):
            fresh = [p for p in segments if p not in done]
            if not fresh:
                return table
            parts = [table, *(pq.read_table(self.files.path(p)) for p in fresh)]
        else:
            parts = [pq.read_table(self.files.path(p)) for p in segments]
        # Sorted by arrival (the _order column), whatever the files' names sort as.
        merged = _first_by(pa.concat_tables(parts, promote_options="permissive"), key, "_order")
        self._cache[kind] = (frozenset(segments), merged)
        return merged

    def predictions(self) -> pa.Table | None:
        """Every landed prediction once (the first landing of a redelivered one wins)."""
        return self._read("predictions", "id")

    def feedback(self) -> pa.Table | None:
        return self._read("feedback", "event_id")

    def joined(
        self,
        predictions: pa.Table,
        join_keys: Sequence[str],
        label_kind: str,
        *,
        observed_since: int | None = None,
    ) -> tuple[pa.Table, dict[str, Any]]:
        """Predictions with their label and when it became known, and the accounting of the
        labels received (see :mod:`loopml.monitoring._join`; ``reasons`` says why labels were
        not matched). Several labels for one prediction follow ``on_conflict``."""
        fb = self.feedback()
        if fb is not None and observed_since is not None:
            # Labels of predictions made since then were observed since then: the rest of the
            # feedback cannot match (their accounting then covers these labels only).
            fb = fb.filter(pc.greater_equal(fb["observed_at"], observed_since))
        logged, keys_logged = self.logged(join_keys)
        table, stats = join_labels(
            fb if fb is not None else pa.table({}),
            logged,
            predictions,
            label_kind=label_kind,
            on_conflict=self.on_conflict,
            keys_logged=keys_logged,
        )
        out = stats.to_dict()
        out["reasons"] = stats.reasons
        return table, out

    def logged(self, join_keys: Sequence[str]) -> tuple[pa.Table, bool]:
        """The whole log as the join reads it (see :func:`prepared`), and whether every join
        key was logged; kept while no segment lands."""
        preds = self.predictions()
        if preds is None:
            empty = pa.table(
                {
                    "id": pa.array([], pa.string()),
                    "at": pa.array([], pa.int64()),
                    "pet": pa.array([], pa.int64()),
                    "pkey": pa.array([], pa.string()),
                }
            )
            return empty, True
        keys = tuple(join_keys)
        cached = self._prepared
        if cached is not None and cached[0] is preds and cached[1] == keys:
            return cached[2], cached[3]
        logged = prepared(preds, keys)
        keys_logged = bool(keys) and all(FEATURE_PREFIX + k in preds.column_names for k in keys)
        self._prepared = (preds, keys, logged, keys_logged)
        return logged, keys_logged


def _parquet_writer(table: pa.Table) -> Callable[[str], None]:
    def write(path: str) -> None:
        pq.write_table(table, path)

    return write


def _first_by(table: pa.Table, key: str, order: str) -> pa.Table:
    table = table.sort_by([(order, "ascending")])
    ids = table[key].to_numpy(zero_copy_only=False)
    _, first = np.unique(ids, return_index=True)
    if len(first) == table.num_rows:
        return table
    return table.take(pa.array(np.sort(first)))


def _order(event_id: str) -> int:
    major, minor = id_order(event_id)
    return major * 1_000_000 + minor


def _prediction_table(events: Sequence[Event]) -> tuple[pa.Table, list[dict[str, Any]]]:
    rows: list[PredictionRecord] = []
    rejected: list[dict[str, Any]] = []
    order: list[int] = []
    for e in events:
        try:
            record = PredictionRecord.decode(e.payload)
        except ValueError as exc:
            rejected.append(
                {
                    "event_id": e.id,
                    "error": str(exc),
                    "payload": e.payload.decode("utf-8", "replace")[:2000],
                }
            )
            continue
        rows.append(record)
        order.append(_order(e.id))
    if not rows:
        return pa.table({}), rejected
    outputs = [r.output for r in rows]
    multi = any(isinstance(o, list) for o in outputs)
    cols: dict[str, Any] = {
        "id": pa.array([r.id for r in rows], pa.string()),
        "at": pa.array([r.at for r in rows], pa.int64()),
        "version": pa.array([r.version for r in rows], pa.int64()),
        "mode": pa.array([r.mode for r in rows], pa.string()),
        # a shadow prediction names the served prediction it shadows (labels join to that one)
        "of": pa.array([r.of for r in rows], pa.string()),
        # an experiment's answers: which one, and the probability the arm had of being chosen
        "rollout": pa.array([r.rollout for r in rows], pa.int64()),
        "propensity": pa.array([_num(r.propensity) for r in rows], pa.float64()),
        "fallback": pa.array([r.fallback for r in rows], pa.string()),
        "latency_us": pa.array([_num(r.latency_us) for r in rows], pa.float64()),
        "_order": pa.array(order, pa.int64()),
    }
    if multi:
        cols["proba"] = pa.array(
            [o if isinstance(o, list) else None for o in outputs], pa.list_(pa.float64())
        )
        cols["score"] = pa.array(
            [max(o) if isinstance(o, list) and o else None for o in outputs], pa.float64()
        )
    else:
        cols["score"] = pa.array([_num(o) for o in outputs], pa.float64())
    names: dict[str, None] = {}
    for r in rows:
        for k in r.features:
            names.setdefault(k, None)
    for name in names:
        values = [r.features.get(name) for r in rows]
        cols[FEATURE_PREFIX + name] = _column(values)
    return pa.table(cols), rejected


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    return None


_WORDS = {"true": 1.0, "yes": 1.0, "false": 0.0, "no": 0.0}


def _label_number(v: Any) -> float | None:
    """A label as a number where it is one: numbers, booleans, and strings such as "1", "0.0",
    "true" or "no" (a CSV or a form sends them so)."""
    if isinstance(v, str):
        text = v.strip().lower()
        if text in _WORDS:
            return _WORDS[text]
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return _num(v)


def _column(values: list[Any]) -> pa.Array:
    try:
        arr = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    if pa.types.is_null(arr.type):
        return arr.cast(pa.float64())
    if pa.types.is_integer(arr.type):
        return arr.cast(pa.int64())
    if pa.types.is_nested(arr.type):
        return pa.array(
            [None if v is None else orjson.dumps(v).decode() for v in values], pa.string()
        )
    return arr


def _feedback_table(events: Sequence[Event]) -> tuple[pa.Table, list[dict[str, Any]]]:
    good: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for e in events:
        try:
            row = orjson.loads(e.payload)
            if not isinstance(row, dict) or "label" not in row:
                raise ValueError("not a feedback entry (no label)")
            row["event_id"] = e.id
            row["_order"] = _order(e.id)
            good.append(row)
        except ValueError as exc:
            rejected.append(
                {
                    "event_id": e.id,
                    "error": str(exc),
                    "payload": e.payload.decode("utf-8", "replace")[:2000],
                }
            )
    if not good:
        return pa.table({}), rejected
    labels = [r["label"] for r in good]
    table = pa.table(
        {
            "event_id": pa.array([r["event_id"] for r in good], pa.string()),
            "_order": pa.array([r["_order"] for r in good], pa.int64()),
            "prediction_id": pa.array([r.get("prediction_id") for r in good], pa.string()),
            "key": pa.array([r.get("key") for r in good], pa.string()),
            # the event's own time; payloads from before it had a name carried "time", a bound
            # on when the prediction was made, which is not read any more
            "event_time": pa.array([_int(r.get("event_time")) for r in good], pa.int64()),
            "label_num": pa.array([_label_number(v) for v in labels], pa.float64()),
            "label_str": pa.array(
                [
                    None if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
                    for v in labels
                ],
                pa.string(),
            ),
            "observed_at": pa.array([_int(r.get("observed_at")) for r in good], pa.int64()),
            "source": pa.array([r.get("source") for r in good], pa.string()),
        }
    )
    return table, rejected


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None
