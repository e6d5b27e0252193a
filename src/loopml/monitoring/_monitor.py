"""Windows over the monitored log: drift, performance, operations and the kinds of shift, for
every bucket of time, judged as they could have been at the bucket's end.

Rows are binned once against the reference profile; each bucket's counts are added up into the
current window (one bucket), the sliding window (the latest buckets) and the cumulative one, so
windows merge by adding counts. Labels count for a window only if they were known by its end:
a report over history shows when a shift could really have been detected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.monitoring._drift import DriftResult, compare
from loopml.monitoring._labels import binary_truth
from loopml.monitoring._log import FEATURE_PREFIX
from loopml.monitoring._performance import (
    calibration_gap,
    decay,
    default_metric,
    estimated,
    natural_variation,
    realized,
)
from loopml.monitoring._profile import LABEL, PREDICTION, ColumnProfile, Profile, to_float
from loopml.monitoring._shift import classify
from loopml.spec import MonitoringSpec, format_duration

WINDOWS = ("current", "sliding", "cumulative")
# The windows a default is chosen from: whole days and weeks, then months and years, so that a
# growing log keeps its windows (a steady rate lands on the same step).
WINDOW_STEPS = tuple(timedelta(days=d) for d in (1, 7, 14, 30, 91, 182, 365))
ERROR_REASONS = frozenset({"model_error", "breaker_open"})


@dataclass(frozen=True)
class WindowChoice:
    """The current and sliding windows of a report, and where they come from: ``option``
    (``--window``), ``spec`` (``monitoring.window``) or ``data`` (chosen from the log's rate)."""

    window: timedelta
    sliding: timedelta
    source: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": format_duration(self.window),
            "sliding": format_duration(self.sliding),
            "source": self.source,
            "reason": self.reason,
        }


def choose_window(
    spec: MonitoringSpec, at: np.ndarray, option: timedelta | None = None
) -> WindowChoice:
    """The window of a report: the one asked for, else ``monitoring.window``, else the shortest
    step holding at least the windows' minimum count (``drift.min_rows`` rows to test drift,
    ``performance.min_labels`` to judge performance) at the log's rate (``at``: the predictions'
    times, in microseconds)."""
    if option is not None:
        return WindowChoice(option, spec.sliding_for(option), "option", "--window")
    if spec.window is not None:
        return WindowChoice(spec.window, spec.sliding_for(spec.window), "spec", "monitoring.window")
    target = max(spec.drift.min_rows, spec.performance.min_labels)
    n = len(at)
    span_days = (float(at.max()) - float(at.min())) / 86_400e6 if n > 1 else 0.0
    if span_days < 1:
        window = WINDOW_STEPS[0]
        why = f"{n:,} predictions within a day"
    else:
        per_day = n / span_days
        window = next((w for w in WINDOW_STEPS if per_day * w.days >= target), WINDOW_STEPS[-1])
        expected = per_day * window.days
        why = (
            f"{per_day:,.3g} predictions a day over {span_days:,.0f} days: about "
            f"{expected:,.0f} per window"
            + (
                f", at least {target:,} (drift.min_rows, performance.min_labels)"
                if expected >= target
                else f", fewer than {target:,} even so: windows below drift.min_rows "
                "or performance.min_labels are not judged"
            )
        )
    return WindowChoice(
        window,
        spec.sliding_for(window),
        "data",
        why + "; set monitoring.window or --window to choose",
    )


