"""Inferring a source's schema from its first batch, claiming only what the batch shows.

One file is weak evidence about the next, so inference errs towards what cannot quarantine real
data later:

- *Nulls* are allowed in every column but the event time and the primary key. No null in the
  first n rows bounds a column's null rate by about 3/n (the rule of three); it does not show the
  rate is zero, and a wrongly inferred constraint would quarantine every later real gap. A
  column that suddenly fills with nulls is still caught, by the batch check
  ``checks.null_rate_increase``; ``nullable: false`` declares a constraint.
- *Identifiers* (``role: id``) are recognized by their name (``id``, ``customer_id``, ``userId``,
  ``name``, ``email``, ...; an unnamed first column is a row number) or by their values (text
  with one distinct value per row, consecutive integers); a source's entity keys (a team, a
  customer) are identifiers too. They get no categories and no range: new ids are the normal
  case.
- *Categories* are inferred only for text that shows a closed domain: at most
  ``max_categories`` values, each seen at least ``min_rows_per_category`` times, and no value
  first seen in the later half of the batch (in event-time order when there is one). Otherwise
  the column is plain text and the reason is kept in ``observed["categories"]``. A column that
  declares ``unseen:`` but no list declares its domain closed: the first batch's values are it.
- A column that holds *no value at all* stays untyped (``null``) and takes the type of its first
  values in a later batch.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.data._schema import ColumnSchema, Schema, apply_declarations, from_arrow
from loopml.spec import SchemaPolicy

_ID_WORDS = {"id", "ids", "uuid", "guid", "key", "name", "email", "phone", "url", "username"}
_ROW_NUMBER = re.compile(r"^(|unnamed(: ?\d+)?|index|row|rownum|row_number|\.\.\.1)$", re.I)
_MIN_ROWS_FOR_VALUES = 20  # fewer rows say nothing about uniqueness


def name_words(name: str) -> list[str]:
    """A column name's words, lower case: ``playerId`` and ``player_id`` give player, id."""
    words: list[str] = []
    for part in re.split(r"[^A-Za-z0-9]+", name):
        words += re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", part)
    return [w.lower() for w in words]


def identifier_by_name(name: str) -> bool:
    """Whether a column's name says it identifies something (an id, a key, a name, a row)."""
    if _ROW_NUMBER.match(name.strip()):
        return True
    words = name_words(name)
    return bool(words) and words[-1] in _ID_WORDS


def infer_schema(
    table: pa.Table,
    *,
    policy: SchemaPolicy,
    timestamp: str | None = None,
    primary_key: list[str] | None = None,
    entity_keys: list[str] | None = None,
) -> Schema:
    """Infer a schema from a first batch (see the module's docstring for the rules), then lay
    the spec's declarations over it.

    Numbers get magnitude bounds: values may grow to ``policy.range_margin`` times the largest
    magnitude seen, with either sign.
    """
    key = set(primary_key or [])
    # An entity key names the things rows are about (a team, a customer): new ones keep
    # arriving, so it is an identifier whatever one batch shows, never a closed category.
    entities = set(entity_keys or [])
    if timestamp:
        key.add(timestamp)
    ordered: list[pa.Array] = []  # rows in event-time order, found once when first needed
    timed = bool(timestamp) and timestamp in table.column_names

    def in_time_order(arr: pa.ChunkedArray) -> pa.ChunkedArray:
        if not timed:
            return arr
        if not ordered:
            ordered.append(pc.sort_indices(table.column(timestamp)))
        return arr.take(ordered[0])

    columns = []
    for name in table.column_names:
        arr = table.column(name)
        type_, unit, tz = from_arrow(arr.type, name)
        col = ColumnSchema(name=name, type=type_, unit=unit, tz=tz, unseen=policy.unseen_categories)
        col.nullable = name not in key
        non_null = len(arr) - arr.null_count
        if non_null == 0:
            col.observed["values"] = 0
            columns.append(col)
            continue
        text = type_ == "string" and pa.types.is_string(arr.type)
        if text:
            col.observed["distinct"] = pc.count_distinct(arr).as_py()
        if type_ in ("int64", "string") and (
            name in entities or _is_identifier(name, arr, col.observed.get("distinct"))
        ):
            col.role = "id"
        if type_ in ("int64", "float64"):
            _infer_range(col, arr, policy)
        elif text and col.role is None:
            if col.observed["distinct"] > policy.max_categories:
                col.observed["categories"] = (
                    f"not inferred: {col.observed['distinct']} values, more than "
                    f"schema.max_categories ({policy.max_categories})"
                )
            else:
                _infer_categories(col, in_time_order(arr), policy)
        elif type_ in ("timestamp", "date"):
            mm = pc.min_max(arr)  # as text: a zoned timestamp's as_py() would import pandas
            col.observed["min"] = pc.cast(mm["min"], pa.string()).as_py()
            col.observed["max"] = pc.cast(mm["max"], pa.string()).as_py()
        columns.append(col)
    schema = Schema(columns=columns, timestamp=timestamp, primary_key=list(primary_key or []))
    return apply_declarations(schema, policy)


