"""Drift of every column of a window against its reference profile, all columns at once.

How a column is tested (chosen by its type and the window's size):

============  =====================================================  =======================
column        significance test                                      effect size
============  =====================================================  =======================
numeric       Kolmogorov-Smirnov on the raw values when the window   normed Wasserstein
              has at most ``exact_ks_max`` rows (exact p-value up    (W1 / reference std)
              to 500 values), from the bins above; a change of the
              missing rate adds a
              two-proportion test (the smaller p-value, doubled)
categorical   chi-square test of homogeneity over the top-k          Jensen-Shannon distance
              categories, "other", "unseen" and "missing"            (base 2)
============  =====================================================  =======================

PSI and Jensen-Shannon are reported for every column. A column has drifted when its p-value,
adjusted across all the columns of the check (Benjamini-Hochberg by default, or Bonferroni),
is below ``alpha`` *and* its effect size is above the largest one seen between the reference's
own chunks (scaled up for a window smaller than a chunk: PSI like 1/n, distances like
1/sqrt(n)). The first condition keeps wide tables from alarming by chance; the second keeps a
large window from alarming on a difference too small to matter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from loopml.monitoring import _stats as st
from loopml.monitoring._profile import ColumnProfile, Profile, fit_profile, to_float
from loopml.spec import DriftSpec


@dataclass
class ColumnDrift:
    """One column's drift in one window."""

    name: str
    kind: str
    rows: int
    test: str  # ks | ks_binned | chi2
    statistic: float
    p_value: float
    p_adjusted: float
    effect: str  # wasserstein | js
    value: float
    threshold: float
    psi: float
    js: float
    drifted: bool
    missing_ref: float
    missing_cur: float
    mean_ref: float | None = None
    mean_cur: float | None = None

    @property
    def score(self) -> float:
        """The effect size over its calibrated threshold (above 1: beyond natural variation)."""
        return self.value / self.threshold if self.threshold > 0 else float(self.value > 0) * 1e9

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["score"] = _finite(self.score)
        return {k: _finite(v) if isinstance(v, float) else v for k, v in out.items()}


@dataclass
class DriftResult:
    """The columns of one check (e.g. all features of a window), corrected together."""

    rows: int
    columns: list[ColumnDrift]
    alpha: float
    correction: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted(self) -> list[str]:
        return [c.name for c in self.columns if c.drifted]

    @property
    def share(self) -> float:
        return len(self.drifted) / len(self.columns) if self.columns else 0.0

    def column(self, name: str) -> ColumnDrift:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "alpha": self.alpha,
            "correction": self.correction,
            "drifted": self.drifted,
            "share": self.share,
            "columns": [c.to_dict() for c in self.columns],
        }


