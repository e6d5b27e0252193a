"""A source's schema: inferred from its first batch, versioned, and evolved only when accepted."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from loopml.errors import DataError
from loopml.spec import ColumnSpec, Role, SchemaPolicy, SourceSpec, UnseenPolicy

TimeUnit = Literal["s", "ms", "us", "ns"]
# The spec's logical types, and "null": a column that has held no value yet. It takes the type
# of its first values when they arrive (a lossless change), instead of becoming text.
ColumnType = Literal["int64", "float64", "bool", "string", "timestamp", "date", "null"]

# Each type can be widened to the ones after it on its line.
_WIDENING: tuple[tuple[str, ...], ...] = (
    ("bool", "int64", "float64", "string"),
    ("date", "timestamp", "string"),
)


class ColumnSchema(BaseModel):
    """One column: its type and what values it may hold."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: ColumnType
    unit: TimeUnit | None = None
    tz: str | None = None
    role: Role | None = None
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    unseen: UnseenPolicy = "warn"
    observed: dict[str, Any] = Field(
        default_factory=dict, description="What the first batch showed (min, max, distinct)."
    )

    @property
    def arrow_type(self) -> pa.DataType:
        return to_arrow(self.type, self.unit, self.tz)

    def type_name(self) -> str:
        if self.type == "timestamp":
            return f"timestamp[{self.unit or 'us'}{', ' + self.tz if self.tz else ''}]"
        return self.type


class Schema(BaseModel):
    """The columns of a source, in file order, plus its event-time and key columns."""

    model_config = ConfigDict(extra="forbid")

    columns: list[ColumnSchema]
    timestamp: str | None = None
    primary_key: list[str] = Field(default_factory=list)
    # Built from loopml.yaml's declarations alone, before any data (never stored).
    _declared_only: bool = PrivateAttr(False)
    # name -> column, so that a lookup per column of a wide file stays linear; rebuilt when the
    # list is replaced or grows (columns are appended, never renamed).
    _index: tuple[int, int, dict[str, ColumnSchema]] | None = PrivateAttr(None)

    @property
    def declared_only(self) -> bool:
        return self._declared_only

    def column(self, name: str) -> ColumnSchema | None:
        key = (id(self.columns), len(self.columns))
        if self._index is None or self._index[:2] != key:
            by_name: dict[str, ColumnSchema] = {}
            for c in self.columns:
                by_name.setdefault(c.name, c)  # the first of a name, as a scan would find
            self._index = (*key, by_name)
        return self._index[2].get(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns]
        )


class SchemaChange(BaseModel):
    """One difference between a batch and the active schema."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal[
        "new_column", "widen_type", "missing_column", "nullable", "new_categories", "typed"
    ]
    column: str
    old: str | None = None
    new: str | None = None

    def describe(self) -> str:
        match self.kind:
            case "new_column":
                return f"new column '{self.column}' ({self.new})"
            case "widen_type":
                return f"column '{self.column}' widened from {self.old} to {self.new}"
            case "missing_column":
                return f"required column '{self.column}' is missing from the batch"
            case "nullable":
                return f"column '{self.column}' becomes nullable"
            case "new_categories":
                return f"column '{self.column}' gains categories {self.new}"
            case "typed":
                return f"column '{self.column}' typed {self.new} by its first values"
        return self.kind  # pragma: no cover


def to_arrow(type_: str, unit: str | None = None, tz: str | None = None) -> pa.DataType:
    """The Arrow type of a logical type."""
    match type_:
        case "int64":
            return pa.int64()
        case "float64":
            return pa.float64()
        case "bool":
            return pa.bool_()
        case "string":
            return pa.string()
        case "timestamp":
            return pa.timestamp(unit or "us", tz=tz)
        case "date":
            return pa.date32()
        case "null":
            return pa.null()
    raise DataError(f"unknown logical type {type_!r}")


def from_arrow(t: pa.DataType, column: str) -> tuple[ColumnType, TimeUnit | None, str | None]:
    """The logical type of an Arrow type; nested types are refused with the column named."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_null(t):
        return "null", None, None
    if pa.types.is_boolean(t):
        return "bool", None, None
    if pa.types.is_integer(t):
        return "int64", None, None
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float64", None, None
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string", None, None
    if pa.types.is_timestamp(t):
        return "timestamp", t.unit, t.tz
    if pa.types.is_date(t):
        return "date", None, None
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "string", None, None
    raise DataError(
        f"column '{column}' has type {t}, which loopml does not ingest yet; "
        "flatten nested values or store them as JSON text",
        details={"column": column, "type": str(t)},
    )


def widen(a: str, b: str) -> str | None:
    """The narrowest type both ``a`` and ``b`` fit in, or None (then only string fits both)."""
    if a == b:
        return a
    if "null" in (a, b):  # an untyped column takes the other's type
        return b if a == "null" else a
    for line in _WIDENING:
        if a in line and b in line:
            return line[max(line.index(a), line.index(b))]
    return "string"


