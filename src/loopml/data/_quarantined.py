"""The record of quarantined rows: one Parquet table per batch with, for each row, where it was
(file, line, record number), every reason it failed, and its original text to fix and release."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from loopml.data._checks import Findings, render
from loopml.data._readers import ReadOutcome, Rejected

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("row", pa.int64()),
        pa.field("line", pa.int64()),
        pa.field("file", pa.string()),
        pa.field(
            "reasons",
            pa.list_(
                pa.struct(
                    [
                        ("code", pa.string()),
                        ("column", pa.string()),
                        ("value", pa.string()),
                        ("message", pa.string()),
                    ]
                )
            ),
        ),
        pa.field("raw", pa.string()),
    ]
)


@dataclass
class Positions:
    """For a release: where each record of the rebuilt input came from originally."""

    files: list[str]
    lines: list[int | None]
    rows: list[int]
    header: str | None = None


def reason_counts(findings: Findings, outcome: ReadOutcome) -> list[dict[str, Any]]:
    """Failing rows per (code, column), rejected records per code, most common first."""
    counts = findings.counts()
    rejected: dict[tuple[str, str | None], int] = {}
    for r in outcome.rejected:
        rejected[(r.code, r.column)] = rejected.get((r.code, r.column), 0) + 1
    counts += [{"code": c, "column": col, "count": n} for (c, col), n in rejected.items()]
    return sorted(counts, key=lambda c: -c["count"])


def quarantine_table(
    outcome: ReadOutcome,
    findings: Findings,
    bad: np.ndarray,
    *,
    file: str,
    positions: Positions | None,
) -> pa.Table:
    """The quarantined rows of a batch: where each was (file, line, record), why, and its
    original text (a release reports rows where they were in the file they first came from)."""
    located = outcome.locate(bad)
    reasons = findings.reasons_for(bad)
    rows = [int(r) for r in located.records]
    lines: list[int | None] = (
        [int(x) for x in located.lines] if located.lines is not None else [None] * len(bad)
    )
    files = [file] * len(bad)
    raws = list(located.texts)
    for rej in outcome.rejected:
        rows.append(rej.row if rej.row is not None else -1)
        lines.append(rej.line)
        files.append(file)
        raws.append(rej.raw)
        reasons.append(
            [
                {
                    "code": rej.code,
                    "column": rej.column,
                    "value": rej.value,
                    "message": _render_rejected(rej),
                }
            ]
        )
    if positions is not None:
        p = positions
        idx = [r - 1 for r in rows]
        files = [
            p.files[i] if 0 <= i < len(p.files) else f for i, f in zip(idx, files, strict=True)
        ]
        lines = [p.lines[i] if 0 <= i < len(p.lines) else None for i in idx]
        rows = [p.rows[i] if 0 <= i < len(p.rows) else r for i, r in zip(idx, rows, strict=True)]
    table = pa.table(
        {"row": rows, "line": lines, "file": files, "reasons": reasons, "raw": raws},
        schema=QUARANTINE_SCHEMA,
    )
    header = outcome.header or (positions.header if positions else None)
    if header is not None:
        # A CSV row's text needs its header to be parsed again on release.
        table = table.replace_schema_metadata({"loopml.header": header})
    return table.sort_by([("row", "ascending")])


def _render_rejected(rej: Rejected) -> str:
    # A record rejected whole may still name the column at fault (a bad byte in a JSON value).
    return rej.detail if rej.column is None else render(rej.code, rej.column, rej.value, rej.detail)
