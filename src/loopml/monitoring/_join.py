"""Labels joined to predictions, and the accounting of every label received.

A label names its prediction by id, or its event by keys (and, where the keys do not identify
one event, by ``event_time``: the event's own time, compared with the time of the event each
prediction was made for, never with when it was made). A label by keys joins every prediction
logged for that event (a retried request, a batch answer and a live one alike).

Every label received ends in exactly one count, so that the accounting reconciles::

    received = matched + elsewhere + unknown + ambiguous + unreadable

- ``matched``: joined to at least one prediction of the report (``duplicates`` of them label a
  prediction labelled before; ``conflicting`` duplicates disagree with the first label
  received for it);
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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.monitoring._feedback import TIME_TEXT, canonical, looks_like_time

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
            pc.match_substring_regex(text, TIME_TEXT.pattern),
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
        return _with_labels(predictions, None, None, label_type), stats
    fb = feedback.sort_by([("_order", "ascending")])  # a label's number: its place in arrival
    m = fb.num_rows
    value = fb["label_num" if label_kind == "number" else "label_str"].combine_chunks()
    event_time = (
        fb["event_time"].combine_chunks()
        if "event_time" in fb.column_names
        else pa.nulls(m, pa.int64())
    )
    readable = _np(pc.is_valid(value))
    by_id = _np(pc.is_valid(fb["prediction_id"]))
    timed = _np(pc.is_valid(event_time))
    has_key = _np(pc.is_valid(fb["key"]))
    lab, prow = _pairs(fb, event_time, logged, readable & by_id, readable & ~by_id & has_key)
    pet = _np(logged["pet"])[prow] if len(prow) else np.zeros(0, np.int64)
    # per label: its predictions, whether they are of several events, how many are reported on
    hits = np.bincount(lab, minlength=m)
    several = np.zeros(m, dtype=bool)
    if len(lab):
        low = np.full(m, np.iinfo(np.int64).max)
        high = np.full(m, np.iinfo(np.int64).min)
        np.minimum.at(low, lab, pet)
        np.maximum.at(high, lab, pet)
        several = (hits > 0) & (low != high)
    sub_of = np.full(logged.num_rows, -1, dtype=np.int64)
    at_log = pc.index_in(predictions["id"], value_set=logged["id"])
    where = _np(pc.fill_null(at_log, -1)).astype(np.int64)
    sub_of[where[where >= 0]] = np.flatnonzero(where >= 0)
    sub = sub_of[prow] if len(prow) else np.zeros(0, np.int64)
    here = np.bincount(lab[sub >= 0], minlength=m)
    known = _np(
        pc.fill_null(pc.is_in(fb["key"], value_set=pc.unique(logged["pkey"].drop_null())), False)
    )
    mine = (
        np.ones(m, dtype=bool)
        if only is None
        else _np(pc.is_in(fb["event_id"], value_set=pa.array(sorted(only), pa.string())))
    )
    status = _Labels(fb, event_time, readable, by_id, timed, hits, several, here, known)
    _account(stats, status, mine, keys_logged)
    # the labels that join: not ambiguous, for a prediction reported on
    unambiguous = by_id | timed | ~several
    use = unambiguous[lab] & (sub >= 0)
    lab, sub = lab[use], sub[use]
    order = np.lexsort((lab, sub))
    lab, sub = lab[order], sub[order]
    # labels compared as codes: equal labels, equal codes (numbers or text alike)
    values = _np(pc.fill_null(pc.dictionary_encode(value).indices, -1)).astype(np.int64)
    start = np.r_[True, sub[1:] != sub[:-1]] if len(sub) else np.zeros(0, dtype=bool)
    group = np.cumsum(start) - 1
    first_at = np.flatnonzero(start)
    rn = np.arange(len(sub)) - first_at[group] + 1 if len(sub) else np.zeros(0, np.int64)
    size = np.diff(np.r_[first_at, len(sub)])[group] if len(sub) else np.zeros(0, np.int64)
    conflict = (rn > 1) & (values[lab] != values[lab[first_at[group]]]) if len(sub) else rn > 0
    disputed = (
        np.maximum.reduceat(conflict.astype(np.int8), first_at)[group].astype(bool)
        if len(sub)
        else conflict
    )
    counted = mine[lab]
    stats.duplicates = int(((rn > 1) & counted).sum())
    stats.conflicting = int((conflict & counted).sum())
    stats.conflicted = len(np.unique(sub[disputed & counted]))
    if only is None and len(lab) > 1:
        arrival = np.argsort(lab, kind="stable")
        pred_at = _np(pc.cast(predictions["at"], pa.int64()))[sub[arrival]]
        running = np.maximum.accumulate(pred_at)
        stats.out_of_order = int((pred_at[1:] < running[:-1]).sum())
    if on_conflict == "first":
        keep = rn == 1
    elif on_conflict == "last":
        keep = rn == size
    else:
        keep = (rn == 1) & ~disputed
    out = _with_labels(predictions, sub[keep], lab[keep], label_type, value, fb["observed_at"])
    has = _np(pc.is_valid(out["label_at"]))
    stats.labelled = int(has.sum())
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


def _np(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(values.to_numpy(zero_copy_only=False))


def _pairs(
    fb: pa.Table, event_time: pa.Array, logged: pa.Table, by_id: np.ndarray, keyed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every (label, logged prediction) it names: by id, or by keys (at the label's event time,
    when it has one, compared with the time of each prediction's event)."""
    ids = _np(pc.fill_null(pc.index_in(fb["prediction_id"], value_set=logged["id"]), -1))
    ids = ids.astype(np.int64)
    lab_id = np.flatnonzero(by_id & (ids >= 0))
    take = pa.array(np.flatnonzero(keyed), pa.int64())
    left = pa.table({"lab": take, "key": fb["key"].take(take), "et": event_time.take(take)})
    right = pa.table(
        {
            "prow": pa.array(np.arange(logged.num_rows), pa.int64()),
            "pkey": logged["pkey"],
            "pet": logged["pet"],
        }
    ).filter(pc.is_valid(logged["pkey"]))
    if left.num_rows and right.num_rows:
        joined = left.join(right, keys="key", right_keys="pkey", join_type="inner")
        joined = joined.filter(
            pc.or_(
                pc.is_null(joined["et"]), pc.fill_null(pc.equal(joined["et"], joined["pet"]), False)
            )
        )
        lab_k, prow_k = _np(joined["lab"]), _np(joined["prow"])
    else:
        lab_k = prow_k = np.zeros(0, np.int64)
    lab = np.concatenate([lab_id, lab_k]).astype(np.int64)
    prow = np.concatenate([ids[lab_id], prow_k]).astype(np.int64)
    return lab, prow


