"""Labels joined to predictions, and the accounting of every label received.

A label names its prediction by id, or its event by keys (and, where the keys do not identify
one event, by ``event_time``: the event's own time, compared with the time of the event each
prediction was made for, never with when it was made). A label by keys joins every prediction
logged for that event (a retried request, a batch answer and a live one alike).

Every label received ends in exactly one count, so that the accounting reconciles::

    received = matched + elsewhere + unknown + ambiguous + unreadable

- ``matched``: joined to at least one prediction of the report (``duplicates`` of them label a
  prediction labelled before; ``conflicting`` duplicates disagree with the label kept);
- ``elsewhere``: joined only to logged predictions outside the report (another version, outside
  ``since``/``until``);
- ``unknown``: no logged prediction has that id, those keys, or those keys at that event time
  (``reasons`` says which, with examples); they join once such a prediction is logged;
- ``ambiguous``: keys logged for several events and no ``event_time`` to choose;
- ``unreadable``: landed before labels were checked at the door, with a value the model cannot
  read.

Several labels for one prediction follow ``monitoring.on_conflict``: the first received wins,
the last received wins, or (``refuse``) a prediction whose labels disagree stays unlabelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.data._lake import fetch_arrow
from loopml.monitoring._feedback import _DATETIME, canonical, looks_like_time

FEATURE_PREFIX = "f."
EVENT_TIME_FEATURE = "_event_time"  # the event time the serving path logs with each prediction
POLICIES = ("first", "last", "refuse")
EXAMPLES = 3

REASONS = {
    "no_prediction_id": "no logged prediction has this prediction_id",
    "no_prediction_keys": "no logged prediction has these keys",
    "no_prediction_at_event_time": "predictions with these keys exist, none for this event_time",
    "keys_not_logged": "the prediction log holds no column for some join key",
}


@dataclass
class LabelStats:
    """How the labels received were used (see the module's docstring)."""

    received: int = 0
    matched: int = 0
    elsewhere: int = 0
    unknown: int = 0
    ambiguous: int = 0
    unreadable: int = 0
    duplicates: int = 0
    conflicting: int = 0
    conflicted: int = 0  # predictions whose labels disagree
    out_of_order: int = 0
    labelled: int = 0
    pending: int = 0
    on_conflict: str = "first"
    delay_p50_s: float | None = None
    delay_p95_s: float | None = None
    reasons: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The counts, flat (``reasons`` is reported beside them)."""
        out = asdict(self)
        out.pop("reasons")
        for k in ("delay_p50_s", "delay_p95_s"):
            if out[k] is None:
                del out[k]
        return out


def prepared(predictions: pa.Table, join_keys: Sequence[str]) -> pa.Table:
    """What the join needs of the logged predictions (shadow answers left out: their labels
    go to the prediction they shadow): id, when it was made (``at``), the time of its event
    (``pet``: the logged event time, else ``at``) and its keys' one spelling (``pkey``)."""
    if "mode" in predictions.column_names:
        predictions = predictions.filter(
            pc.fill_null(pc.not_equal(predictions["mode"], "shadow"), True)
        )
    n = predictions.num_rows
    at = pc.cast(predictions["at"], pa.int64())
    et = FEATURE_PREFIX + EVENT_TIME_FEATURE
    pet = pc.coalesce(_micros(predictions[et]), at) if et in predictions.column_names else at
    cols = [FEATURE_PREFIX + k for k in join_keys]
    logged = bool(cols) and all(c in predictions.column_names for c in cols)
    pkey = key_column(predictions, cols) if logged else pa.nulls(n, pa.string())
    return pa.table({"id": predictions["id"], "at": at, "pet": pet, "pkey": pkey})


def _micros(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_timestamp(col.type):
        return pc.cast(pc.cast(col, pa.timestamp("us", tz=col.type.tz)), pa.int64())
    if pa.types.is_integer(col.type):
        return pc.cast(col, pa.int64())
    return pa.chunked_array([pa.nulls(len(col), pa.int64())])


def key_column(table: pa.Table, columns: Sequence[str]) -> pa.Array:
    """Each row's key in :func:`canonical` spelling, vectorized (a log of millions of rows)."""
    parts = [_canonical_column(table[c].combine_chunks()) for c in columns]
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, "\x1f")


def _canonical_column(arr: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    t = arr.type
    if pa.types.is_boolean(t):
        out = pc.if_else(arr, "1", "0")
    elif pa.types.is_integer(t):
        out = pc.cast(arr, pa.string())
    elif pa.types.is_timestamp(t):
        micros = pc.cast(pc.cast(arr, pa.timestamp("us", tz=t.tz)), pa.int64())
        out = pc.cast(micros, pa.string())
    elif pa.types.is_floating(t):
        x = pc.cast(arr, pa.float64())
        whole = pc.fill_null(pc.and_(pc.equal(x, pc.floor(x)), pc.less(pc.abs(x), 2.0**62)), False)
        out = _python_where(
            pc.invert(whole), arr, pc.cast(pc.cast(x, pa.int64(), safe=False), pa.string())
        )
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        arr = pc.cast(arr, pa.string())
        text = pc.utf8_trim_whitespace(arr)
        timey = pc.and_(
            pc.match_substring_regex(text, _DATETIME.pattern),
            pc.greater(pc.utf8_length(text), 10),
        )
        out = _python_where(pc.fill_null(timey, False), arr, arr)
    else:  # dates and the rest: as canonical() spells them
        out = pa.array([_canonical(v) for v in arr.to_pylist()], pa.string())
    return pc.fill_null(out, "")


def _python_where(mask: pa.Array, values: pa.Array, out: pa.Array) -> pa.Array:
    """``out``, with the rows of ``mask`` spelled by :func:`canonical` from ``values`` (the few
    values Arrow cannot spell alike: non-integral floats, times written as text)."""
    rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
    if not len(rows):
        return out
    spelled = [_canonical(v) for v in values.take(pa.array(rows)).to_pylist()]
    return pc.replace_with_mask(out, mask, pa.array(spelled, pa.string()))


def _canonical(value: Any) -> str:
    if isinstance(value, str) and looks_like_time(value):
        try:
            return canonical(value)
        except ValueError:
            return value  # not a real time: kept as it is written
    return canonical(value)


def join_labels(
    feedback: pa.Table,
    logged: pa.Table,
    predictions: pa.Table,
    *,
    label_kind: str,
    on_conflict: str = "first",
    keys_logged: bool = True,
    only: frozenset[str] | None = None,
) -> tuple[pa.Table, LabelStats]:
    """``predictions`` (a part of the log) with ``label`` and ``label_at`` (when the label kept
    became known), and the accounting of every feedback row (of the rows whose event id is in
    ``only``, when given: the labels one call just sent, judged beside those received before).
    ``logged`` is :func:`prepared` of the whole log."""
    if on_conflict not in POLICIES:
        raise ValueError(f"on_conflict must be one of {', '.join(POLICIES)}")
    n = predictions.num_rows
    stats = LabelStats(pending=n, on_conflict=on_conflict)
    label_type = pa.float64() if label_kind == "number" else pa.string()
    if feedback.num_rows == 0:
        return _with_labels(predictions, None, label_type), stats
    value = "label_num" if label_kind == "number" else "label_str"
    fb = pa.table(
        {
            "event_id": feedback["event_id"],
            "_order": feedback["_order"],
            "prediction_id": feedback["prediction_id"],
            "key": feedback["key"],
            "event_time": feedback["event_time"]
            if "event_time" in feedback.column_names
            else pa.nulls(feedback.num_rows, pa.int64()),
            "value": feedback[value],
            "observed_at": feedback["observed_at"],
        }
    )
    con = duckdb.connect()
    try:
        con.register("fb", fb)
        con.register("logged", logged)
        con.register("here", predictions.select(["id", "at"]))
        con.execute(
            """
            CREATE TEMP TABLE pairs AS
            SELECT f.event_id, p.id AS pid, p.pet FROM fb f JOIN logged p ON f.prediction_id = p.id
            WHERE f.prediction_id IS NOT NULL AND f.value IS NOT NULL
            UNION ALL
            SELECT f.event_id, p.id AS pid, p.pet FROM fb f JOIN logged p
              ON f.key = p.pkey AND (f.event_time IS NULL OR f.event_time = p.pet)
            WHERE f.prediction_id IS NULL AND f.value IS NOT NULL
            """
        )
        per_label = fetch_arrow(
            con.sql(
                """
                WITH hits AS (
                  SELECT pr.event_id, count(*) AS hits, count(DISTINCT pr.pet) AS events,
                         count(h.id) AS here
                  FROM pairs pr LEFT JOIN here h ON pr.pid = h.id GROUP BY pr.event_id
                ), known_keys AS (SELECT DISTINCT pkey FROM logged WHERE pkey IS NOT NULL)
                SELECT f.event_id, f.prediction_id, f.key, f.event_time, f.value IS NULL AS bad,
                       coalesce(h.hits, 0) AS hits, coalesce(h.events, 0) AS events,
                       coalesce(h.here, 0) AS here, k.pkey IS NOT NULL AS key_known
                FROM fb f LEFT JOIN hits h ON f.event_id = h.event_id
                LEFT JOIN known_keys k ON f.key = k.pkey
                ORDER BY f._order
                """
            )
        )
        chosen = fetch_arrow(
            con.sql(
                """
                WITH ok AS (  -- not ambiguous: by id, at an event time, or keys of one event
                  SELECT pr.event_id FROM pairs pr JOIN fb f USING (event_id)
                  GROUP BY pr.event_id, f.prediction_id, f.event_time
                  HAVING f.prediction_id IS NOT NULL OR f.event_time IS NOT NULL
                      OR count(DISTINCT pr.pet) = 1
                ), mp AS (
                  SELECT pr.event_id, pr.pid, f.value, f.observed_at, f._order, h.at AS pred_at
                  FROM pairs pr JOIN ok USING (event_id) JOIN fb f USING (event_id)
                  JOIN here h ON pr.pid = h.id
                ), ranked AS (
                  SELECT *, row_number() OVER w AS rn, count(*) OVER (PARTITION BY pid) AS n,
                         first_value(value) OVER w AS first_value
                  FROM mp WINDOW w AS (PARTITION BY pid ORDER BY _order)
                ), flagged AS (
                  SELECT *, rn > 1 AND value IS DISTINCT FROM first_value AS conflict
                  FROM ranked
                ), judged AS (
                  SELECT *, bool_or(conflict) OVER (PARTITION BY pid) AS disputed FROM flagged
                )
                SELECT event_id, pid, value, observed_at, _order, pred_at, rn, n, conflict,
                       disputed
                FROM judged ORDER BY _order
                """
            )
        )
    finally:
        con.close()
    counted = (
        None
        if only is None
        else pc.is_in(chosen["event_id"], value_set=pa.array(sorted(only), pa.string()))
    )
    if only is not None:
        per_label = per_label.filter(
            pc.is_in(per_label["event_id"], value_set=pa.array(sorted(only), pa.string()))
        )
    _account(stats, per_label, keys_logged)
    rn = chosen["rn"].to_numpy(zero_copy_only=False)
    disputed = chosen["disputed"].to_numpy(zero_copy_only=False).astype(bool)
    mine = (
        np.ones(len(rn), dtype=bool)
        if counted is None
        else counted.to_numpy(zero_copy_only=False).astype(bool)
    )
    stats.duplicates = int(((rn > 1) & mine).sum())
    conflict = chosen["conflict"].to_numpy(zero_copy_only=False).astype(bool)
    stats.conflicting = int((conflict & mine).sum())
    stats.conflicted = len(set(pc.filter(chosen["pid"], pa.array(disputed & mine)).to_pylist()))
    pred_at = chosen["pred_at"].to_numpy(zero_copy_only=False).astype(np.int64)
    if len(pred_at) > 1 and only is None:
        running = np.maximum.accumulate(pred_at)
        stats.out_of_order = int((pred_at[1:] < running[:-1]).sum())
    if on_conflict == "first":
        keep = rn == 1
    elif on_conflict == "last":
        keep = rn == chosen["n"].to_numpy(zero_copy_only=False)
    else:
        keep = (rn == 1) & ~disputed
    kept = chosen.filter(pa.array(keep))
    out = _with_labels(predictions, kept, label_type)
    has = pc.is_valid(out["label_at"])
    stats.labelled = int(pc.sum(has.cast(pa.int64())).as_py() or 0)
    stats.pending = n - stats.labelled
    delays = (
        pc.subtract(out["label_at"], pc.cast(out["at"], pa.int64()))
        .drop_null()
        .to_numpy(zero_copy_only=False)
    )
    if len(delays):
        stats.delay_p50_s = float(np.percentile(delays, 50) / 1e6)
        stats.delay_p95_s = float(np.percentile(delays, 95) / 1e6)
    return out, stats


def _with_labels(predictions: pa.Table, kept: pa.Table | None, label_type: pa.DataType) -> pa.Table:
    n = predictions.num_rows
    if kept is None or kept.num_rows == 0:
        return predictions.append_column("label", pa.nulls(n, label_type)).append_column(
            "label_at", pa.nulls(n, pa.int64())
        )
    pos = pc.index_in(predictions["id"], value_set=kept["pid"])
    has = pc.is_valid(pos)
    take = pc.fill_null(pos, 0)
    label = pc.if_else(has, pc.take(kept["value"], take), pa.scalar(None, kept["value"].type))
    label_at = pc.if_else(has, pc.take(kept["observed_at"], take), pa.scalar(None, pa.int64()))
    return predictions.append_column("label", label).append_column("label_at", label_at)


def _account(stats: LabelStats, per_label: pa.Table, keys_logged: bool) -> None:
    rows = per_label.to_pydict()
    stats.received = per_label.num_rows
    for i in range(per_label.num_rows):
        pid, key, et = rows["prediction_id"][i], rows["key"][i], rows["event_time"][i]
        if rows["bad"][i]:
            stats.unreadable += 1
        elif rows["hits"][i] == 0:
            stats.unknown += 1
            if pid is not None:
                reason, example = "no_prediction_id", pid
            else:
                if not keys_logged:
                    reason = "keys_not_logged"
                elif et is not None and rows["key_known"][i]:
                    reason = "no_prediction_at_event_time"
                else:
                    reason = "no_prediction_keys"
                example = _describe(key, et)
            _reason(stats, reason, example)
        elif pid is None and et is None and rows["events"][i] > 1:
            stats.ambiguous += 1
        elif rows["here"][i] > 0:
            stats.matched += 1
        else:
            stats.elsewhere += 1


def _reason(stats: LabelStats, reason: str, example: str) -> None:
    entry = stats.reasons.setdefault(reason, {"count": 0, "what": REASONS[reason], "examples": []})
    entry["count"] += 1
    if len(entry["examples"]) < EXAMPLES:
        entry["examples"].append(example)


def _describe(key: str | None, event_time: int | None) -> str:
    text = "keys " + ", ".join((key or "").split("\x1f"))
    if event_time is not None:
        text += f" at event_time {datetime.fromtimestamp(event_time / 1e6, UTC).isoformat()}"
    return text
