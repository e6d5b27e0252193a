"""Batch checks: is a delivered file, as a whole, like the files delivered before it?

A file far smaller or larger than the source's files, or one where a column is suddenly null far
more often, is held whole: a truncated export or a producer that stopped filling a column are
problems of the file, not of its rows. These checks compare deliveries with deliveries only: a
stream micro-batch of two events, or a release of five fixed rows, says nothing about the size of
the next file and is neither checked nor counted in the history.

Each check says what it compared against (:class:`CheckNote`), so the ingest can print the bounds
it chose, and a user can accept what a check held (a release with ``accept``): an accepted null
rate becomes the column's new baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import numpy as np
import pyarrow as pa

from loopml.data._checks import Findings
from loopml.data._schema import Schema
from loopml.spec import CheckSpec, format_duration

AUTO_MARGIN = 10.0  # row_count_ratio auto: this far beyond the fewest and most rows seen
NULL_RATE_ALPHA = 1e-3  # a null-rate rise must be this unlikely under the allowed rate
ACCEPTABLE = {"row_count": "--accept-row-count", "null_rate": "--accept-null-rate"}


@dataclass(frozen=True)
class CheckNote:
    """What one check compared a batch with, in numbers and in a sentence."""

    check: str  # row_count | null_rate | timestamp_floor | future_timestamp
    applied: bool
    text: str
    low: float | None = None
    high: float | None = None
    history: int = 0  # earlier files compared with


@dataclass
class BatchVerdict:
    """The notes of every batch check, and what a release accepted (recorded with the batch)."""

    notes: list[CheckNote] = field(default_factory=list)
    accepted: dict[str, Any] = field(default_factory=dict)


def batch_stats(
    table: pa.Table, rows_read: int, bad: np.ndarray, *, delivery: bool
) -> dict[str, Any]:
    """What later batch checks compare with: records read, and nulls per column among the rows
    that passed their row checks (a value that failed to parse is a bad row, not a null)."""
    nulls = {n: int(table.column(n).null_count) for n in table.column_names}
    if len(bad):
        taken = table.take(pa.array(bad, type=pa.int64()))
        for n in taken.column_names:
            nulls[n] -= int(taken.column(n).null_count)
    return {
        "rows": rows_read,
        "parsed": table.num_rows - len(bad),
        "nulls": nulls,
        "delivery": delivery,
    }


def check_batch(
    stats: dict[str, Any],
    history: list[dict[str, Any]],
    checks: CheckSpec,
    findings: Findings,
    *,
    delivery: bool,
    accept: frozenset[str] = frozenset(),
) -> BatchVerdict:
    """Batch checks of one batch against the stats of recent files of its source (newest
    first). Failures go to ``findings``; a check named in ``accept`` is noted, not failed."""
    verdict = BatchVerdict()
    rows = stats["rows"]
    if rows == 0:
        findings.fail_batch("empty", None, "the file holds no rows")
        return verdict
    if not delivery:
        skipped = "not a delivered file (a stream micro-batch or a release of checked rows)"
        verdict.notes += [
            CheckNote("row_count", False, f"row count: not checked, {skipped}"),
            CheckNote("null_rate", False, f"null rate: not checked, {skipped}"),
        ]
        return verdict
    if len(history) < checks.min_history:
        waiting = (
            f"starts after {checks.min_history} files (checks.min_history), {len(history)} so far"
        )
        verdict.notes += [
            CheckNote("row_count", False, f"row count: {waiting}", history=len(history)),
            CheckNote("null_rate", False, f"null rate: {waiting}", history=len(history)),
        ]
        return verdict
    _row_count(rows, history, checks, findings, verdict, accept)
    _null_rate(stats, history, checks, findings, verdict, accept)
    return verdict


def _row_count(
    rows: int,
    history: list[dict[str, Any]],
    checks: CheckSpec,
    findings: Findings,
    verdict: BatchVerdict,
    accept: frozenset[str],
) -> None:
    ratio = checks.row_count_ratio
    counts = [int(h["rows"]) for h in history]
    n, median = len(counts), float(np.median(counts))
    if ratio == 0:
        verdict.notes.append(
            CheckNote("row_count", False, "row count: off (checks.row_count_ratio: 0)")
        )
        return
    if ratio == "auto":
        fewest, most = min(counts), max(counts)
        low, high = fewest / AUTO_MARGIN, most * AUTO_MARGIN
        seen = f"the last {n} files held {fewest:,} to {most:,} rows"
        basis = (
            f"{seen} (a median of {median:.0f}); checks.row_count_ratio auto allows "
            f"{_num(low)} to {_num(high)}"
        )
        text = (
            f"row count: {_num(low)} to {_num(high)} (auto: {AUTO_MARGIN:g}x beyond the "
            f"{fewest:,} to {most:,} rows of the last {n} files)"
        )
    else:
        low, high = median / ratio, median * ratio
        basis = (
            f"the last {n} files have a median of {median:.0f} "
            f"(checks.row_count_ratio allows {ratio:g}x either way)"
        )
        text = f"row count: {_num(low)} to {_num(high)} ({ratio:g}x the median of the last {n} files, {median:.0f})"
    verdict.notes.append(CheckNote("row_count", True, text, low, high, n))
    if low <= rows <= high:
        return
    if "row_count" in accept:
        verdict.accepted["row_count"] = True
        return
    findings.fail_batch("row_count", None, f"{rows:,} rows, while {basis}")


def _null_rate(
    stats: dict[str, Any],
    history: list[dict[str, Any]],
    checks: CheckSpec,
    findings: Findings,
    verdict: BatchVerdict,
    accept: frozenset[str],
) -> None:
    increase = checks.null_rate_increase
    parsed = stats["parsed"]
    if increase == 0:
        verdict.notes.append(
            CheckNote("null_rate", False, "null rate: off (checks.null_rate_increase: 0)")
        )
        return
    verdict.notes.append(
        CheckNote(
            "null_rate",
            True,
            f"null rate: a column held when its share of nulls rises more than {increase:.0%} "
            f"above its rate in the last {len(history)} files (beyond chance for the file's size)",
            history=len(history),
        )
    )
    if not parsed:
        return
    accepted: list[str] = []
    for name, nulls in stats["nulls"].items():
        past = seen_rows = files = 0
        for h in history:  # newest first; an accepted rate is where the column's history starts
            if name in h["nulls"]:
                past += h["nulls"][name]
                seen_rows += h["parsed"]
                files += 1
            if name in h.get("baseline", {}).get("null_rate", ()):
                break
        if not seen_rows:
            continue
        before, now_rate = past / seen_rows, nulls / parsed
        if now_rate - before <= increase:
            continue
        # As many nulls could come by chance from a column null at the allowed rate: a few
        # nulls in a small file are not a change of the source. (scipy only when it matters:
        # importing it takes longer than most checks.)
        from scipy.stats import binom

        if binom.sf(nulls - 1, parsed, min(before + increase, 1.0)) >= NULL_RATE_ALPHA:
            continue
        if "null_rate" in accept:
            accepted.append(name)
            continue
        findings.fail_batch(
            "null_rate",
            name,
            f"column '{name}' is null in {now_rate:.1%} of {parsed:,} rows, against {before:.1%} "
            f"in the last {files} files (checks.null_rate_increase allows "
            f"+{increase:.0%})",
        )
    if accepted:
        verdict.accepted["null_rate"] = accepted


def time_notes(checks: CheckSpec, schema: Schema) -> list[CheckNote]:
    """The timestamp checks in force, for the ingest to print."""
    notes = []
    if schema.timestamp is not None:
        notes.append(
            CheckNote(
                "future_timestamp",
                True,
                f"event time: at most now + {format_duration(checks.max_future)} "
                "(checks.max_future)",
            )
        )
    if any(c.type in ("timestamp", "date") for c in schema.columns):
        floor = checks.not_before
        if floor is None:
            notes.append(
                CheckNote(
                    "timestamp_floor",
                    False,
                    "timestamps: no floor (set checks.not_before to quarantine older ones)",
                )
            )
        else:
            notes.append(
                CheckNote(
                    "timestamp_floor",
                    True,
                    f"timestamps: none before {floor.astimezone(UTC):%Y-%m-%d %H:%M} UTC "
                    "(checks.not_before)",
                )
            )
    return notes


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 or float(x).is_integer() else f"{x:.3g}"