def apply_declarations(schema: Schema, policy: SchemaPolicy) -> Schema:
    """The schema with the spec's column declarations laid over it (declarations win)."""
    out = schema.model_copy(deep=True)
    for col in out.columns:
        decl = policy.columns.get(col.name)
        if decl is None:
            continue
        if decl.type is not None and decl.type != col.type:
            col.type = decl.type
            if decl.type == "timestamp":
                col.unit, col.tz = col.unit or "us", col.tz or "UTC"
            else:
                col.unit = col.tz = None
        if decl.role is not None:
            # An identifier grows without bound: whatever was inferred of its domain goes.
            col.role = decl.role
            col.categories = None
            col.min = col.max = None
        if decl.nullable is not None:
            col.nullable = decl.nullable
        if decl.min is not None:
            col.min = decl.min
        if decl.max is not None:
            col.max = decl.max
        if decl.categories == "open":
            col.categories = None
        elif decl.categories is not None:
            col.categories = sorted(set(decl.categories))
        if decl.unseen is not None:
            col.unseen = decl.unseen
    return out


def declared_schema(spec: SourceSpec) -> Schema | None:
    """A source's schema from loopml.yaml alone (the columns whose type it declares, and its
    event-time column), for a source no data has reached yet; None when it declares no type."""
    decls = {n: d for n, d in spec.schema_.columns.items() if d.type is not None}
    if not decls:
        return None
    if spec.timestamp and spec.timestamp not in decls:
        decls[spec.timestamp] = spec.schema_.columns.get(spec.timestamp) or ColumnSpec(
            type="timestamp"
        )
        decls[spec.timestamp] = decls[spec.timestamp].model_copy(update={"type": "timestamp"})
    columns = []
    key = set(spec.primary_key) | ({spec.timestamp} if spec.timestamp else set())
    for name, decl in decls.items():
        assert decl.type is not None
        col = ColumnSchema(name=name, type=decl.type, nullable=name not in key)
        if decl.type == "timestamp":
            col.unit, col.tz = "us", "UTC"
        columns.append(col)
    schema = Schema(
        columns=columns,
        timestamp=spec.timestamp,
        primary_key=[k for k in spec.primary_key if k in decls],
    )
    schema = apply_declarations(schema, spec.schema_)
    schema._declared_only = True
    return schema


def apply_changes(
    schema: Schema, changes: list[SchemaChange], table_types: dict[str, Any]
) -> Schema:
    """The schema after ``changes`` (new columns take their types from ``table_types``)."""
    out = schema.model_copy(deep=True)
    for ch in changes:
        col = out.column(ch.column)
        if ch.kind == "new_column" and col is None:
            type_, unit, tz = table_types[ch.column]
            out.columns.append(
                ColumnSchema(name=ch.column, type=type_, unit=unit, tz=tz, nullable=True)
            )
        elif col is None:
            continue
        elif ch.kind in ("widen_type", "typed") and ch.new:
            col.type = ch.new  # type: ignore[assignment]
            if ch.kind == "typed" and ch.column in table_types:
                # The first values' own unit and zone, as a new column would get them.
                _, col.unit, col.tz = table_types[ch.column]
                continue
            if col.type in ("string",):
                col.min = col.max = None
            if col.type != "timestamp":
                col.unit = col.tz = None
            else:
                col.unit, col.tz = col.unit or "us", col.tz or "UTC"
        elif ch.kind in ("nullable", "missing_column"):
            col.nullable = True
        elif ch.kind == "new_categories" and col.categories is not None and ch.new:
            col.categories = sorted(set(col.categories) | set(ch.new.split("|")))
    return out


def merge_changes(a: list[SchemaChange], b: list[SchemaChange]) -> list[SchemaChange]:
    """Two change lists as one: wider types win, categories are united."""
    merged: dict[tuple[str, str], SchemaChange] = {(c.kind, c.column): c for c in a}
    for ch in b:
        prev = merged.get((ch.kind, ch.column))
        if prev is None:
            merged[(ch.kind, ch.column)] = ch
        elif ch.kind == "widen_type" and prev.new and ch.new:
            merged[(ch.kind, ch.column)] = prev.model_copy(update={"new": widen(prev.new, ch.new)})
        elif ch.kind == "new_categories":
            values = sorted(
                set((prev.new or "").split("|")) | set((ch.new or "").split("|")) - {""}
            )
            merged[(ch.kind, ch.column)] = prev.model_copy(update={"new": "|".join(values)})
    return list(merged.values())


def schema_diff(old: Schema, new: Schema) -> list[dict[str, Any]]:
    """Column-by-column differences between two schemas, for `loopml schema diff`."""
    rows: list[dict[str, Any]] = []
    for col in new.columns:
        prev = old.column(col.name)
        if prev is None:
            rows.append(
                {"column": col.name, "change": "added", "old": None, "new": col.type_name()}
            )
            continue
        for field in ("type", "nullable", "min", "max", "unseen"):
            a, b = getattr(prev, field), getattr(col, field)
            if field == "type":
                a, b = prev.type_name(), col.type_name()
            if a != b:
                rows.append({"column": col.name, "change": field, "old": a, "new": b})
        if prev.categories != col.categories:
            added = sorted(set(col.categories or []) - set(prev.categories or []))
            removed = sorted(set(prev.categories or []) - set(col.categories or []))
            rows.append({"column": col.name, "change": "categories", "old": removed, "new": added})
    for col in old.columns:
        if new.column(col.name) is None:
            rows.append(
                {"column": col.name, "change": "removed", "old": col.type_name(), "new": None}
            )
    return rows


def null_counts(table: pa.Table) -> dict[str, int]:
    return {name: int(table.column(name).null_count) for name in table.column_names}


def as_numpy_mask(mask: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean Arrow mask as a numpy array, nulls counted as False."""
    filled = pc.fill_null(mask, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)