@dataclass
class Evaluation:
    """Everything measured over one window."""

    start: int
    end: int
    rows: int
    labelled: int
    features: DriftResult
    prediction: Any
    label: Any
    conditional: DriftResult | None
    performance: dict[str, float]
    estimated: dict[str, float]
    calibration: dict[str, float]
    decay: dict[str, Any]
    ops: dict[str, float]
    shift: Any
    quarantine_rate: float | None = None
    late: int = 0  # labels of the window's predictions known only after its end

    def values(self) -> dict[str, float | None]:
        """The flat metrics alert rules are written against."""
        f = self.features
        out: dict[str, float | None] = {
            "rows": float(self.rows),
            "labels.count": float(self.labelled),
            "labels.coverage": self.labelled / self.rows if self.rows else None,
            "drift.features": float(len(f.drifted)),
            "drift.share": f.share,
            "drift.prediction": self.prediction.score if self.prediction is not None else None,
            "drift.label": self.label.score if self.label is not None else None,
            "shift.covariate": float(self.shift.covariate),
            "shift.label": float(self.shift.label),
            "shift.concept": float(self.shift.concept),
            "performance.drop": self.decay.get("drop"),
            "performance.decayed": float(bool(self.decay.get("decayed")))
            if self.decay.get("drop") is not None
            else None,
            "calibration.gap": self.calibration.get("gap"),
            "quarantine_rate": self.quarantine_rate,
        }
        for c in f.columns:
            out[f"drift.{c.name}"] = min(c.score, 1e6)
        for k, v in self.performance.items():
            out[f"performance.{k}"] = v
        for k, v in self.estimated.items():
            out[f"estimated.{k}"] = v
        out.update(self.ops)
        return out

    def to_dict(self, *, columns: bool = True) -> dict[str, Any]:
        return {
            "start": iso(self.start),
            "end": iso(self.end),
            "rows": self.rows,
            "labelled": self.labelled,
            "late": self.late,
            "features": self.features.to_dict()
            if columns
            else {
                "drifted": self.features.drifted,
                "share": self.features.share,
                "scores": {c.name: _round(c.score) for c in self.features.columns},
            },
            "prediction": self.prediction.to_dict() if self.prediction is not None else None,
            "label": self.label.to_dict() if self.label is not None else None,
            "conditional_drifted": self.conditional.drifted
            if self.conditional is not None
            else None,
            "performance": self.performance,
            "estimated": self.estimated,
            "calibration": self.calibration,
            "decay": self.decay,
            "ops": self.ops,
            "quarantine_rate": self.quarantine_rate,
            "shift": self.shift.to_dict(),
        }


def _round(v: float | None) -> float | None:
    if v is None or not np.isfinite(v):
        return None
    return round(float(v), 4)


def iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat()


@dataclass
class Timeline:
    """The evaluations of every bucket, in time order, for each window kind."""

    window: timedelta
    buckets: list[dict[str, Evaluation]] = field(default_factory=list)


