"""What a batch asks of its source's schema.

A batch is compared with the active schema (:func:`changes_of`). A lossless change (an empty
column's first type; with ``schema.widen_numbers``, a numeric widening) is applied on ingest;
the others hold the batch or, for what was only warned about (:func:`proposals`: unseen
categories, nulls in an inferred non-nullable column), let it land. Either way the changes are
merged into the source's one pending proposal (:func:`propose`), which waits for
``loopml schema accept``.
"""

from __future__ import annotations

from typing import Any

from loopml.data import _catalog as cat
from loopml.data._checks import Findings
from loopml.data._readers import ReadOutcome
from loopml.data._schema import Schema, SchemaChange, apply_changes, merge_changes
from loopml.spec import SchemaPolicy


def is_lossless(change: SchemaChange, policy: SchemaPolicy) -> bool:
    """A change that alters no value landed so far: an untyped column's first type, or (with
    ``schema.widen_numbers``) a numeric widening."""
    if change.kind == "typed":
        return True
    return (
        policy.widen_numbers
        and change.kind == "widen_type"
        and (change.old, change.new)
        in (("bool", "int64"), ("bool", "float64"), ("int64", "float64"))
    )


def changes_of(outcome: ReadOutcome, schema: Schema) -> list[SchemaChange]:
    """How the batch read as ``outcome`` differs from ``schema``: new columns, empty columns
    typed, widened types, and non-nullable columns it lacks."""
    changes: list[SchemaChange] = []
    for name, (type_, unit, tz) in outcome.new_columns.items():
        shown = f"timestamp[{unit}{', ' + tz if tz else ''}]" if type_ == "timestamp" else type_
        changes.append(SchemaChange(kind="new_column", column=name, new=shown))
    for name, (type_, _, _) in outcome.typed.items():
        changes.append(SchemaChange(kind="typed", column=name, old="null", new=type_))
    for name, wider in outcome.widened.items():
        col = schema.column(name)
        assert col is not None
        changes.append(SchemaChange(kind="widen_type", column=name, old=col.type, new=wider))
    for name in outcome.absent_columns:
        col = schema.column(name)
        if col is not None and not col.nullable:
            changes.append(SchemaChange(kind="missing_column", column=name))
    return changes


def proposals(findings: Findings, schema: Schema, policy: SchemaPolicy) -> list[SchemaChange]:
    """What the data asks of the schema without holding the batch: unseen categories that were
    only warned about, and nulls in a column that was inferred (not declared) non-nullable."""
    out = []
    for w in findings.warnings:
        if w["code"] == "unseen_category" and w.get("values"):
            out.append(
                SchemaChange(kind="new_categories", column=w["column"], new="|".join(w["values"]))
            )
    keys = set(schema.primary_key) | ({schema.timestamp} if schema.timestamp else set())
    for code, column in zip(findings.codes, findings.columns, strict=True):
        decl = policy.columns.get(column or "")
        if code == "null" and column not in keys and (decl is None or decl.nullable is None):
            out.append(SchemaChange(kind="nullable", column=column or ""))
    return out


def propose(
    conn: Any,
    source: str,
    stored: Schema,
    changes: list[SchemaChange],
    *,
    by: str,
    file: str,
) -> None:
    """Merge ``changes`` into ``source``'s pending proposal (in the caller's transaction)."""
    pending = cat.proposed_schema(conn, source)
    merged = merge_changes(pending.changes, changes) if pending else changes
    # New columns take their types from the change text; build the proposal from the stored schema.
    types = {c.column: _parse_type(c.new or "string") for c in merged if c.kind == "new_column"}
    proposed = apply_changes(stored, merged, types)
    cat.replace_proposal(conn, source, proposed, merged, by=by, note=f"proposed by {file}")


def _parse_type(shown: str) -> tuple[Any, Any, Any]:
    if shown.startswith("timestamp["):
        inner = shown[len("timestamp[") : -1].split(", ")
        return "timestamp", inner[0], inner[1] if len(inner) > 1 else None
    return shown, None, None
