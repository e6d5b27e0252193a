"""Drift: the statistics against scipy, false alarms, power, calibration and bad input."""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from loopml.monitoring import _stats as st
from loopml.monitoring._drift import detect_drift, drift_of
from loopml.monitoring._profile import (
    Profile,
    dumps_profile,
    fit_column,
    fit_profile,
    loads_profile,
)
from loopml.spec import DriftSpec

NUMERIC = [f"x{i:02d}" for i in range(20)]
CATEGORICAL = [f"c{i}" for i in range(5)]
SIZES = (2, 5, 12, 40, 200)  # categories per categorical feature


def numeric(i: int, n: int, rng: np.random.Generator, shift: float = 0.0) -> pa.Array:
    """Feature ``x{i}``: one of ten distributions; ``shift`` moves it by that many sds."""
    kind = i % 10
    if kind == 0:
        x, sd = rng.normal(3.0, 2.0, n), 2.0
    elif kind == 1:
        x, sd = rng.lognormal(0.0, 0.5, n), 0.6
    elif kind == 2:
        x, sd = rng.poisson(4.0, n).astype(float), 2.0  # integer-valued, many ties
    elif kind == 3:
        x, sd = rng.integers(0, 6, n).astype(float), 1.7  # one bin per value
    elif kind == 4:
        x, sd = rng.exponential(1.0, n), 1.0
    elif kind == 5:
        x, sd = rng.standard_t(3, n), 1.7  # heavy tails
    elif kind == 6:
        x, sd = rng.uniform(0.0, 10.0, n), 2.9
    elif kind == 7:
        x = np.where(rng.random(n) < 0.3, rng.normal(-2, 0.5, n), rng.normal(2, 1, n))
        sd = 2.0
    elif kind == 8:
        x, sd = rng.normal(-50.0, 0.1, n), 0.1
    else:
        x, sd = rng.beta(2.0, 5.0, n), 0.16
    x = x + shift * sd
    if i % 4 == 3:  # some features have missing values (5 %)
        x[rng.random(n) < 0.05] = np.nan
    return pa.array(x, mask=np.isnan(x))


def categorical(i: int, n: int, rng: np.random.Generator, unseen: float = 0.0) -> pa.Array:
    """Feature ``c{i}``: strings with Zipf-like frequencies; ``unseen`` of the rows get a
    category the reference never has."""
    size = SIZES[i]
    names = [f"v{k}" for k in range(size)]
    weights = 1.0 / np.arange(1, size + 1) ** 1.1
    idx = rng.choice(size, size=n, p=weights / weights.sum())
    if unseen:
        names.append("brand-new")
        idx[rng.random(n) < unseen] = size
    values = pa.array(names, pa.string()).take(pa.array(idx))
    if i == 2:  # one categorical feature with missing values (2 %)
        values = pc.if_else(pa.array(rng.random(n) < 0.02), pa.scalar(None, pa.string()), values)
    return values


def features(
    n: int,
    seed: int,
    *,
    shift: dict[str, float] | None = None,
    unseen: dict[str, float] | None = None,
) -> pa.Table:
    """25 features: 20 numeric, 5 categorical, drawn afresh from the same distributions."""
    rng = np.random.default_rng(seed)
    shift, unseen = shift or {}, unseen or {}
    cols = {c: numeric(i, n, rng, shift.get(c, 0.0)) for i, c in enumerate(NUMERIC)}
    cols |= {c: categorical(i, n, rng, unseen.get(c, 0.0)) for i, c in enumerate(CATEGORICAL)}
    return pa.table(cols)


# --- the statistics against scipy ------------------------------------------------------------


def test_chi2_contingency_equals_scipy_without_continuity_correction() -> None:
    rng = np.random.default_rng(1)
    for bins in (2, 3, 7, 25):
        ref = rng.integers(1, 500, size=(6, bins)).astype(float)
        cur = rng.integers(1, 500, size=(6, bins)).astype(float)
        stat, p = st.chi2_contingency(ref, cur)
        for f in range(6):
            expected = stats.chi2_contingency(np.vstack([ref[f], cur[f]]), correction=False)
            assert stat[f] == pytest.approx(expected.statistic, rel=1e-10)
            assert p[f] == pytest.approx(expected.pvalue, rel=1e-8, abs=1e-300)