class WindowedLog:
    """One model version's joined log, sorted by time and binned against its profile."""

    def __init__(
        self,
        table: pa.Table,
        profile: Profile,
        spec: MonitoringSpec,
        *,
        task: str,
        threshold: float | None,
        window: timedelta | None = None,
        choice: WindowChoice | None = None,
        quarantine: list[tuple[int, int, int]] | None = None,
    ) -> None:
        self.spec = spec
        self.profile = profile
        self.task = task
        self.threshold = threshold
        table = table.sort_by([("at", "ascending")])
        self.table = table
        self.at = table["at"].to_numpy(zero_copy_only=False).astype(np.int64)
        self.choice = choice or choose_window(spec, self.at, window)
        self.window = self.choice.window
        w = int(self.window.total_seconds() * 1_000_000)
        self.width = w
        # Windows start at the day (or hour) the log starts, not at the epoch's weekday.
        align = min(w, 86_400_000_000)
        self.origin = (int(self.at[0]) // align) * align if len(self.at) else 0
        self.bucket = (self.at - self.origin) // w if len(self.at) else np.zeros(0, np.int64)
        self.n_buckets = int(self.bucket[-1]) + 1 if len(self.bucket) else 0
        self.bounds = np.searchsorted(self.bucket, np.arange(self.n_buckets + 1), side="left")
        self.k_sliding = max(1, int(self.choice.sliding / self.window))
        self.features = [profile.columns[c] for c in profile.features]
        self.idx = {p.name: p.index(self._column(p.name)) for p in self.features}
        self.raw = {
            p.name: to_float(self._column(p.name)) for p in self.features if p.kind == "numeric"
        }
        self.scores = table["score"].to_numpy(zero_copy_only=False).astype(float)
        self.proba = table["proba"] if "proba" in table.column_names else None
        label = table["label"]
        self.has_label = pc.is_valid(label).to_numpy(zero_copy_only=False)
        self.label_at = pc.fill_null(table["label_at"], 2**62).to_numpy(zero_copy_only=False)
        self.labels = label
        if task == "binary":
            self.truthy = self._truthy()
            self.positive = pc.fill_null(self.truthy, False).to_numpy(zero_copy_only=False)
        lp = profile.columns.get(LABEL)
        self.label_idx = lp.index(self._label_values()) if lp is not None else None
        pp = profile.columns.get(PREDICTION)
        self.pred_idx = pp.index(self.scores) if pp is not None else None
        self.latency = table["latency_us"].to_numpy(zero_copy_only=False).astype(float)
        fb = table["fallback"].to_pylist()
        self.fallback = np.array([f is not None for f in fb])
        self.errors = np.array([f in ERROR_REASONS for f in fb])
        self.quarantine = quarantine or []

    def late_labels(self) -> int:
        """Labels known only after the end of their prediction's window (they count in the
        final performance of the window, not in what it could see)."""
        end = self.origin + (self.bucket + 1) * self.width
        return int((self.has_label & (self.label_at > end)).sum())

    def _column(self, name: str) -> pa.ChunkedArray:
        col = FEATURE_PREFIX + name
        if col in self.table.column_names:
            return self.table[col]
        return pa.chunked_array([pa.nulls(self.table.num_rows, pa.float64())])

    def _truthy(self) -> Any:
        return binary_truth(self.labels, self.profile.classes)

    def _label_values(self) -> Any:
        """The labels as the profile spells them (binary ones "0"/"1", as they were profiled)."""
        if self.task != "binary":
            return self.labels
        return pc.if_else(self.truthy, "1", "0")

    def _y(self, rows: np.ndarray) -> np.ndarray:
        if self.task == "binary":
            return self.positive[rows]
        values = self.labels.take(pa.array(rows))
        if self.task == "multiclass":
            return np.asarray(values.to_pylist(), dtype=object)
        return to_float(values)

    # ----------------------------------------------------------------------------- windows

    def first_bucket(self, kind: str, b: int) -> int:
        """The first bucket of the window of ``kind`` that ends with bucket ``b``."""
        return {"current": b, "sliding": max(0, b - self.k_sliding + 1), "cumulative": 0}[kind]

    def rows_of(self, kind: str, b: int) -> tuple[int, int]:
        return int(self.bounds[self.first_bucket(kind, b)]), int(self.bounds[b + 1])

    def evaluate(self, kind: str, b: int) -> Evaluation:
        lo, hi = self.rows_of(kind, b)
        end = self.origin + (b + 1) * self.width
        start = self.origin + self.first_bucket(kind, b) * self.width
        spec = self.spec.drift
        n = hi - lo
        counts = [
            np.bincount(self.idx[p.name][lo:hi], minlength=p.bins).astype(float)
            for p in self.features
        ]
        raw = {k: v[lo:hi] for k, v in self.raw.items()} if n <= spec.exact_ks_max else None
        means = {}
        for k, v in self.raw.items():
            finite = v[lo:hi][np.isfinite(v[lo:hi])]
            if finite.size:
                means[k] = float(finite.mean())
        features = compare(self.features, counts, spec, raw=raw, means=means)
        prediction = None
        pp = self.profile.columns.get(PREDICTION)
        if pp is not None and self.pred_idx is not None and n:
            prediction = compare(
                [pp], [np.bincount(self.pred_idx[lo:hi], minlength=pp.bins).astype(float)], spec
            ).columns[0]
        known = self.has_label[lo:hi] & (self.label_at[lo:hi] <= end)
        late = int((self.has_label[lo:hi] & ~known).sum())
        rows = np.flatnonzero(known) + lo
        label = conditional = None
        lp = self.profile.columns.get(LABEL)
        if lp is not None and self.label_idx is not None and len(rows) >= spec.min_rows:
            label = compare(
                [lp], [np.bincount(self.label_idx[rows], minlength=lp.bins).astype(float)], spec
            ).columns[0]
            conditional = self._conditional(rows)
        performance: dict[str, float] = {}
        calib: dict[str, float] = {}
        if len(rows):
            y = self._y(rows)
            scores = self._scores(rows)
            performance = realized(
                self.task, y, scores, threshold=self.threshold, classes=self.profile.classes or None
            )
            if self.task == "binary":
                calib = calibration_gap(y.astype(float), self.scores[rows])
        perf_spec = self.spec.performance
        metric = perf_spec.metric or default_metric(self.task)
        judged = performance.get(metric) if len(rows) >= perf_spec.min_labels else None
        dec = decay(
            metric,
            judged,
            self.profile.reference.get(metric),
            max_drop=perf_spec.max_drop,
            relative=perf_spec.relative,
            natural=natural_variation(self.profile.reference, metric, len(rows)),
        )
        est = estimated(self.task, self.scores[lo:hi], self.threshold) if n else {}
        ops = self._ops(lo, hi)
        limit = self._calibration_limit(len(rows))
        shift = classify(
            features=features,
            prediction=prediction,
            label=label,
            conditional=conditional,
            decayed=dec.get("decayed"),
            calibration=calib if len(rows) >= perf_spec.min_labels else None,
            calibration_limit=limit,
            alpha=spec.alpha,
        )
        return Evaluation(
            start=start,
            end=end,
            rows=n,
            labelled=len(rows),
            features=features,
            prediction=prediction,
            label=label,
            conditional=conditional,
            performance=performance,
            estimated=est,
            calibration=calib,
            decay=dec,
            ops=ops,
            shift=shift,
            quarantine_rate=self._quarantine(start, end),
            late=late,
        )

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        if self.task == "multiclass" and self.proba is not None:
            return np.asarray(self.proba.take(pa.array(rows)).to_pylist(), dtype=float)
        return self.scores[rows]

    def _conditional(self, rows: np.ndarray) -> DriftResult | None:
        """Features within each class against the reference's class-conditional counts."""
        lp = self.profile.columns[LABEL]
        classes = self.label_idx[rows] if self.label_idx is not None else None
        if classes is None:
            return None
        profiles: list[ColumnProfile] = []
        counts, refs = [], []
        for ci, name in enumerate(lp.categories):
            mask = rows[classes == ci]
            if len(mask) < self.spec.drift.min_rows:
                continue
            for p in self.features:
                ref = p.by_class.get(name)
                if ref is None:
                    continue
                profiles.append(p)
                refs.append(np.asarray(ref))
                counts.append(np.bincount(self.idx[p.name][mask], minlength=p.bins).astype(float))
        if not profiles:
            return None
        return compare(profiles, counts, self.spec.drift, reference=refs)

    def _calibration_limit(self, n: int) -> float | None:
        ref = self.profile.reference
        limit, m = ref.get("calibration_limit"), ref.get("calibration_chunk_rows")
        if limit is None:
            return None
        if m and 0 < n < m:
            return float(limit * np.sqrt(m / n))
        return float(limit)

    def _ops(self, lo: int, hi: int) -> dict[str, float]:
        n = hi - lo
        if n == 0:
            return {}
        lat = self.latency[lo:hi]
        lat = lat[np.isfinite(lat)]
        out = {
            "fallback_rate": float(self.fallback[lo:hi].mean()),
            "error_rate": float(self.errors[lo:hi].mean()),
        }
        if lat.size:
            out["latency.p50_ms"] = float(np.percentile(lat, 50) / 1000)
            out["latency.p99_ms"] = float(np.percentile(lat, 99) / 1000)
        return out

    def _quarantine(self, start: int, end: int) -> float | None:
        read = quarantined = 0
        for at, r, q in self.quarantine:
            if start <= at < end:
                read += r
                quarantined += q
        return quarantined / read if read else None

    def distributions(self, lo: int, hi: int) -> dict[str, Any]:
        """Reference and window proportions per bin, for the report's charts."""
        out = {}
        for p in self.features:
            cur = np.bincount(self.idx[p.name][lo:hi], minlength=p.bins).astype(float)
            out[p.name] = {
                "bins": p.labels,
                "reference": _share(np.asarray(p.counts)),
                "current": _share(cur),
            }
        pp = self.profile.columns.get(PREDICTION)
        if pp is not None and self.pred_idx is not None:
            cur = np.bincount(self.pred_idx[lo:hi], minlength=pp.bins).astype(float)
            out[PREDICTION] = {
                "bins": pp.labels,
                "reference": _share(np.asarray(pp.counts)),
                "current": _share(cur),
            }
        return out


def _share(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return (counts / total).round(5).tolist() if total else [0.0] * len(counts)


def evaluate_window(
    profile: Profile,
    features: pa.Table,
    spec: MonitoringSpec,
    *,
    scores: np.ndarray | None = None,
    labels: Any = None,
    task: str | None = None,
    threshold: float | None = None,
) -> Evaluation:
    """Judge one batch of rows against a profile without a project: its features (columns
    named as in the profile), the model's scores and, when known, the labels. Returns the
    window's drift, performance and kinds of shift."""
    n = features.num_rows
    cols: dict[str, Any] = {
        "at": pa.array(np.zeros(n, dtype=np.int64)),
        "score": pa.array(np.zeros(n) if scores is None else np.asarray(scores, dtype=float)),
        "latency_us": pa.nulls(n, pa.float64()),
        "fallback": pa.nulls(n, pa.string()),
    }
    for name in features.column_names:
        cols[FEATURE_PREFIX + name] = features[name]
    if labels is None:
        cols["label"] = pa.nulls(n, pa.float64())
        cols["label_at"] = pa.nulls(n, pa.int64())
    else:
        values = (
            labels
            if isinstance(labels, pa.Array | pa.ChunkedArray)
            else pa.array(np.asarray(labels))
        )
        if pa.types.is_boolean(values.type) or pa.types.is_integer(values.type):
            values = pc.cast(values, pa.float64())
        cols["label"] = values
        cols["label_at"] = pa.array(np.zeros(n, dtype=np.int64))
    wl = WindowedLog(
        pa.table(cols),
        profile,
        spec,
        task=task or profile.task or "binary",
        threshold=threshold,
        window=timedelta(days=36500),
    )
    return wl.evaluate("current", 0)