def _finite(v: float) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def pad(rows: Sequence[Sequence[float] | np.ndarray], width: int) -> np.ndarray:
    out = np.zeros((len(rows), width))
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def compare(
    profiles: Sequence[ColumnProfile],
    counts: Sequence[np.ndarray],
    spec: DriftSpec,
    *,
    raw: Mapping[str, np.ndarray] | None = None,
    reference: Sequence[np.ndarray] | None = None,
    means: Mapping[str, float] | None = None,
) -> DriftResult:
    """Test every column's window ``counts`` against its reference (its profile's counts, or
    ``reference`` when given, e.g. class-conditional counts). ``raw`` holds a numeric column's
    window values for the exact KS test on small windows."""
    if not profiles:
        return DriftResult(0, [], spec.alpha, spec.correction)
    width = max(p.bins for p in profiles)
    ref = pad([p.counts for p in profiles] if reference is None else reference, width)
    if reference is None:
        # A reference sample misses rare categories by chance: expect as many new ones as it
        # saw once (Good-Turing), rather than none, in its "(unseen)" bin.
        for i, p in enumerate(profiles):
            if p.kind == "categorical" and p.singletons:
                ref[i, len(p.categories) + 1] += p.singletons
    cur = pad(counts, width)
    n_cur = cur.sum(axis=1)
    psi = st.psi(ref, cur)
    js = st.js_distance(ref, cur)
    numeric = np.array([p.kind == "numeric" for p in profiles])
    widths = pad([p.widths() for p in profiles], width)
    scale = np.array([p.std or 0.0 for p in profiles])
    wd = st.wasserstein_binned(ref, cur, widths, scale)
    ks_d, ks_p = st.ks_binned(ref, cur)
    chi_stat, chi_p = st.chi2_contingency(ref, cur)
    # the missing bin is every profile's last
    last = np.array([p.bins - 1 for p in profiles])
    miss_ref, miss_cur = ref[np.arange(len(profiles)), last], cur[np.arange(len(profiles)), last]
    n_ref = ref.sum(axis=1)
    miss_p = st.two_proportions(miss_ref, n_ref, miss_cur, n_cur)
    tests, stats_, pvals = [], [], []
    for i, p in enumerate(profiles):
        if p.kind == "numeric":
            values = raw.get(p.name) if raw is not None else None
            if (
                values is not None
                and 0 < len(values) <= spec.exact_ks_max
                and p.sample
                and reference is None
            ):
                d, pv = st.ks_exact(np.asarray(p.sample), values[~np.isnan(values)])
                test = "ks"
            else:
                d, pv = float(ks_d[i]), float(ks_p[i])
                test = "ks_binned"
            if miss_ref[i] + miss_cur[i] > 0:
                pv = min(1.0, 2 * min(pv, float(miss_p[i])))
            tests.append(test)
            stats_.append(d)
            pvals.append(pv)
        else:
            tests.append("chi2")
            stats_.append(float(chi_stat[i]))
            pvals.append(float(chi_p[i]))
    p_arr = np.asarray(pvals)
    adjusted = st.adjust(p_arr, spec.correction)
    out = []
    for i, p in enumerate(profiles):
        # Wasserstein needs a spread to normalize by; a constant or all-missing reference
        # column is judged by Jensen-Shannon over its bins (and its missing rate) instead.
        effect = "wasserstein" if numeric[i] and (p.std or 0.0) > 0 else "js"
        value = float(wd[i] if effect == "wasserstein" else js[i])
        threshold = scaled_threshold(p, effect, float(n_cur[i]))
        enough = n_cur[i] >= spec.min_rows
        n_r = max(float(n_ref[i]), 1.0)
        n_c = max(float(n_cur[i]), 1.0)
        out.append(
            ColumnDrift(
                name=p.name,
                kind=p.kind,
                rows=int(n_cur[i]),
                test=tests[i],
                statistic=stats_[i],
                p_value=float(p_arr[i]),
                p_adjusted=float(adjusted[i]),
                effect=effect,
                value=value,
                threshold=threshold,
                psi=float(psi[i]),
                js=float(js[i]),
                drifted=bool(enough and adjusted[i] < spec.alpha and value > threshold),
                missing_ref=float(miss_ref[i] / n_r),
                missing_cur=float(miss_cur[i] / n_c),
                mean_ref=p.mean,
                mean_cur=(means or {}).get(p.name),
            )
        )
    return DriftResult(int(n_cur.max()) if len(n_cur) else 0, out, spec.alpha, spec.correction)


def scaled_threshold(profile: ColumnProfile, effect: str, n: float) -> float:
    """The calibrated threshold of ``effect`` for a window of ``n`` rows: chunk noise grows as
    windows shrink (PSI like 1/n, distances like 1/sqrt(n))."""
    base = profile.thresholds.get(effect, 0.0)
    m = profile.chunk_rows
    if n <= 0 or m <= 0 or n >= m:
        return base
    factor = m / n
    return base * (factor if effect == "psi" else np.sqrt(factor))


def window_counts(
    profiles: Iterable[ColumnProfile], table: pa.Table
) -> tuple[list[np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    """Counts of every profiled column over one window's rows, their raw numeric values (for the
    exact test) and their means."""
    counts, raw, means = [], {}, {}
    for p in profiles:
        if p.name not in table.column_names:
            counts.append(np.zeros(p.bins))
            counts[-1][-1] = table.num_rows  # an absent column is all missing
            continue
        values = table[p.name]
        counts.append(p.count(values))
        if p.kind == "numeric":
            x = to_float(values)
            raw[p.name] = x
            finite = x[np.isfinite(x)]
            if finite.size:
                means[p.name] = float(finite.mean())
    return counts, raw, means


def detect_drift(
    reference: Any,
    current: Any,
    *,
    columns: Sequence[str] | None = None,
    categorical: Iterable[str] = (),
    spec: DriftSpec | None = None,
) -> DriftResult:
    """Drift of ``current`` against ``reference`` (pandas DataFrames or Arrow tables), every
    column at once: fit a profile on the reference, count the current rows over its bins, test.

    >>> import pandas as pd, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"x": rng.normal(size=5000), "c": rng.choice(list("abc"), 5000)})
    >>> cur = pd.DataFrame({"x": rng.normal(1, 1, 5000), "c": rng.choice(list("abc"), 5000)})
    >>> detect_drift(ref, cur).drifted
    ['x']
    """
    spec = spec or DriftSpec()
    ref_t, cur_t = _table(reference), _table(current)
    cols = list(columns or ref_t.column_names)
    profile = fit_profile(ref_t, cols, spec, categorical=categorical)
    return drift_of(profile, cur_t, spec, columns=cols)


def drift_of(
    profile: Profile, table: pa.Table, spec: DriftSpec, *, columns: Sequence[str] | None = None
) -> DriftResult:
    """Drift of a window's rows against a fitted profile."""
    profiles = [profile.columns[c] for c in (columns or profile.features)]
    counts, raw, means = window_counts(profiles, table)
    return compare(profiles, counts, spec, raw=raw, means=means)


def _table(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    return pa.Table.from_pandas(data, preserve_index=False)