def _with_labels(
    predictions: pa.Table,
    rows: np.ndarray | None,
    labs: np.ndarray | None,
    label_type: pa.DataType,
    value: pa.Array | None = None,
    observed: pa.ChunkedArray | None = None,
) -> pa.Table:
    """The predictions with the label kept for row ``rows[i]`` (label number ``labs[i]``)."""
    n = predictions.num_rows
    if rows is None or labs is None or value is None or observed is None or not len(rows):
        return predictions.append_column("label", pa.nulls(n, label_type)).append_column(
            "label_at", pa.nulls(n, pa.int64())
        )
    take = np.full(n, -1, dtype=np.int64)
    take[rows] = labs
    index = pa.array(take, mask=take < 0)  # null: no label kept for that prediction
    label = pc.take(value, index).cast(label_type)
    label_at = pc.take(observed.combine_chunks(), index)
    return predictions.append_column("label", label).append_column("label_at", label_at)


@dataclass
class _Labels:
    """What is known of each label, in arrival order (arrays of one value per label)."""

    fb: pa.Table
    event_time: pa.Array
    readable: np.ndarray
    by_id: np.ndarray
    timed: np.ndarray
    hits: np.ndarray
    several: np.ndarray
    here: np.ndarray
    known: np.ndarray


def _account(stats: LabelStats, s: _Labels, mine: np.ndarray, keys_logged: bool) -> None:
    """Each label in one count (vectorized: a report may account for millions of labels)."""
    stats.received = int(mine.sum())
    bad = ~s.readable & mine
    missed = s.readable & (s.hits == 0) & mine
    ambiguous = s.readable & ~missed & ~s.by_id & ~s.timed & s.several & mine
    joined = s.readable & (s.hits > 0) & ~ambiguous & mine
    here = joined & (s.here > 0)
    stats.unreadable = int(bad.sum())
    stats.unknown = int(missed.sum())
    stats.ambiguous = int(ambiguous.sum())
    stats.matched = int(here.sum())
    stats.elsewhere = int((joined & ~here).sum())
    keyed = missed & ~s.by_id
    reasons = {
        "no_prediction_id": missed & s.by_id,
        "keys_not_logged": keyed & (not keys_logged),
        "no_prediction_at_event_time": keyed & keys_logged & s.timed & s.known,
        "no_prediction_keys": keyed & keys_logged & ~(s.timed & s.known),
    }
    for reason, mask in reasons.items():
        rows = np.flatnonzero(mask)
        if not len(rows):
            continue
        first = pa.array(rows[:EXAMPLES], pa.int64())
        if reason == "no_prediction_id":
            examples = s.fb["prediction_id"].take(first).to_pylist()
        else:
            keys = s.fb["key"].take(first).to_pylist()
            times = s.event_time.take(first).to_pylist()
            examples = [_describe(k, t) for k, t in zip(keys, times, strict=True)]
        stats.reasons[reason] = {"count": len(rows), "what": REASONS[reason], "examples": examples}


def _describe(key: str | None, event_time: int | None) -> str:
    text = "keys " + ", ".join((key or "").split("\x1f"))
    if event_time is not None:
        text += f" at event_time {datetime.fromtimestamp(event_time / 1e6, UTC).isoformat()}"
    return text
