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
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loopml.data._lake import fetch_arrow
from loopml.errors import UsageError
from loopml.features import to_micros
from loopml.storage import Event, EventLog, FileStore, id_order

GROUP = "loopml-monitor"
FEATURE_PREFIX = "f."
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)


def predictions_stream(model: str) -> str:
    return f"predictions.{model}"


def feedback_stream(model: str) -> str:
    return f"feedback.{model}"


def canonical(value: Any) -> str:
    """One spelling per key value, so that a label sent as ``"2013-03-01T06:00:00"`` finds the
    prediction whose feature holds the same time as microseconds."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if math.isfinite(value) and value == int(value) else repr(value)
    if isinstance(value, datetime | date):
        return str(to_micros(value))
    if isinstance(value, str) and _DATETIME.match(value.strip()) and len(value.strip()) > 10:
        return str(to_micros(value))
    return str(value)


def key_of(values: Sequence[Any]) -> str:
    return "\x1f".join(canonical(v) for v in values)


# ------------------------------------------------------------------------------- feedback rows


@dataclass
class FeedbackRows:
    """Feedback checked and ready to send: the payloads, and the rows refused with why."""

    payloads: list[bytes] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def check_feedback(
    rows: Iterable[Any],
    *,
    label: str,
    join_keys: Sequence[str],
    source: str,
    now: int,
) -> FeedbackRows:
    """Validate feedback rows: each names a prediction (``prediction_id``) or an event (the
    join keys, directly or under ``keys``, and optionally ``time``), and carries the label
    (under ``label`` or the model's label name). ``observed_at`` says when the label became
    known (default: now)."""
    out = FeedbackRows()
    for i, row in enumerate(rows):
        try:
            out.payloads.append(_feedback_payload(row, label, join_keys, source, now))
        except ValueError as exc:
            out.rejected.append({"row": i, "error": str(exc), "value": _preview(row)})
    return out


def _feedback_payload(
    row: Any, label: str, join_keys: Sequence[str], source: str, now: int
) -> bytes:
    if row is None:
        raise ValueError("an empty line")
    if not isinstance(row, Mapping):
        raise ValueError("a feedback row must be an object")
    if "__unreadable__" in row:
        raise ValueError(row["__unreadable__"])
    value = row.get(label, row.get("label"))
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(
            f"missing field {label!r}: the label"
            if label not in row and "label" not in row
            else f"field {label!r}: the label is null or not finite"
        )
    if isinstance(value, dict | list):
        raise ValueError(f"field {label!r}: a label must be a number, a boolean or a string")
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"field {label!r}: the label is empty")
    pid = row.get("prediction_id")
    if isinstance(pid, str) and not pid.strip():
        pid = None  # an empty cell of a CSV column: the keys, if any, say which event
    keys = row.get("keys")
    if keys is None and join_keys and all(k in row for k in join_keys):
        keys = {k: row[k] for k in join_keys}
    if pid is None and keys is None:
        need = ", ".join(join_keys) if join_keys else "keys"
        raise ValueError(f"missing field 'prediction_id' (or the event's keys: {need})")
    if pid is not None and not isinstance(pid, str):
        raise ValueError("field 'prediction_id' must be a string")
    key = None
    if keys is not None:
        if not isinstance(keys, Mapping):
            raise ValueError("field 'keys' must be an object of key columns")
        missing = [k for k in join_keys if k not in keys]
        if missing:
            raise ValueError(f"field 'keys' lacks {missing[0]!r} (keys: {', '.join(join_keys)})")
        key = key_of([keys[k] for k in join_keys] if join_keys else [keys[k] for k in sorted(keys)])
    try:
        at = to_micros(row.get("time"))
    except ValueError as exc:
        raise ValueError(f"field 'time': {exc}") from None
    try:
        observed = to_micros(row.get("observed_at")) or now
    except ValueError as exc:
        raise ValueError(f"field 'observed_at': {exc}") from None
    return orjson.dumps(
        {
            "prediction_id": pid,
            "key": key,
            "time": at,
            "label": value,
            "observed_at": observed,
            "source": source,
        }
    )


def _preview(row: Any) -> str:
    text = orjson.dumps(row, default=str).decode() if not isinstance(row, bytes) else repr(row)
    return text[:300]


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

    def __init__(self, files: FileStore, model: str) -> None:
        self.files = files
        self.model = model
        self.root = f"monitoring/{model}"
        self._cache: dict[str, tuple[frozenset[str], pa.Table | None]] = {}

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
        """Predictions with their label and when it became known (the first label received for
        a prediction wins), and the feedback's accounting."""
        fb = self.feedback()
        if fb is not None and observed_since is not None:
            # Labels of predictions made since then were observed since then: the rest of the
            # feedback cannot match (their accounting then covers these labels only).
            fb = fb.filter(pc.greater_equal(fb["observed_at"], observed_since))
        n = predictions.num_rows
        stats: dict[str, Any] = {
            "received": 0,
            "matched": 0,
            "duplicates": 0,
            "conflicting": 0,
            "unknown": 0,
            "out_of_order": 0,
            "labelled": 0,
            "pending": n,
        }
        empty_label = pa.nulls(n, pa.float64() if label_kind == "number" else pa.string())
        if fb is None or fb.num_rows == 0 or n == 0:
            return predictions.append_column("label", empty_label).append_column(
                "label_at", pa.nulls(n, pa.int64())
            ), stats
        con = duckdb.connect()
        try:
            con.register("fb", fb)
            keys = [FEATURE_PREFIX + k for k in join_keys]
            present = [k for k in keys if k in predictions.column_names]
            preds = pa.table(
                {
                    "id": predictions["id"],
                    "at": predictions["at"],
                    "pkey": _keys(predictions, present)
                    if len(present) == len(keys) and keys
                    else pa.nulls(n, pa.string()),
                }
            )
            con.register("preds", preds)
            matched = con.sql(
                """
                WITH by_id AS (
                  SELECT fb.*, fb.prediction_id AS pid FROM fb
                  WHERE fb.prediction_id IS NOT NULL
                ), keyed AS (
                  SELECT fb.*, p.id AS pid FROM fb
                  ASOF LEFT JOIN preds p
                    ON fb.key = p.pkey AND coalesce(fb.time, 9223372036854775807) >= p.at
                  WHERE fb.prediction_id IS NULL
                ), all_fb AS (
                  SELECT * FROM by_id UNION ALL SELECT * FROM keyed
                )
                SELECT a.event_id, a._order, a.pid, a.label_num, a.label_str, a.observed_at,
                       p.at AS pred_at, p.id IS NOT NULL AS known
                FROM all_fb a LEFT JOIN preds p ON a.pid = p.id
                ORDER BY a._order
                """
            )
            matched = fetch_arrow(matched)
        finally:
            con.close()
        known = matched["known"].to_numpy(zero_copy_only=False)
        stats["received"] = matched.num_rows
        stats["unknown"] = int((~known).sum())
        m = matched.filter(pa.array(known))
        pred_at = m["pred_at"].to_numpy(zero_copy_only=False).astype(np.int64)
        if len(pred_at):
            running = np.maximum.accumulate(pred_at)
            stats["out_of_order"] = int((pred_at[1:] < running[:-1]).sum())
        pid = m["pid"].to_numpy(zero_copy_only=False)
        values = (
            m["label_num"].to_numpy(zero_copy_only=False)
            if label_kind == "number"
            else m["label_str"].to_numpy(zero_copy_only=False)
        )
        first: dict[str, int] = {}
        for i, p in enumerate(pid):
            j = first.setdefault(p, i)
            if j != i:
                stats["duplicates"] += 1
                if not _same(values[i], values[j]):
                    stats["conflicting"] += 1
        stats["matched"] = len(first)
        idx = np.fromiter(first.values(), dtype=np.int64, count=len(first))
        firsts = m.take(pa.array(idx))
        lookup = pa.table(
            {
                "id": firsts["pid"],
                "label": firsts["label_num"] if label_kind == "number" else firsts["label_str"],
                "label_at": firsts["observed_at"],
            }
        )
        pos = pc.index_in(predictions["id"], value_set=lookup["id"])
        has = pc.is_valid(pos)
        take = pc.fill_null(pos, 0)
        label = pc.if_else(
            has, pc.take(lookup["label"], take), pa.scalar(None, lookup["label"].type)
        )
        label_at = pc.if_else(has, pc.take(lookup["label_at"], take), pa.scalar(None, pa.int64()))
        stats["labelled"] = int(pc.sum(has.cast(pa.int64())).as_py() or 0)
        stats["pending"] = n - stats["labelled"]
        delays = (
            pc.subtract(label_at, pc.cast(predictions["at"], pa.int64()))
            .drop_null()
            .to_numpy(zero_copy_only=False)
        )
        if len(delays):
            stats["delay_p50_s"] = float(np.percentile(delays, 50) / 1e6)
            stats["delay_p95_s"] = float(np.percentile(delays, 95) / 1e6)
        return predictions.append_column("label", label).append_column("label_at", label_at), stats


def _parquet_writer(table: pa.Table) -> Callable[[str], None]:
    def write(path: str) -> None:
        pq.write_table(table, path)

    return write


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _keys(table: pa.Table, columns: Sequence[str]) -> pa.Array:
    cols = [table[c].to_pylist() for c in columns]
    return pa.array([key_of(vals) for vals in zip(*cols, strict=True)], pa.string())


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
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    order: list[int] = []
    for e in events:
        try:
            entry = orjson.loads(e.payload)
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                raise ValueError("not a prediction entry (no id)")
            int(entry["at"])
        except (ValueError, TypeError, KeyError) as exc:
            rejected.append(
                {
                    "event_id": e.id,
                    "error": str(exc),
                    "payload": e.payload.decode("utf-8", "replace")[:2000],
                }
            )
            continue
        rows.append(entry)
        order.append(_order(e.id))
    if not rows:
        return pa.table({}), rejected
    outputs = [r.get("output") for r in rows]
    multi = any(isinstance(o, list) for o in outputs)
    cols: dict[str, Any] = {
        "id": pa.array([r["id"] for r in rows], pa.string()),
        "at": pa.array([int(r["at"]) for r in rows], pa.int64()),
        "version": pa.array([r.get("version") for r in rows], pa.int64()),
        "mode": pa.array([r.get("mode") for r in rows], pa.string()),
        # a shadow prediction names the served prediction it shadows (labels join to that one)
        "of": pa.array([r.get("of") for r in rows], pa.string()),
        # an experiment's answers: which one, and the probability the arm had of being chosen
        "rollout": pa.array([r.get("rollout") for r in rows], pa.int64()),
        "propensity": pa.array([_num(r.get("propensity")) for r in rows], pa.float64()),
        "fallback": pa.array([r.get("fallback") for r in rows], pa.string()),
        "latency_us": pa.array([_num(r.get("latency_us")) for r in rows], pa.float64()),
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
        for k in r.get("features") or {}:
            names.setdefault(k, None)
    for name in names:
        values = [(r.get("features") or {}).get(name) for r in rows]
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
            "time": pa.array([r.get("time") for r in good], pa.int64()),
            "label_num": pa.array([_label_number(v) for v in labels], pa.float64()),
            "label_str": pa.array(
                [
                    None if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
                    for v in labels
                ],
                pa.string(),
            ),
            "observed_at": pa.array([r.get("observed_at") for r in good], pa.int64()),
            "source": pa.array([r.get("source") for r in good], pa.string()),
        }
    )
    return table, rejected


def require_rows(rows: Any) -> list[Any]:
    if isinstance(rows, Mapping) and "rows" in rows:
        rows = rows["rows"]
    elif isinstance(rows, Mapping):
        rows = [rows]
    if not isinstance(rows, list) or not rows:
        raise UsageError(
            'send a feedback row, a JSON list of them, or {"rows": [...]}',
            details={"field": "rows"},
        )
    return rows