def _is_identifier(name: str, arr: pa.ChunkedArray, distinct: int | None) -> bool:
    if identifier_by_name(name):
        return True
    n = len(arr) - arr.null_count
    if n < _MIN_ROWS_FOR_VALUES:
        return False
    if distinct is not None:
        # Text with one value per row (or nearly): ticket numbers, e-mails, free text.
        return distinct >= 0.9 * n
    mm = pc.min_max(arr)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    # Consecutive integers, each once: a row number (the span is checked first: it is cheap).
    return hi - lo + 1 == n and pc.count_distinct(arr).as_py() == n


def _infer_range(col: ColumnSchema, arr: pa.ChunkedArray, policy: SchemaPolicy) -> None:
    values = arr
    if pa.types.is_floating(arr.type):
        values = pc.filter(arr, pc.invert(pc.or_(pc.is_nan(arr), pc.is_inf(arr))))
    mm = pc.min_max(values)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    if lo is None or hi is None:
        return
    col.observed["min"], col.observed["max"] = lo, hi
    if not policy.infer_ranges or col.role == "id":
        return
    # Only magnitude is inferred: the sign or the span of one batch says little about the next
    # (a first week of winter has no negative dew points yet). Declare min/max for more.
    magnitude = max(abs(lo), abs(hi), 1.0) * policy.range_margin
    col.min, col.max = -float(magnitude), float(magnitude)


def _infer_categories(col: ColumnSchema, arr: pa.ChunkedArray, policy: SchemaPolicy) -> None:
    """Categories when the batch shows a closed domain; else the reason, in ``observed``."""
    distinct = col.observed["distinct"]
    encoded = pc.dictionary_encode(arr.combine_chunks())
    decl = policy.columns.get(col.name)
    if decl is not None and decl.unseen is not None and decl.categories is None:
        # `unseen:` declared without a list: the user says the domain is closed; the first
        # batch's values are the list.
        col.categories = sorted(encoded.dictionary.to_pylist())
        col.observed["categories"] = "the first batch's values (unseen is declared)"
        return
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    valid = np.asarray(pc.is_valid(encoded.indices).to_numpy(zero_copy_only=False), dtype=bool)
    codes = codes[valid].astype(np.int64)
    counts = np.bincount(codes, minlength=len(encoded.dictionary))
    rare = int((counts < policy.min_rows_per_category).sum())
    if rare:
        col.observed["categories"] = (
            f"not inferred: {rare} of {distinct} values seen fewer than "
            f"{policy.min_rows_per_category} times (schema.min_rows_per_category)"
        )
        return
    early = np.bincount(codes[: len(codes) // 2], minlength=len(counts)) > 0
    late = int((~early & (counts > 0)).sum())
    if late:
        col.observed["categories"] = (
            f"not inferred: {late} of {distinct} values first appear in the later half of the "
            "batch (new values keep arriving)"
        )
        return
    col.categories = sorted(encoded.dictionary.to_pylist())