def test_chi2_contingency_ignores_bins_empty_on_both_sides() -> None:
    """Features are padded with zero bins to a common width: padding changes nothing."""
    ref = np.array([[30.0, 50.0, 20.0, 0.0, 0.0]])
    cur = np.array([[40.0, 35.0, 25.0, 0.0, 0.0]])
    stat, p = st.chi2_contingency(ref, cur)
    expected = stats.chi2_contingency(np.vstack([ref[0, :3], cur[0, :3]]), correction=False)
    assert stat[0] == pytest.approx(expected.statistic)
    assert p[0] == pytest.approx(expected.pvalue)


def test_ks_exact_equals_scipy() -> None:
    """The exact D always; the exact p-value on small samples, the asymptotic one above."""
    rng = np.random.default_rng(2)
    for n, m in ((50, 80), (400, 500), (1000, 1000), (3000, 2000)):
        a, b = rng.normal(size=n), rng.normal(0.1, 1.0, size=m)
        method = "exact" if min(n, m) <= st.EXACT_P_MAX else "asymp"
        expected = stats.ks_2samp(a, b, method=method)
        assert st.ks_exact(a, b) == pytest.approx((expected.statistic, expected.pvalue))
        assert st.ks_exact(a, b)[0] == pytest.approx(stats.ks_2samp(a, b).statistic)
    assert st.ks_exact(np.array([]), np.array([1.0])) == (0.0, 1.0)


def test_ks_binned_is_at_most_the_exact_statistic() -> None:
    rng = np.random.default_rng(3)
    for shift in (0.0, 0.1, 0.5, 2.0):
        a, b = rng.normal(size=4000), rng.normal(shift, 1.3, size=3000)
        edges = np.quantile(a, np.linspace(0, 1, 11)[1:-1])
        ref = np.bincount(np.searchsorted(edges, a, side="right"), minlength=10)
        cur = np.bincount(np.searchsorted(edges, b, side="right"), minlength=10)
        d, _ = st.ks_binned(ref[None].astype(float), cur[None].astype(float))
        assert 0 <= d[0] <= stats.ks_2samp(a, b).statistic + 1e-12


def test_js_distance_equals_scipy_base_2() -> None:
    rng = np.random.default_rng(4)
    ref = rng.integers(0, 100, size=(8, 12)).astype(float)
    cur = rng.integers(0, 100, size=(8, 12)).astype(float)
    ref[0, 3] = cur[1, 5] = 0  # a bin empty on one side
    got = st.js_distance(ref, cur)
    for f in range(8):
        assert got[f] == pytest.approx(jensenshannon(ref[f], cur[f], base=2), abs=1e-12)
    disjoint = st.js_distance(np.array([[10.0, 0.0]]), np.array([[0.0, 5.0]]))
    assert disjoint[0] == pytest.approx(1.0)


def test_psi_by_hand() -> None:
    ref = np.array([[10.0, 20.0, 30.0, 40.0, 0.0]])  # the last bin is padding
    cur = np.array([[20.0, 20.0, 30.0, 30.0, 0.0]])
    # half a count added to every live bin: p = (10.5, 20.5, 30.5, 40.5) / 102, q likewise;
    # the middle bins are equal on both sides and add nothing:
    # 10/102 * ln(20.5/10.5) + (-10/102) * ln(30.5/40.5) = 0.0656 + 0.0278
    by_hand = 10 / 102 * np.log(20.5 / 10.5) - 10 / 102 * np.log(30.5 / 40.5)
    assert by_hand == pytest.approx(0.0934, abs=1e-4)
    assert st.psi(ref, cur)[0] == pytest.approx(by_hand, rel=1e-12)
    assert st.psi(ref, ref)[0] == 0.0
    # an empty bin on one side stays finite
    assert np.isfinite(st.psi(np.array([[10.0, 0.0]]), np.array([[0.0, 10.0]]))[0])


