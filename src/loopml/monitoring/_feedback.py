"""The feedback format: one reader and one checker for every way labels come in (``POST
/feedback``, ``loopml feedback FILE``, natural labels, replays).

A feedback row says which prediction it labels and what the label is::

    prediction_id   the id the prediction was answered with; or, for labels by keys,
    <join keys>     the event's keys by name (default: the event source's primary key), at the
                    top level or under "keys"
    event_time      the event's own time (the event's time column, by its own name, too): it only
                    picks the prediction of that event among those with the same keys; it is
                    never compared with when the prediction was made, so a prediction served
                    late, replayed or backfilled still matches
    <label>         the label, under the model's label name or "label", checked against the
                    model's task and classes (see ``_labels``)
    observed_at     when the label became known (default: when it is received)

``time`` is refused: it meant a bound on the prediction's time before, and would be read as the
event time by some and as the label's time by others. Rows come as a JSON array (or
``{"rows": [...]}``, or one object), JSON Lines or CSV (files: also Parquet); a refused row is
named by its line (or its index in a JSON array) with the reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from loopml.errors import ReadError, UsageError
from loopml.features import to_micros
from loopml.monitoring._labels import LabelDomain

EVENT_TIME = "event_time"
TIME_TEXT = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)
FORMATS = ("json", "jsonl", "csv", "parquet")


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
    if isinstance(value, str) and looks_like_time(value):
        return str(to_micros(value))
    return str(value)


def looks_like_time(text: str) -> bool:
    text = text.strip()
    return len(text) > 10 and TIME_TEXT.match(text) is not None


def key_of(values: Sequence[Any]) -> str:
    return "\x1f".join(canonical(v) for v in values)


# ------------------------------------------------------------------------------------ reading


@dataclass
class FeedbackInput:
    """Rows read from a body or a file, and how to name each one in a message: by its line
    (``first_line`` is the line of row 0; blank lines are kept as ``None`` rows so that numbers
    stay line numbers) or, for a JSON array, by its index (``first_line`` is None)."""

    rows: list[Any]
    format: str
    first_line: int | None = None

    def where(self, i: int) -> dict[str, int]:
        return {"row": i} if self.first_line is None else {"line": i + self.first_line}


def parse_feedback(data: bytes, *, format: str | None = None) -> FeedbackInput:
    """Feedback rows from bytes: ``format`` json, jsonl or csv, or sniffed (a JSON document, or
    JSON Lines when the body is several lines of JSON). A :class:`ReadError` says why the whole
    body cannot be read; rows that are read but wrong are refused one by one later."""
    if format is not None and format not in FORMATS:
        raise UsageError(f"unknown feedback format {format!r}: use json, jsonl or csv")
    if format == "csv":
        return _csv(data)
    if format == "jsonl":
        return FeedbackInput(_json_lines(data), "jsonl", 1)
    if format == "parquet":
        import io

        import pyarrow.parquet as pq

        try:
            return FeedbackInput(pq.read_table(io.BytesIO(data)).to_pylist(), "parquet", 1)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ReadError(
                f"the feedback is not Parquet: {exc}", details={"format": "parquet"}
            ) from None
    if not data.strip():
        raise ReadError(
            "the feedback is empty: send a JSON array of label rows", details={"format": "json"}
        )
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        lines = [line for line in data.splitlines() if line.strip()]
        if format is None and len(lines) > 1 and _is_json(lines[0]):
            return FeedbackInput(_json_lines(data), "jsonl", 1)
        raise ReadError(
            f"the feedback is not valid JSON: {exc}", details={"format": "json"}
        ) from None
    if isinstance(document, Mapping) and "rows" in document:
        document = document["rows"]
    elif isinstance(document, Mapping):
        document = [document]
    if not isinstance(document, list) or not document:
        raise UsageError(
            'send a feedback row, a JSON array of them, {"rows": [...]}, JSON Lines or CSV',
            details={"field": "rows"},
        )
    return FeedbackInput(document, "json")


def read_feedback(path: Path) -> FeedbackInput:
    """Feedback rows from a file: .csv (.csv.gz), .jsonl/.ndjson, .json (an array, an object, or
    JSON Lines) or .parquet."""
    if not path.exists():
        raise UsageError(f"{path}: no such file", details={"file": str(path)})
    name = path.name.lower()
    if name.endswith(".parquet"):
        kind = "parquet"
    elif name.endswith((".csv", ".csv.gz")):
        kind = "csv"
    elif name.endswith((".jsonl", ".ndjson")):
        kind = "jsonl"
    elif name.endswith(".json"):
        kind = None
    else:
        raise UsageError(
            f"{path}: unknown format; feedback files are .csv, .csv.gz, .json, .jsonl or .parquet",
            details={"file": str(path)},
        )
    try:
        data = path.read_bytes()
        if name.endswith(".gz"):
            from loopml.data import InflateLimit, inflate
            from loopml.spec import GzipSpec

            try:  # within the bounds of an ingested gzip file: a small file may hold gigabytes
                data = inflate(data, GzipSpec()).to_pybytes()
            except (InflateLimit, OSError) as exc:
                raise ReadError(str(exc)) from None
        return parse_feedback(data, format=kind)
    except (ReadError, UsageError) as exc:
        raise type(exc)(
            f"{path}: {exc.message}", details={**exc.details, "file": str(path)}
        ) from None
    except OSError as exc:
        raise ReadError(f"{path}: cannot read it: {exc}", details={"file": str(path)}) from None


def _is_json(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def _json_lines(data: bytes) -> list[Any]:
    rows: list[Any] = []
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            rows.append(None)  # kept so that row numbers stay line numbers
            continue
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            rows.append({"__unreadable__": f"line {n} is not JSON: {exc}"})
    while rows and rows[-1] is None:
        rows.pop()  # a trailing newline or two is not a row
    return rows


def _csv(data: bytes) -> FeedbackInput:
    import io

    import pyarrow.csv as pcsv

    try:
        table = pcsv.read_csv(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ReadError(f"the feedback is not CSV: {exc}", details={"format": "csv"}) from None
    return FeedbackInput(table.to_pylist(), "csv", 2)


# ----------------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class FeedbackSchema:
    """What a feedback row of one model must hold."""

    label: str  # the model's label name ("label" is accepted too)
    join_keys: tuple[str, ...]
    domain: LabelDomain
    event_time_column: str | None = None  # the event's time column, read as event_time


@dataclass
class FeedbackRows:
    """Feedback checked and ready to send: the payloads, and the rows refused with why."""

    payloads: list[bytes] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def check_feedback(
    rows: Iterable[Any], schema: FeedbackSchema, *, source: str, now: int
) -> FeedbackRows:
    """Check feedback rows against the format and the model's labels; refused rows come back
    with their index (``row``), the reason and a preview of the row."""
    out = FeedbackRows()
    for i, row in enumerate(rows):
        try:
            out.payloads.append(orjson.dumps(_payload(row, schema, source, now)))
        except ValueError as exc:
            out.rejected.append({"row": i, "error": str(exc), "value": _preview(row)})
    return out


def _payload(row: Any, schema: FeedbackSchema, source: str, now: int) -> dict[str, Any]:
    if row is None:
        raise ValueError("an empty line")
    if not isinstance(row, Mapping):
        raise ValueError("a feedback row must be an object")
    if "__unreadable__" in row:
        raise ValueError(row["__unreadable__"])
    label = _label(row, schema)
    pid = row.get("prediction_id")
    if isinstance(pid, str) and not pid.strip():
        pid = None  # an empty cell of a CSV column: the keys, if any, say which event
    if pid is not None and not isinstance(pid, str):
        raise ValueError("field 'prediction_id' must be a string")
    keys = _keys(row, schema) if pid is None else None
    if pid is None and keys is None:
        need = ", ".join(schema.join_keys) if schema.join_keys else "keys"
        raise ValueError(f"missing field 'prediction_id' (or the event's keys: {need})")
    return {
        "prediction_id": pid,
        "key": keys,
        EVENT_TIME: _event_time(row, schema),
        "label": label,
        "observed_at": _time(row, "observed_at") or now,
        "source": source,
    }


def _label(row: Mapping[str, Any], schema: FeedbackSchema) -> Any:
    names = [n for n in dict.fromkeys((schema.label, "label")) if n in row]
    if not names:
        raise ValueError(f"missing field {schema.label!r}: the label")
    values = [row[n] for n in names]
    if len(values) == 2 and None not in values and values[0] != values[1]:
        raise ValueError(
            f"fields {schema.label!r} and 'label' disagree ({values[0]!r}, {values[1]!r}): "
            "send the label once"
        )
    value = next((v for v in values if v is not None), None)
    name = names[0]
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"field {name!r}: the label is null or not finite")
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"field {name!r}: the label is empty")
    if isinstance(value, dict | list):
        raise ValueError(f"field {name!r}: a label must be a number, a boolean or a string")
    try:
        return schema.domain.read(value)
    except ValueError as exc:
        raise ValueError(f"field {name!r}: {exc}") from None


def _keys(row: Mapping[str, Any], schema: FeedbackSchema) -> str | None:
    keys = row.get("keys")
    join = schema.join_keys
    # A key that is the event's time may come as `event_time`: the row names its event once.
    time_key = schema.event_time_column if schema.event_time_column in join else None
    if keys is None and join and all(k in row or k == time_key for k in join):
        keys = {k: row[k] for k in join if k in row}
    if keys is None:
        return None
    if not isinstance(keys, Mapping):
        raise ValueError("field 'keys' must be an object of key columns")
    if not join:
        raise ValueError(
            "labels by keys need the event's keys named: set monitoring.join_keys or the "
            "event source's primary_key, or send prediction_id"
        )
    if time_key is not None and time_key not in keys and row.get(EVENT_TIME) is not None:
        keys = {**keys, time_key: row[EVENT_TIME]}
    missing = [k for k in join if k not in keys]
    if missing:
        also = f" (or {EVENT_TIME!r})" if missing[0] == time_key else ""
        where = "field 'keys' lacks" if "keys" in row else "missing field"
        raise ValueError(f"{where} {missing[0]!r}{also} (keys: {', '.join(join)})")
    try:
        return key_of([keys[k] for k in join])
    except ValueError as exc:
        raise ValueError(f"field 'keys': {exc}") from None


def _event_time(row: Mapping[str, Any], schema: FeedbackSchema) -> int | None:
    if "time" in row and "time" not in schema.join_keys and schema.event_time_column != "time":
        raise ValueError(
            "field 'time' is ambiguous: send the event's own time as 'event_time' (it only "
            "picks the prediction of that event) or when the label became known as "
            "'observed_at'"
        )
    at = _time(row, EVENT_TIME)
    column = schema.event_time_column
    if column and column != EVENT_TIME and row.get(column) is not None:
        other = _time(row, column)
        if at is not None and other != at:
            raise ValueError(
                f"fields {EVENT_TIME!r} and {column!r} (the event's time) disagree: send one"
            )
        at = other
    return at


def _time(row: Mapping[str, Any], name: str) -> int | None:
    value = row.get(name)
    if isinstance(value, str) and not value.strip():
        return None
    try:
        return to_micros(value)
    except ValueError as exc:
        raise ValueError(f"field {name!r}: {exc}") from None


def _preview(row: Any) -> str:
    text = orjson.dumps(row, default=str).decode() if not isinstance(row, bytes) else repr(row)
    return text[:300]
