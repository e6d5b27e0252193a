"""Row checks and batch checks, vectorized over whole columns.

Every check asks first whether anything is wrong (a min/max, a null count, the distinct values)
and only then builds a per-row mask, so a clean batch costs a few passes over its columns.
Findings keep, for each failing row, the check's code, the column, the offending value and a
sentence a person can read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.data._readers import ReadOutcome
from loopml.data._schema import ColumnSchema, Schema, as_numpy_mask
from loopml.spec import CheckSpec, format_duration

# code -> how a reason reads; {column}, {value} and {detail} are filled in.
MESSAGES: dict[str, str] = {
    "unparseable": "column '{column}': value {value} is not {detail}",
    "bad_encoding": "column '{column}': value {value} is not valid {detail}",
    "field_count": "{detail}",
    "bad_json": "{detail}",
    "missing_column": "column '{column}' is missing from the record",
    "null": "column '{column}' is null, and it is not nullable",
    "nan": "column '{column}': NaN is not allowed",
    "inf": "column '{column}': value {value} is not allowed",
    "out_of_range": "column '{column}': value {value} is {detail}",
    "unseen_category": "column '{column}': value {value} is not one of its {detail} categories",
    "duplicate_key": "key ({column}) = ({value}) {detail}",
    "future_timestamp": "column '{column}': {value} is later than {detail}",
    "timestamp_too_old": "column '{column}': {value} is before {detail}",
}

BATCH_MESSAGES = {
    "empty": "the file holds no rows",
    "unreadable": "the file cannot be read",
    "row_count": "row count far from recent batches",
    "null_rate": "null rate far above recent batches",
    "schema_change": "the batch does not match the schema",
}


def render(code: str, column: str | None, value: str | None, detail: str) -> str:
    return MESSAGES.get(code, "{detail}").format(
        column=column or "", value=_show(value), detail=detail
    )


def _show(value: str | None) -> str:
    if value is None:
        return "null"
    return repr(value) if len(value) <= 80 else repr(value[:77] + "...")


@dataclass
class Findings:
    """What the checks found in one batch."""

    n_rows: int
    rows: list[np.ndarray] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    columns: list[str | None] = field(default_factory=list)
    values: list[list[str | None] | None] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    batch: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        code: str,
        column: str | None,
        rows: np.ndarray,
        values: pa.Array | pa.ChunkedArray | list[str | None] | None,
        detail: str = "",
    ) -> None:
        if len(rows) == 0:
            return
        if isinstance(values, pa.Array | pa.ChunkedArray):
            text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
            values = text.to_pylist()
        self.rows.append(np.asarray(rows, dtype=np.int64))
        self.codes.append(code)
        self.columns.append(column)
        self.values.append(values)
        self.details.append(detail)

    def warn(self, code: str, column: str | None, count: int, message: str, **extra: Any) -> None:
        self.warnings.append(
            {"code": code, "column": column, "count": count, "message": message, **extra}
        )

    def fail_batch(self, code: str, column: str | None, message: str) -> None:
        self.batch.append({"code": code, "column": column, "message": message})

    def bad_rows(self) -> np.ndarray:
        if not self.rows:
            return np.empty(0, dtype=np.int64)
        return np.unique(np.concatenate(self.rows))

    def counts(self) -> list[dict[str, Any]]:
        """Failing rows per (code, column), most common first."""
        totals: dict[tuple[str, str | None], int] = {}
        for code, column, rows in zip(self.codes, self.columns, self.rows, strict=True):
            totals[(code, column)] = totals.get((code, column), 0) + len(rows)
        return [
            {"code": c, "column": col, "count": n}
            for (c, col), n in sorted(totals.items(), key=lambda kv: -kv[1])
        ]

    def reasons_for(self, rows: np.ndarray) -> list[list[dict[str, str | None]]]:
        """For each of ``rows`` (sorted), its reasons as ``{code, column, value, message}``."""
        out: list[list[dict[str, str | None]]] = [[] for _ in range(len(rows))]
        for code, column, found, values, detail in zip(
            self.codes, self.columns, self.rows, self.values, self.details, strict=True
        ):
            positions = np.searchsorted(rows, found)
            for k, pos in enumerate(positions):
                value = values[k] if values is not None else None
                out[int(pos)].append(
                    {
                        "code": code,
                        "column": column,
                        "value": value,
                        "message": render(code, column, value, detail),
                    }
                )
        return out


def _rows(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask)


def check_rows(
    outcome: ReadOutcome,
    schema: Schema,
    checks: CheckSpec,
    *,
    now: datetime,
    lake_keys: Callable[[pa.Table], list[tuple[int, str]]] | None = None,
) -> Findings:
    """Run every row check on a read batch."""
    table = outcome.table
    findings = Findings(n_rows=table.num_rows)
    excused: dict[str, np.ndarray] = {}

    for name, co in outcome.unparseable.items():
        assert co.bad is not None and co.original is not None
        rows = _rows(co.bad)
        col = schema.column(name)
        kind = col.type_name() if col else "of its type"
        findings.add("unparseable", name, rows, co.original.take(pa.array(rows)), _a(kind))
        excused[name] = co.bad
    for name, co in outcome.bad_encoding.items():
        assert co.bad is not None and co.original is not None
        rows = _rows(co.bad)
        findings.add("bad_encoding", name, rows, co.original.take(pa.array(rows)), "UTF-8")
        excused[name] = excused[name] | co.bad if name in excused else co.bad
    for name, mask in outcome.missing_fields.items():
        findings.add("missing_column", name, _rows(mask), None)
        excused[name] = excused[name] | mask if name in excused else mask

    present = set(table.column_names)  # a set: a wide file has 10,000 columns
    for col in schema.columns:
        if col.name not in present:
            continue
        arr = table.column(col.name)
        _check_nulls(findings, col, arr, excused.get(col.name))
        if arr.null_count == len(arr):
            continue
        if col.type == "float64":
            _check_floats(findings, col, arr)
        if col.type in ("int64", "float64"):
            _check_range(findings, col, arr)
        elif col.type == "string" and col.categories is not None:
            _check_categories(findings, col, arr)
        elif col.type in ("timestamp", "date"):
            _check_time(findings, col, arr, checks, now, is_event_time=col.name == schema.timestamp)

    if schema.primary_key and all(k in present for k in schema.primary_key):
        _check_duplicates(findings, table, schema, lake_keys)
    return findings


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def _check_nulls(
    findings: Findings, col: ColumnSchema, arr: pa.ChunkedArray, excused: np.ndarray | None
) -> None:
    if col.nullable or arr.null_count == 0:
        return
    mask = as_numpy_mask(pc.is_null(arr))
    if excused is not None:
        mask &= ~excused
    findings.add("null", col.name, _rows(mask), None)


def _check_floats(findings: Findings, col: ColumnSchema, arr: pa.ChunkedArray) -> None:
    nan = as_numpy_mask(pc.is_nan(arr))
    if nan.any():
        findings.add("nan", col.name, _rows(nan), None)
    inf = as_numpy_mask(pc.is_inf(arr))
    if inf.any():
        rows = _rows(inf)
        findings.add("inf", col.name, rows, arr.take(pa.array(rows)))


def _check_range(findings: Findings, col: ColumnSchema, arr: pa.ChunkedArray) -> None:
    if col.min is None and col.max is None:
        return
    values = arr
    if col.type == "float64":  # NaN and inf are reported by their own checks
        values = pc.if_else(pc.is_finite(arr), arr, pa.scalar(None, arr.type))
    mm = pc.min_max(values)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    if col.min is not None and lo is not None and lo < col.min:
        rows = _rows(as_numpy_mask(pc.less(values, col.min)))
        findings.add(
            "out_of_range",
            col.name,
            rows,
            arr.take(pa.array(rows)),
            f"below the minimum {_num(col.min)}",
        )
    if col.max is not None and hi is not None and hi > col.max:
        rows = _rows(as_numpy_mask(pc.greater(values, col.max)))
        findings.add(
            "out_of_range",
            col.name,
            rows,
            arr.take(pa.array(rows)),
            f"above the maximum {_num(col.max)}",
        )


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _check_categories(findings: Findings, col: ColumnSchema, arr: pa.ChunkedArray) -> None:
    assert col.categories is not None
    uniq = pc.unique(arr).drop_null().to_pylist()
    known = set(col.categories)
    unseen = [v for v in uniq if v not in known]
    if not unseen:
        return
    mask = as_numpy_mask(pc.is_in(arr, value_set=pa.array(unseen, type=pa.string())))
    rows = _rows(mask)
    if col.unseen == "quarantine":
        findings.add("unseen_category", col.name, rows, arr.take(pa.array(rows)), str(len(known)))
    else:
        findings.warn(
            "unseen_category",
            col.name,
            len(rows),
            f"column '{col.name}': {len(rows)} rows hold values outside its {len(known)} "
            f"categories: {', '.join(map(repr, sorted(unseen)[:10]))}"
            + (" ..." if len(unseen) > 10 else ""),
            values=sorted(unseen),
        )


def _check_time(
    findings: Findings,
    col: ColumnSchema,
    arr: pa.ChunkedArray,
    checks: CheckSpec,
    now: datetime,
    *,
    is_event_time: bool,
) -> None:
    # Compare as integers in the column's own unit: no per-value Python objects (and no pandas,
    # which pyarrow imports to turn a zoned timestamp into a datetime).
    ticks = _ticks(arr)
    mm = pc.min_max(ticks)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    if is_event_time and hi is not None:
        limit = now + checks.max_future
        bound = _epoch(limit, arr.type)
        if hi > bound:
            rows = _rows(as_numpy_mask(pc.greater(ticks, bound)))
            findings.add(
                "future_timestamp",
                col.name,
                rows,
                _time_text(arr, rows),
                f"now + {format_duration(checks.max_future)} ({limit:%Y-%m-%d %H:%M} UTC)",
            )
    if checks.not_before is not None and lo is not None:
        bound = _epoch(checks.not_before, arr.type)
        if lo < bound:
            rows = _rows(as_numpy_mask(pc.less(ticks, bound)))
            findings.add(
                "timestamp_too_old",
                col.name,
                rows,
                _time_text(arr, rows),
                f"{checks.not_before:%Y-%m-%d %H:%M} UTC (checks.not_before)",
            )


_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _ticks(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_date32(arr.type):
        return arr.cast(pa.int32()).cast(pa.int64())
    return arr.cast(pa.int64())


def _epoch(moment: datetime, t: pa.DataType) -> int:
    """``moment`` in the integer unit of a date or timestamp column (naive columns are UTC)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    seconds = aware.timestamp()
    if pa.types.is_date(t):
        return int(seconds // 86400)
    return int(seconds * _PER_SECOND[t.unit])


def _time_text(arr: pa.ChunkedArray, rows: np.ndarray) -> list[str | None]:
    picked = arr.take(pa.array(rows, type=pa.int64()))
    return pc.cast(picked, pa.string()).to_pylist()


def _check_duplicates(
    findings: Findings,
    table: pa.Table,
    schema: Schema,
    lake_keys: Callable[[pa.Table], list[tuple[int, str]]] | None,
) -> None:
    keys = schema.primary_key
    key_table = table.select(keys).append_column(
        "__row", pa.array(np.arange(table.num_rows, dtype=np.int64))
    )
    if _maybe_duplicates(key_table, keys):
        rows, _ = _duplicate_rows(key_table, keys)
        findings.add(
            "duplicate_key",
            ", ".join(keys),
            rows,
            _key_text(key_table, rows, keys),
            "repeats a row earlier in this file",
        )
    if lake_keys is not None:
        matches = lake_keys(key_table)
        if matches:
            rows = np.array([r for r, _ in matches], dtype=np.int64)
            batches = sorted({b for _, b in matches})
            findings.add(
                "duplicate_key",
                ", ".join(keys),
                rows,
                _key_text(key_table, rows, keys),
                "is already in the lake (batch "
                + ", ".join(batches[:3])
                + (" ..." if len(batches) > 3 else "")
                + ")",
            )


_MIX = np.uint64(0x9E3779B97F4A7C15)


def _maybe_duplicates(key_table: pa.Table, keys: list[str]) -> bool:
    """Whether any two rows may share a key: a 64-bit hash per row, then a distinct count.

    False is certain; True (a real duplicate or, rarely, a hash collision) is confirmed exactly
    by :func:`_duplicate_rows`.
    """
    h = np.zeros(key_table.num_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in keys:
            col = key_table.column(k)
            if (
                pa.types.is_string(col.type)
                or pa.types.is_large_string(col.type)
                or pa.types.is_binary(col.type)
            ):
                codes = pc.fill_null(pc.dictionary_encode(col).combine_chunks().indices, 0)
                values = codes.to_numpy(zero_copy_only=False).astype(np.uint64)
            elif pa.types.is_floating(col.type):
                filled = pc.fill_null(col, 0.0).combine_chunks()
                values = filled.to_numpy(zero_copy_only=False).astype(np.float64).view(np.uint64)
            else:
                filled = pc.fill_null(_ticks(col), 0).combine_chunks()
                values = filled.to_numpy(zero_copy_only=False).astype(np.uint64)
            h = (h ^ values) * _MIX
            h ^= h >> np.uint64(29)
    valid = np.ones(len(h), dtype=bool)
    for k in keys:
        if key_table.column(k).null_count:
            valid &= ~as_numpy_mask(pc.is_null(key_table.column(k)))
    h = h[valid]
    return bool(pc.count_distinct(pa.array(h)).as_py() < len(h))


def _duplicate_rows(key_table: pa.Table, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Exactly: the rows whose key repeats an earlier row's, and that earlier row."""
    cols = ", ".join(f'"{k}"' for k in keys)
    not_null = " AND ".join(f'"{k}" IS NOT NULL' for k in keys)
    con = duckdb.connect()
    try:
        con.register("batch_keys", key_table)
        dups = con.execute(
            f"""SELECT __row, first FROM (
                    SELECT __row, min(__row) OVER w AS first, row_number() OVER w AS rn
                    FROM batch_keys WHERE {not_null}
                    WINDOW w AS (PARTITION BY {cols} ORDER BY __row))
                WHERE rn > 1 ORDER BY __row"""
        ).fetchnumpy()
    finally:
        con.close()
    return np.asarray(dups["__row"], dtype=np.int64), np.asarray(dups["first"], dtype=np.int64)


def _key_text(key_table: pa.Table, rows: np.ndarray, keys: list[str]) -> list[str | None]:
    picked = key_table.take(pa.array(rows, type=pa.int64()))
    parts = [pc.cast(picked.column(k), pa.string()).to_pylist() for k in keys]
    return [", ".join(str(p) for p in vals) for vals in zip(*parts, strict=True)]
