"""Reference profiles: what a model's training data looked like, kept as bins and counts.

A numeric column keeps quantile bin edges (or one bin per value when it has few distinct
values), the reference counts per bin, its moments and a sorted sample for exact tests on small
windows. A categorical column keeps its top-k categories plus an "other" bin (known but rare),
an "unseen" bin (never in the reference) and a "missing" bin. Current windows are counts over
the same bins, so windows merge by adding counts.

Each column also keeps calibrated thresholds: the reference is cut into contiguous chunks and
each chunk is compared with the rest; the largest difference seen is the natural variation of
that column, and only a larger one can count as drift.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.monitoring import _stats as st
from loopml.monitoring._labels import binary_name, binary_strings
from loopml.spec import DriftSpec

MAX_KNOWN = 10_000  # categories remembered to tell "other" from "unseen"
SAMPLE = 2_000  # reference values kept per numeric column for the exact KS test
PREDICTION = "__prediction__"
LABEL = "__label__"
EFFECTS = ("psi", "js", "wasserstein")


@dataclass
class ColumnProfile:
    """The reference of one column."""

    name: str
    kind: str  # numeric | categorical
    rows: int
    missing: int
    counts: list[float]
    edges: list[float] = field(default_factory=list)
    centers: list[float] = field(default_factory=list)
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    sample: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    known: list[str] | None = None
    chunk_rows: int = 0
    thresholds: dict[str, float] = field(default_factory=dict)
    by_class: dict[str, list[float]] = field(default_factory=dict)
    singletons: int = 0  # categories seen once: the Good-Turing estimate of unseen ones

    @property
    def bins(self) -> int:
        return len(self.counts)

    @property
    def labels(self) -> list[str]:
        """A readable name for every bin."""
        if self.kind == "categorical":
            return [*self.categories, "(other)", "(unseen)", "(missing)"]
        e = self.edges
        if not e:
            return ["all", "(missing)"]
        names = [f"< {e[0]:.4g}"]
        names += [f"[{a:.4g}, {b:.4g})" for a, b in itertools.pairwise(e)]
        names.append(f">= {e[-1]:.4g}")
        return [*names, "(missing)"]

    def widths(self) -> np.ndarray:
        """Distances between neighbouring bin centers (the Wasserstein integral's steps)."""
        w = np.zeros(self.bins)
        if self.kind == "numeric" and len(self.centers) > 1:
            w[: len(self.centers) - 1] = np.diff(self.centers)
        return w

    def index(self, values: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
        """The bin of every value (missing values in the last bin)."""
        if self.kind == "numeric":
            x = to_float(values)
            # A comparison per edge beats a binary search per value by 5x for the few edges
            # a profile has (searchsorted's random access is slow on a million values).
            out = np.zeros(len(x), dtype=np.int8)
            for edge in self.edges:
                out += x >= edge
            result = out.astype(np.int64)
            result[np.isnan(x)] = self.bins - 1
            return result
        arr = to_strings(values)
        k = len(self.categories)
        idx = pc.index_in(arr, value_set=pa.array(self.categories, pa.string()))
        out = idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        rest = out < 0
        if rest.any():
            missing = arr.is_null().to_numpy(zero_copy_only=False)
            if self.known is None:
                seen = np.ones(len(out), dtype=bool)  # too many categories: rare means "other"
            else:
                seen = (
                    pc.is_in(arr, value_set=pa.array(self.known, pa.string()))
                    .fill_null(False)
                    .to_numpy(zero_copy_only=False)
                )
            out[rest & seen] = k
            out[rest & ~seen] = k + 1
            out[missing] = k + 2
        return out

    def count(self, values: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
        return np.bincount(self.index(values), minlength=self.bins).astype(float)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Profile:
    """The reference of a model version: its features, its predictions and its labels."""

    columns: dict[str, ColumnProfile]
    task: str | None = None
    classes: list[str] = field(default_factory=list)
    reference: dict[str, Any] = field(default_factory=dict)  # performance on held-out rows
    settings: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None  # a binary model's decision threshold

    @property
    def features(self) -> list[str]:
        return [c for c in self.columns if c not in (PREDICTION, LABEL)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": {k: v.to_dict() for k, v in self.columns.items()},
            "task": self.task,
            "classes": self.classes,
            "reference": self.reference,
            "settings": self.settings,
            "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        return cls(
            columns={k: ColumnProfile(**v) for k, v in data["columns"].items()},
            task=data.get("task"),
            classes=list(data.get("classes") or []),
            reference=dict(data.get("reference") or {}),
            settings=dict(data.get("settings") or {}),
            threshold=data.get("threshold"),
        )


def to_float(values: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values.astype(float, copy=False)
    if pa.types.is_boolean(values.type) or pa.types.is_timestamp(values.type):
        values = pc.cast(values, pa.int64())
    return np.asarray(
        pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False), dtype=float
    ).copy()


def to_strings(values: pa.Array | pa.ChunkedArray | np.ndarray) -> pa.Array:
    if isinstance(values, np.ndarray):
        values = pa.array(values, from_pandas=True)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    return values if pa.types.is_string(values.type) else pc.cast(values, pa.string())


def is_categorical(values: pa.Array | pa.ChunkedArray) -> bool:
    t = values.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    return not (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_decimal(t)
        or pa.types.is_timestamp(t)
    )


def fit_column(
    name: str,
    values: pa.Array | pa.ChunkedArray,
    spec: DriftSpec,
    *,
    categorical: bool | None = None,
    classes: np.ndarray | None = None,
    seed: int = 0,
) -> ColumnProfile:
    """Fit the reference of one column (and its thresholds from reference chunks)."""
    kind = (
        "categorical"
        if (is_categorical(values) if categorical is None else categorical)
        else "numeric"
    )
    n = len(values)
    if kind == "numeric":
        x = to_float(values)
        ok = ~np.isnan(x)
        finite = x[ok & np.isfinite(x)]
        profile = ColumnProfile(name, kind, n, int((~ok).sum()), [])
        rng = np.random.default_rng(seed)
        if finite.size:
            distinct = np.unique(finite) if finite.size <= 200_000 else None
            if distinct is not None and len(distinct) == 1:
                # a constant: a bin for it alone, so that any other value shows
                edges = np.array([distinct[0], np.nextafter(distinct[0], np.inf)])
            elif distinct is not None and len(distinct) <= spec.bins:
                edges = (distinct[:-1] + distinct[1:]) / 2
            else:
                # Edges from at most 200k values: as good as from all of them, 10x faster.
                basis = finite if finite.size <= 200_000 else rng.choice(finite, 200_000)
                qs = np.quantile(basis, np.linspace(0, 1, spec.bins + 1)[1:-1])
                edges = np.unique(qs)
            profile.edges = [float(e) for e in edges]
            profile.mean, profile.std = float(finite.mean()), float(finite.std())
            profile.min, profile.max = float(finite.min()), float(finite.max())
            sample = finite if finite.size <= SAMPLE else rng.choice(finite, SAMPLE, replace=False)
            profile.sample = np.sort(sample).tolist()
        profile.counts = [0.0] * (len(profile.edges) + 2)
        idx = profile.index(values)
        counts = np.bincount(idx, minlength=profile.bins).astype(float)
        value_bins = profile.bins - 1
        finite_mask = ok & np.isfinite(x)
        sums = np.bincount(idx, weights=np.where(finite_mask, x, 0.0), minlength=profile.bins)
        finite_counts = np.bincount(idx[finite_mask], minlength=profile.bins)[:value_bins]
        with np.errstate(invalid="ignore", divide="ignore"):
            centers = np.where(finite_counts > 0, sums[:value_bins] / finite_counts, np.nan)
        profile.centers = _fill_centers(centers, profile.edges).tolist()
    else:
        arr = to_strings(values)
        vc = pc.value_counts(arr.drop_null())
        cats = vc.field("values").to_pylist()
        freq = vc.field("counts").to_numpy()
        order = np.argsort(-freq, kind="stable")
        top = [cats[i] for i in order[: spec.top_k]]
        known = [cats[i] for i in order] if len(cats) <= MAX_KNOWN else None
        profile = ColumnProfile(name, kind, n, int(arr.null_count), [], categories=top, known=known)
        profile.singletons = int((freq == 1).sum())
        profile.counts = [0.0] * (len(top) + 3)
        idx = profile.index(arr)
        counts = np.bincount(idx, minlength=profile.bins).astype(float)
    profile.counts = counts.tolist()
    _calibrate(profile, idx, spec)
    if classes is not None:
        for c in np.unique(classes[~_is_missing(classes)]):
            mask = classes == c
            profile.by_class[str(c)] = (
                np.bincount(idx[mask], minlength=profile.bins).astype(float).tolist()
            )
    return profile


def _is_missing(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        return np.isnan(a)
    return np.array([v is None for v in a]) if a.dtype == object else np.zeros(len(a), dtype=bool)


def _fill_centers(centers: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Empty bins get the middle of their edges, so centers increase."""
    e = np.asarray(edges, dtype=float)
    for i in np.flatnonzero(np.isnan(centers)):
        lo = e[i - 1] if i >= 1 and i - 1 < len(e) else (e[0] if len(e) else 0.0)
        hi = e[i] if i < len(e) else (e[-1] if len(e) else 0.0)
        centers[i] = (lo + hi) / 2
    return np.maximum.accumulate(centers)


def _calibrate(profile: ColumnProfile, idx: np.ndarray, spec: DriftSpec) -> None:
    """Thresholds from contiguous reference chunks, each compared with the rest."""
    n = len(idx)
    k = spec.chunks
    if n < 2 * k:
        profile.chunk_rows = n
        profile.thresholds = {}
        return
    chunk = chunk_ids(n, k)
    counts = (
        np.bincount(chunk * profile.bins + idx, minlength=k * profile.bins)
        .reshape(k, -1)
        .astype(float)
    )
    rest = counts.sum(axis=0, keepdims=True) - counts
    profile.chunk_rows = n // k
    found = effects(profile, rest, counts)
    profile.thresholds = {name: float(np.max(v)) for name, v in found.items()}


def effects(profile: ColumnProfile, ref: np.ndarray, cur: np.ndarray) -> dict[str, np.ndarray]:
    """PSI, Jensen-Shannon and (numeric) normed Wasserstein of each row of ``cur`` against the
    matching row of ``ref``, for one column."""
    out = {"psi": st.psi(ref, cur), "js": st.js_distance(ref, cur)}
    if profile.kind == "numeric":
        rows = ref.shape[0]
        widths = np.tile(profile.widths(), (rows, 1))
        scale = np.full(rows, profile.std or 0.0)
        out["wasserstein"] = st.wasserstein_binned(ref, cur, widths, scale)
    return out


def fit_profile(
    table: pa.Table,
    columns: Iterable[str],
    spec: DriftSpec,
    *,
    categorical: Iterable[str] = (),
    labels: pa.Array | pa.ChunkedArray | np.ndarray | None = None,
    predictions: np.ndarray | None = None,
    task: str | None = None,
    classes: Sequence[Any] = (),
    reference: dict[str, Any] | None = None,
) -> Profile:
    """Fit the reference profile of ``columns`` of ``table`` (and of the labels and predictions,
    when given). Labels of a classifier also give class-conditional counts, used to tell label
    shift from covariate shift."""
    cats = set(categorical)
    by_class = None
    if labels is not None and task == "binary":
        # one spelling from training to monitoring: 0/1, whether trained on booleans or numbers
        labels = binary_strings(
            labels if not isinstance(labels, np.ndarray) else pa.array(labels, from_pandas=True),
            classes,
        )
    if labels is not None and task in ("binary", "multiclass"):
        by_class = np.asarray(to_strings(labels).to_numpy(zero_copy_only=False), dtype=object)
    cols: dict[str, ColumnProfile] = {}
    for name in columns:
        cols[name] = fit_column(
            name, table[name], spec, categorical=(name in cats) or None, classes=by_class
        )
    if predictions is not None:
        cols[PREDICTION] = fit_column(
            PREDICTION, pa.array(prediction_values(predictions, task)), spec
        )
    if labels is not None:
        label_values = (
            labels if not isinstance(labels, np.ndarray) else pa.array(labels, from_pandas=True)
        )
        cols[LABEL] = fit_column(
            LABEL, label_values, spec, categorical=task in ("binary", "multiclass")
        )
    return Profile(
        cols,
        task=task,
        classes=[str(c) for c in classes],
        reference=dict(reference or {}),
        settings=spec.model_dump(),
    )


def prediction_values(predictions: np.ndarray, task: str | None) -> np.ndarray:
    """The one number per prediction that is profiled: the probability of the positive class
    (binary), the top class's probability (multiclass), or the value."""
    p = np.asarray(predictions, dtype=float)
    if p.ndim == 2:
        return p[:, -1] if task == "binary" and p.shape[1] == 2 else p.max(axis=1)
    return p


def model_profile(
    train: pa.Table,
    test: pa.Table,
    *,
    features: Sequence[str],
    categorical: Iterable[str],
    label: str,
    task: str,
    test_scores: np.ndarray,
    classes: Sequence[Any] | None,
    reference: dict[str, Any],
    spec: DriftSpec,
    threshold: float | None = None,
) -> Profile:
    """The reference profile of a freshly trained model: its features and labels as in its
    training rows, its predictions as on its held-out test rows (predictions on training rows
    would be overconfident), the test metrics, and how much the calibration gap varies between
    chunks of the test rows."""
    ref = dict(reference)
    if task in ("binary", "regression") and test.num_rows >= 2 * spec.chunks:
        # How much the calibration gap and the metrics vary between chunks of the held-out
        # rows: a window doing worse than the reference by less than that is neither concept
        # drift nor decay.
        from loopml.evaluation import metrics

        y = to_float(test[label])
        p = np.asarray(test_scores, dtype=float)
        chunk = chunk_ids(len(p), spec.chunks)
        if task == "binary":
            y = y > 0.5
            gaps = [
                abs(float(y[chunk == c].mean() - p[chunk == c].mean())) for c in range(spec.chunks)
            ]
            ref["calibration_limit"] = max(gaps)
            ref["calibration_chunk_rows"] = len(p) // spec.chunks
        found: dict[str, list[float]] = {}
        for c in range(spec.chunks):
            m = chunk == c
            try:
                values = metrics(
                    task, y[m], p[m], threshold=0.5 if threshold is None else threshold
                )
            except Exception:  # noqa: BLE001 - a chunk with one class has no AUC; skip it
                continue
            for k, v in values.items():
                if isinstance(v, float) and np.isfinite(v):
                    found.setdefault(k, []).append(v)
        ref["chunk_metrics"] = found
        ref["metric_chunk_rows"] = len(p) // spec.chunks
    profile = fit_profile(
        train,
        features,
        spec,
        categorical=categorical,
        labels=train[label],
        predictions=test_scores,
        task=task,
        classes=classes or (),
        reference=ref,
    )
    profile.threshold = threshold
    return profile


def chunk_ids(n: int, k: int) -> np.ndarray:
    """The chunk (0 to k-1) of each of n rows in order: k contiguous chunks of equal size."""
    return np.minimum(np.arange(n) * k // n, k - 1)


def dumps_profile(profile: Profile) -> bytes:
    import gzip

    import orjson

    return gzip.compress(
        orjson.dumps(profile.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY), 6, mtime=0
    )


def loads_profile(data: bytes) -> Profile:
    import gzip

    import orjson

    return canonical_labels(Profile.from_dict(orjson.loads(gzip.decompress(data))))


def canonical_labels(profile: Profile) -> Profile:
    """A binary profile with its classes spelled ``"0"``/``"1"``: profiles fitted before labels
    had one spelling kept a boolean label's ``"false"``/``"true"``."""
    if profile.task != "binary":
        return profile
    classes = profile.classes
    label = profile.columns.get(LABEL)
    if label is not None:
        label.categories = [binary_name(c, classes) for c in label.categories]
        if label.known is not None:
            label.known = [binary_name(c, classes) for c in label.known]
    for column in profile.columns.values():
        column.by_class = {binary_name(k, classes): v for k, v in column.by_class.items()}
    return profile