def test_adjust_matches_scipy_bh_and_bonferroni() -> None:
    rng = np.random.default_rng(5)
    for k in (1, 2, 5, 25, 200):
        p = rng.random(k) ** 3
        p[: k // 3] = p[0]  # ties
        bh = st.adjust(p, "bh")
        if hasattr(stats, "false_discovery_control"):
            np.testing.assert_allclose(bh, stats.false_discovery_control(p, method="bh"))
        assert (bh >= p - 1e-15).all() and (bh <= 1).all()
        np.testing.assert_allclose(st.adjust(p, "bonferroni"), np.minimum(p * k, 1.0))
    assert st.adjust(np.array([]), "bh").size == 0


def test_binned_wasserstein_normed_is_close_to_scipy_for_a_one_sd_shift() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.normal(0, 1, 50_000), rng.normal(1, 1, 50_000)
    profile = fit_column("x", pa.array(a), DriftSpec(bins=20))
    got = st.wasserstein_binned(
        np.array([profile.counts]),
        np.array([profile.count(pa.array(b))]),
        np.array([profile.widths()]),
        np.array([profile.std]),
    )[0]
    exact = stats.wasserstein_distance(a, b) / a.std()
    assert got == pytest.approx(exact, rel=0.10)


# --- false alarms and power -----------------------------------------------------------------


@pytest.mark.slow
def test_no_drift_control_raises_false_alarms_in_at_most_5_percent_of_runs() -> None:
    alarms = []
    for run in range(100):
        reference = features(3000, 2 * run)
        current = features(2000, 2 * run + 1)
        result = detect_drift(reference, current, categorical=CATEGORICAL)
        assert len(result.columns) == 25
        if result.drifted:
            alarms.append((run, result.drifted))
    assert len(alarms) <= 5, alarms


@pytest.mark.parametrize(
    "size",
    [
        5,
        200,
    ],
)
def test_the_categorical_test_alone_holds_its_level(size: int) -> None:
    """Before the effect-size threshold: p < 0.05 in about 5 % of same-distribution runs."""
    names = pa.array([f"v{k}" for k in range(size)], pa.string())
    weights = 1.0 / np.arange(1, size + 1) ** 1.1
    significant = 0
    for run in range(200):
        rng = np.random.default_rng(run)
        ref, cur = (
            pa.table({"c": names.take(pa.array(rng.choice(size, n, p=weights / weights.sum())))})
            for n in (4000, 3000)
        )
        significant += detect_drift(ref, cur).column("c").p_value < 0.05
    assert significant <= 20  # 5 % of 200 is 10; 20 is 3.4 binomial sds above


def test_a_mean_shift_of_0_2_sd_in_one_feature_is_found() -> None:
    found = 0
    for seed in range(10):
        reference = features(20_000, 100 + seed)
        current = features(10_000, 200 + seed, shift={"x00": 0.2})
        result = detect_drift(reference, current, categorical=CATEGORICAL)
        assert result.column("x00").test == "ks_binned"
        found += result.drifted == ["x00"]
    assert found >= 9


def test_a_new_category_at_5_percent_is_found_in_the_unseen_bin() -> None:
    spec = DriftSpec()
    found = 0
    for seed in range(10):
        reference = features(20_000, 300 + seed)
        current = features(10_000, 400 + seed, unseen={"c3": 0.05})
        profile = fit_profile(reference, reference.column_names, spec, categorical=CATEGORICAL)
        result = drift_of(profile, current, spec)
        found += result.drifted == ["c3"]
        column = profile.columns["c3"]
        counts = column.count(current["c3"])
        labels = column.labels
        unseen = labels.index("(unseen)")
        assert column.counts[unseen] == 0
        new = pc.sum(pc.equal(current["c3"], "brand-new")).as_py()
        assert counts[unseen] == new
        assert new == pytest.approx(500, rel=0.2)
        assert result.column("c3").test == "chi2"
    assert found >= 9


def test_a_label_prior_change_from_20_to_30_percent_is_found() -> None:
    found = 0
    for seed in range(10):
        rng = np.random.default_rng(500 + seed)
        reference = pa.table({"label": (rng.random(20_000) < 0.2).astype(np.int64)})
        current = pa.table({"label": (rng.random(10_000) < 0.3).astype(np.int64)})
        unchanged = pa.table({"label": (rng.random(10_000) < 0.2).astype(np.int64)})
        result = detect_drift(reference, current, categorical=["label"])
        assert result.column("label").kind == "categorical"
        found += result.drifted == ["label"]
        assert detect_drift(reference, unchanged, categorical=["label"]).drifted == []
    assert found >= 9


# --- profiles ------------------------------------------------------------------------------


def test_profile_round_trip_through_json_gives_identical_results() -> None:
    spec = DriftSpec()
    reference = features(6000, 600)
    current = features(3000, 601, shift={"x04": 0.5}, unseen={"c1": 0.05})
    large = features(12_000, 602, shift={"x06": 0.3})
    profile = fit_profile(reference, reference.column_names, spec, categorical=CATEGORICAL)
    restored = Profile.from_dict(orjson.loads(orjson.dumps(profile.to_dict())))
    assert restored.to_dict() == profile.to_dict()
    assert loads_profile(dumps_profile(profile)).to_dict() == profile.to_dict()
    for window in (current, large):  # exact KS and binned KS
        assert (
            drift_of(restored, window, spec).to_dict() == drift_of(profile, window, spec).to_dict()
        )
    assert drift_of(profile, current, spec).drifted == ["x04", "c1"]


def test_a_trending_feature_gets_a_larger_threshold_than_a_stationary_one() -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    trend = np.linspace(0.0, 1.0, n)  # the mean drifts by 1 sd over the reference
    reference = pa.table({"trend": rng.normal(size=n) + trend, "flat": rng.normal(size=n)})
    # a window from the reference's own range: the level of its 70th-80th percent
    inside = pa.table({"trend": rng.normal(size=5000) + 0.75, "flat": rng.normal(size=5000)})
    spec = DriftSpec()
    profile = fit_profile(reference, ["trend", "flat"], spec)
    t, f = profile.columns["trend"].thresholds, profile.columns["flat"].thresholds
    for effect in ("psi", "js", "wasserstein"):
        assert t[effect] > 3 * f[effect], effect
    assert drift_of(profile, inside, spec).drifted == []
    # the same level against a stationary reference is drift: the threshold made the difference
    stationary = pa.table({"trend": rng.normal(size=n) + 0.5})
    assert detect_drift(stationary, inside.select(["trend"])).drifted == ["trend"]


# --- bad input -----------------------------------------------------------------------------


def test_a_column_missing_from_the_window_counts_as_all_missing() -> None:
    reference = features(4000, 700)
    current = features(3000, 701).drop_columns(["x00", "c0"])
    result = detect_drift(reference, current, categorical=CATEGORICAL)
    for name in ("x00", "c0"):
        column = result.column(name)
        assert column.missing_ref == 0.0
        assert column.missing_cur == 1.0
        assert column.rows == 3000
    assert sorted(result.drifted) == ["c0", "x00"]


def test_a_column_missing_from_the_window_is_not_flagged_when_it_was_always_missing() -> None:
    n = 3000
    reference = pa.table({"x": pa.nulls(n, pa.float64()), "y": np.arange(n, dtype=float)})
    current = pa.table({"y": np.arange(n, dtype=float)})
    result = detect_drift(reference, current)
    assert result.column("x").missing_cur == 1.0
    assert result.drifted == []


def test_a_jump_in_the_missing_rate_is_flagged() -> None:
    rng = np.random.default_rng(9)
    reference = pa.table({"x": rng.normal(size=4000)})
    y = rng.normal(size=3000)
    result = detect_drift(reference, pa.table({"x": pa.array(y, mask=rng.random(3000) < 0.3)}))
    assert result.column("x").missing_cur == pytest.approx(0.3, abs=0.03)
    assert result.drifted == ["x"]


def test_all_null_columns_in_both_do_not_alarm_or_break() -> None:
    n = 3000
    for null in (pa.nulls(n, pa.float64()), pa.nulls(n, pa.string()), pa.nulls(n)):
        reference = pa.table({"x": null, "y": np.random.default_rng(0).normal(size=n)})
        current = pa.table({"x": null, "y": np.random.default_rng(1).normal(size=n)})
        result = detect_drift(reference, current)
        assert result.drifted == []
        column = result.column("x")
        assert (column.missing_ref, column.missing_cur) == (1.0, 1.0)
        orjson.dumps(result.to_dict())


def test_an_all_null_numeric_column_that_gets_values_is_flagged() -> None:
    n = 3000
    reference = pa.table({"x": pa.nulls(n, pa.float64())})
    current = pa.table({"x": np.random.default_rng(0).normal(size=n)})
    result = detect_drift(reference, current)
    assert result.column("x").p_adjusted < 0.05
    assert result.drifted == ["x"]


def test_an_all_null_untyped_column_that_gets_values_is_flagged() -> None:
    n = 3000
    reference = pa.table({"x": pa.nulls(n)})
    current = pa.table({"x": np.random.default_rng(0).normal(size=n)})
    assert detect_drift(reference, current).drifted == ["x"]


def test_a_constant_column_does_not_alarm_while_constant() -> None:
    n = 3000
    reference = pa.table({"k": np.full(n, 5.0), "s": ["a"] * n})
    current = pa.table({"k": np.full(n // 2, 5.0), "s": ["a"] * (n // 2)})
    result = detect_drift(reference, current)
    assert result.drifted == []
    orjson.dumps(result.to_dict())


def test_a_constant_column_that_changes_is_flagged() -> None:
    n = 3000
    reference = pa.table({"k": np.full(n, 5.0)})
    for values in (np.full(n, 7.0), np.random.default_rng(0).normal(5.0, 1.0, n)):
        result = detect_drift(reference, pa.table({"k": values}))
        assert result.column("k").p_adjusted < 0.05
        assert result.drifted == ["k"]


def test_a_constant_categorical_column_that_changes_is_flagged() -> None:
    n = 3000
    reference = pa.table({"s": ["a"] * n})
    assert detect_drift(reference, pa.table({"s": ["b"] * n})).drifted == ["s"]


def _with_infinities(n: int, seed: int, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n) + shift
    x[rng.random(n) < 0.01] = np.inf
    x[rng.random(n) < 0.01] = -np.inf
    return pa.table({"x": x})


def test_infinite_values_do_not_alarm_on_the_same_distribution() -> None:
    for seed in range(5):
        result = detect_drift(_with_infinities(4000, seed), _with_infinities(3000, seed + 50))
        assert result.drifted == []
        assert np.isfinite(result.column("x").mean_cur or np.nan)


def test_infinite_values_in_the_reference_still_let_a_shift_be_found() -> None:
    result = detect_drift(_with_infinities(4000, 0), _with_infinities(3000, 1, shift=1.0))
    column = result.column("x")
    assert np.isfinite(column.value) and np.isfinite(column.threshold)
    assert result.drifted == ["x"]


def test_infinite_values_only_in_the_window_are_counted_in_the_outer_bins() -> None:
    rng = np.random.default_rng(8)
    reference = pa.table({"x": rng.normal(size=4000)})
    x = rng.normal(size=3000)
    x[:600] = np.inf
    result = detect_drift(reference, pa.table({"x": x}))
    assert np.isfinite(result.column("x").value)
    assert result.drifted == ["x"]


def test_windows_below_min_rows_are_never_flagged() -> None:
    spec = DriftSpec(min_rows=100)
    reference = features(4000, 800)
    profile = fit_profile(reference, reference.column_names, spec, categorical=CATEGORICAL)
    for rows in (1, 10, 99):
        window = features(rows, 801, shift=dict.fromkeys(NUMERIC, 5.0), unseen={"c0": 0.9})
        result = drift_of(profile, window, spec)
        assert result.drifted == []
        assert all(c.rows == rows for c in result.columns)
    window = features(100, 801, shift=dict.fromkeys(NUMERIC, 5.0))
    assert drift_of(profile, window, spec).drifted  # at min_rows the test runs


def test_an_empty_window_is_not_flagged() -> None:
    spec = DriftSpec()
    reference = features(4000, 900)
    profile = fit_profile(reference, reference.column_names, spec, categorical=CATEGORICAL)
    result = drift_of(profile, reference.slice(0, 0), spec)
    assert result.drifted == []
    assert result.rows == 0
    orjson.dumps(result.to_dict())
