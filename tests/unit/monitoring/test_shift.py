"""Telling the kinds of shift apart (issue 7): covariate, label and concept shift injected into
synthetic 10,000-row windows, each judged against a reference profile with
:func:`evaluate_window`.

The data are drawn generatively, y first and then x given y, with the features independent given
the class: 20 numeric features (three informative, Gaussian given the class with sd 1) and 5
categorical ones (one informative). A logistic regression on these features is then the true
model, so it is calibrated, which the concept test and the label-free estimate (CBPE) rely on.

- Label shift: a new prior, P(x | y) unchanged.
- Covariate shift: P(x) changes and P(y | x) does not. For an uninformative feature, moving it
  (or adding a category to it) is enough. For an informative one, the window is the reference
  tilted by exp(t * x01): tilting by a function of x alone keeps P(y | x) exactly, and for
  Gaussian class conditionals it is again the generative model, with x01 moved by t in both
  classes and the prior's log-odds moved by t * mu. t is solved so that the marginal mean of x01
  moves by 0.2 of its marginal sd.
- Concept drift: the same P(x), and P(y | x) with the effect of x01 reversed.

Each scenario is judged on 5 windows drawn with their own seeds: the right kind must be flagged in
at least 4 and any other kind in at most 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pytest
from scipy import optimize, special
from sklearn.linear_model import LogisticRegression

from loopml.evaluation import metrics
from loopml.monitoring._monitor import Evaluation, evaluate_window
from loopml.monitoring._performance import decay, natural_variation
from loopml.monitoring._profile import Profile, fit_profile, model_profile
from loopml.spec import MonitoringSpec

# One worker runs the module (make test's --dist loadgroup): the reference is fitted once.
pytestmark = pytest.mark.xdist_group("monitoring_shift")

NUMERIC = [f"x{i:02d}" for i in range(20)]
CATEGORICAL = [f"c{i}" for i in range(5)]
FEATURES = NUMERIC + CATEGORICAL
KINDS = ("covariate", "label", "concept")
PRIOR = 0.2
MU = {"x00": 0.9, "x01": 0.6, "x02": 0.4}  # class-1 mean of the informative features (sd 1)
C0_LEVELS = ("a", "b", "c", "d")
C0_GIVEN = {False: (0.4, 0.3, 0.2, 0.1), True: (0.2, 0.25, 0.25, 0.3)}  # P(c0 | y)
LEVELS = {"c1": 3, "c2": 6, "c3": 12, "c4": 30}  # uninformative; c4 has more than top_k
UNSEEN = "c2_new"
WINDOW = 10_000
SEEDS = range(5)
X04_SD = 2.0  # x04 is N(5, 2), uninformative


def noise(i: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """An uninformative numeric feature, of one of four shapes."""
    kind = i % 4
    if kind == 0:
        return rng.normal(5.0, X04_SD, n)
    if kind == 1:
        return rng.lognormal(0.0, 0.5, n)
    if kind == 2:
        return rng.uniform(0.0, 10.0, n)
    return rng.exponential(1.0, n)


def sample(
    n: int,
    rng: np.random.Generator,
    *,
    prior: float = PRIOR,
    move: dict[str, float] | None = None,
    unseen: float = 0.0,
) -> tuple[pa.Table, np.ndarray]:
    """``n`` rows of the generative model (y, then x given y); ``move`` adds a constant to
    numeric features, ``unseen`` is the share of rows whose ``c2`` is a new category."""
    y = rng.random(n) < prior
    cols: dict[str, np.ndarray] = {}
    for i, name in enumerate(NUMERIC):
        cols[name] = rng.normal(0.0, 1.0, n) + MU[name] * y if name in MU else noise(i, n, rng)
    for name, delta in (move or {}).items():
        cols[name] = cols[name] + delta
    cols["c0"] = np.where(
        y,
        rng.choice(C0_LEVELS, n, p=C0_GIVEN[True]),
        rng.choice(C0_LEVELS, n, p=C0_GIVEN[False]),
    )
    for name, k in LEVELS.items():
        weights = 1 / np.arange(1, k + 1)
        cols[name] = rng.choice([f"{name}_{j}" for j in range(k)], n, p=weights / weights.sum())
    if unseen:
        cols["c2"] = np.where(rng.random(n) < unseen, UNSEEN, cols["c2"])
    return pa.table(cols), y.astype(np.int64)


def true_logit(table: pa.Table) -> np.ndarray:
    """log P(y=1 | x) / P(y=0 | x) of the generative model (naive Bayes is exact here)."""
    out = np.full(table.num_rows, special.logit(PRIOR))
    for name, mu in MU.items():
        out += mu * table[name].to_numpy() - mu**2 / 2
    c0 = table["c0"].to_numpy(zero_copy_only=False)
    for level, p0, p1 in zip(C0_LEVELS, C0_GIVEN[False], C0_GIVEN[True], strict=True):
        out[c0 == level] += np.log(p1 / p0)
    return out


def design(table: pa.Table) -> np.ndarray:
    """The model's inputs: the numeric features and c0 one-hot."""
    c0 = table["c0"].to_numpy(zero_copy_only=False)
    dummies = [(c0 == level).astype(float) for level in C0_LEVELS[1:]]
    return np.column_stack([table[c].to_numpy() for c in NUMERIC] + dummies)


def tilt(feature: str, shift_sd: float) -> tuple[float, float]:
    """(t, new prior) of the exp(t * x) tilt that moves the marginal mean of an informative
    feature by ``shift_sd`` of its marginal sd."""
    mu = MU[feature]
    sd = np.sqrt(1 + PRIOR * (1 - PRIOR) * mu**2)

    def prior(t: float) -> float:
        return float(special.expit(special.logit(PRIOR) + t * mu))

    t = optimize.brentq(lambda t: t + (prior(t) - PRIOR) * mu - shift_sd * sd, 0.0, 1.0)
    return float(t), prior(t)


def informative_mean_shift(rng: np.random.Generator) -> tuple[pa.Table, np.ndarray]:
    t, prior = tilt("x01", 0.2)
    return sample(WINDOW, rng, prior=prior, move={"x01": t})


def concept(rng: np.random.Generator) -> tuple[pa.Table, np.ndarray]:
    """Inputs from the reference; outcomes with the effect of x01 reversed."""
    table, _ = sample(WINDOW, rng)
    mu, x = MU["x01"], table["x01"].to_numpy()
    logit = true_logit(table) - 2 * (mu * x - mu**2 / 2)
    return table, (rng.random(WINDOW) < special.expit(logit)).astype(np.int64)


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str | None  # the kind of shift injected
    injected: str | None  # the feature that moved, for covariate shifts
    draw: Callable[[np.random.Generator], tuple[pa.Table, np.ndarray]]


SCENARIOS = [
    Scenario("no shift", None, None, lambda rng: sample(WINDOW, rng)),
    Scenario(
        "mean +0.2 sd, uninformative x04",
        "covariate",
        "x04",
        lambda rng: sample(WINDOW, rng, move={"x04": 0.2 * X04_SD}),
    ),
    Scenario("mean +0.2 sd, informative x01", "covariate", "x01", informative_mean_shift),
    Scenario(
        "new category at 5% in c2", "covariate", "c2", lambda rng: sample(WINDOW, rng, unseen=0.05)
    ),
    Scenario("prior 20% -> 30%", "label", None, lambda rng: sample(WINDOW, rng, prior=0.3)),
    Scenario("effect of x01 reversed", "concept", None, concept),
]


def draw(scenario: Scenario, seed: int) -> tuple[pa.Table, np.ndarray]:
    # Seeds of their own per scenario: windows of two scenarios share no draws.
    return scenario.draw(np.random.default_rng([SCENARIOS.index(scenario) + 1, seed]))


@dataclass(frozen=True)
class Reference:
    model: LogisticRegression
    profile: Profile
    spec: MonitoringSpec

    def evaluate(self, table: pa.Table, y: np.ndarray | None) -> Evaluation:
        scores = self.model.predict_proba(design(table))[:, 1]
        return evaluate_window(
            self.profile, table, self.spec, scores=scores, labels=y, task="binary", threshold=0.5
        )


@pytest.fixture(scope="module")
def reference() -> Reference:
    """A logistic regression trained on 20,000 rows and its profile (features and labels of the
    training rows, predictions and metrics of 10,000 held-out rows)."""
    rng = np.random.default_rng(0)
    train, y_train = sample(20_000, rng)
    test, y_test = sample(10_000, rng)
    model = LogisticRegression(max_iter=1000).fit(design(train), y_train)
    scores = model.predict_proba(design(test))[:, 1]
    spec = MonitoringSpec()
    profile = model_profile(
        train.append_column("y", pa.array(y_train)),
        test.append_column("y", pa.array(y_test)),
        features=FEATURES,
        categorical=CATEGORICAL,
        label="y",
        task="binary",
        test_scores=scores,
        classes=[0, 1],
        reference=metrics("binary", y_test.astype(bool), scores),
        spec=spec.drift,
    )
    return Reference(model, profile, spec)


def test_the_reference_model_is_calibrated(reference: Reference) -> None:
    # What the concept test (a calibration gap) and CBPE assume of the model.
    table, y = sample(WINDOW, np.random.default_rng(99))
    m = metrics("binary", y.astype(bool), reference.model.predict_proba(design(table))[:, 1])
    assert m["ece"] < 0.02 and m["roc_auc"] > 0.75


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_an_injected_shift_is_detected_as_its_kind(
    reference: Reference, scenario: Scenario
) -> None:
    evals = [reference.evaluate(*draw(scenario, seed)) for seed in SEEDS]
    found = {k: sum(k in e.shift.kinds for e in evals) for k in KINDS}
    seen = [e.shift.kinds for e in evals]
    for kind in KINDS:
        if kind == scenario.kind:
            assert found[kind] >= 4, f"{scenario.name}: {kind} in {found[kind]}/5 windows: {seen}"
        else:
            assert found[kind] <= 1, f"{scenario.name}: {kind} in {found[kind]}/5 windows: {seen}"
    assert all(e.shift.labels_known and e.labelled == WINDOW for e in evals)
    if scenario.injected is not None:
        hit = sum(scenario.injected in e.features.drifted for e in evals)
        others = sum(bool(set(e.features.drifted) - {scenario.injected}) for e in evals)
        drifted = [e.features.drifted for e in evals]
        assert hit >= 4, f"{scenario.injected} drifted in {hit}/5 windows: {drifted}"
        assert others <= 1, f"other features drifted in {others}/5 windows: {drifted}"


def test_no_shift_no_drifted_feature(reference: Reference) -> None:
    scenario = SCENARIOS[0]
    evals = [reference.evaluate(*draw(scenario, seed)) for seed in SEEDS]
    assert sum(bool(e.features.drifted) for e in evals) <= 1, [e.features.drifted for e in evals]
    assert sum(bool(e.decay["decayed"]) for e in evals) <= 1


def test_the_mean_shift_injected_is_two_tenths_of_an_sd(reference: Reference) -> None:
    """The generator does what the scenarios claim: the window mean of the shifted feature is
    0.2 reference sd away (the informative one through the tilt, with its prior moved too)."""
    for scenario in SCENARIOS[1:3]:
        table, _ = draw(scenario, 0)
        ref = reference.profile.columns[scenario.injected]
        moved = (float(np.mean(table[scenario.injected].to_numpy())) - ref.mean) / ref.std
        assert moved == pytest.approx(0.2, abs=0.04), scenario.name


def test_label_shift_keeps_the_features_within_each_class(reference: Reference) -> None:
    evals = [reference.evaluate(*draw(SCENARIOS[4], seed)) for seed in SEEDS]
    for e in evals:
        assert e.label is not None and e.label.drifted
        assert e.performance["positive_rate"] == pytest.approx(0.3, abs=0.02)
    # The informative features follow the new class mix overall (explained, not covariate);
    # within each class they match the reference.
    assert sum(bool(e.conditional.drifted) for e in evals if e.conditional) <= 1
    assert any(set(e.features.drifted) & {"x00", "x01", "c0"} for e in evals)


def test_concept_drift_keeps_the_inputs_and_loses_performance(reference: Reference) -> None:
    evals = [reference.evaluate(*draw(SCENARIOS[5], seed)) for seed in SEEDS]
    assert sum(bool(e.features.drifted) for e in evals) <= 1
    assert all(e.decay["decayed"] and e.decay["drop"] > 0.1 for e in evals)


def test_a_new_category_lands_in_the_unseen_bin(reference: Reference) -> None:
    column = reference.profile.columns["c2"]
    bins = column.labels
    for scenario, share in ((SCENARIOS[3], 0.05), (SCENARIOS[0], 0.0)):
        table, _ = draw(scenario, 0)
        counts = column.count(table["c2"]) / table.num_rows
        assert counts[bins.index("(unseen)")] == pytest.approx(share, abs=0.01)
        assert counts[bins.index("(other)")] == 0 and counts[bins.index("(missing)")] == 0
    assert UNSEEN not in column.categories and UNSEEN not in (column.known or [])


def test_without_labels_a_covariate_shift_is_still_reported(reference: Reference) -> None:
    table, _ = draw(SCENARIOS[1], 0)
    e = reference.evaluate(table, None)
    assert e.shift.kinds == ["covariate"] and e.features.drifted == ["x04"]
    assert e.shift.labels_known is False
    assert "no labels" in e.shift.summary()
    assert e.labelled == 0 and e.label is None and e.conditional is None
    assert e.performance == {} and e.decay["decayed"] is False and e.decay["drop"] is None
    assert e.estimated["accuracy"] > 0.5  # the label-free estimate is still there


def test_without_labels_no_shift_reports_none(reference: Reference) -> None:
    table, _ = draw(SCENARIOS[0], 0)
    e = reference.evaluate(table, None)
    assert e.shift.kinds == [] and not e.shift.labels_known
    assert e.shift.summary().startswith("no shift") and "no labels" in e.shift.summary()


def test_label_free_estimate_matches_realized_performance(reference: Reference) -> None:
    """CBPE on unshifted windows of a calibrated model: the estimate from the scores alone is
    close to what the labels then show."""
    for seed in range(3):
        e = reference.evaluate(*draw(SCENARIOS[0], 100 + seed))
        est, real = e.estimated, e.performance
        assert est["accuracy"] == pytest.approx(real["accuracy"], abs=0.03)
        assert est["roc_auc"] == pytest.approx(real["roc_auc"], abs=0.05)
        assert est["positive_rate"] == pytest.approx(real["positive_rate"], abs=0.02)


# ------------------------------------------------------------------ labels spelled as words


def _worded_profile(up_share: float) -> tuple[Profile, MonitoringSpec, np.ndarray, np.ndarray]:
    """A profile whose training labels are "UP" / "DOWN", and an unshifted window."""
    rng = np.random.default_rng(5)
    spec = MonitoringSpec()
    bias = special.logit(up_share)

    def rows(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = rng.normal(size=n)
        p = special.expit(2 * x + bias)
        return x, p, rng.random(n) < p

    x, p, y = rows(5000)
    profile = fit_profile(
        pa.table({"x": x}),
        ["x"],
        spec.drift,
        labels=pa.array(np.where(y, "UP", "DOWN")),
        predictions=p,
        task="binary",
        classes=["DOWN", "UP"],
        reference={"pr_auc": float(metrics("binary", y, p)["pr_auc"])},
    )
    x2, p2, y2 = rows(5000)
    return profile, spec, np.column_stack([x2, p2]), y2


def test_worded_labels_give_the_realized_performance() -> None:
    profile, spec, xp, y = _worded_profile(0.4)
    e = evaluate_window(
        profile,
        pa.table({"x": xp[:, 0]}),
        spec,
        scores=xp[:, 1],
        labels=np.where(y, "UP", "DOWN"),
        task="binary",
    )
    assert e.performance["positive_rate"] == pytest.approx(y.mean())
    assert e.shift.kinds == []


def test_numeric_labels_against_worded_reference_labels() -> None:
    profile, spec, xp, y = _worded_profile(0.65)
    e = evaluate_window(
        profile,
        pa.table({"x": xp[:, 0]}),
        spec,
        scores=xp[:, 1],
        labels=y.astype(float),
        task="binary",
    )
    assert e.label is not None and not e.label.drifted


# ------------------------------------------------------------------------------ decay


def test_decay_is_a_drop_beyond_the_limit() -> None:
    d = decay("pr_auc", 0.70, 0.80, max_drop=0.05, relative=False)
    assert d["drop"] == pytest.approx(0.10) and d["limit"] == 0.05 and d["decayed"] is True
    d = decay("pr_auc", 0.78, 0.80, max_drop=0.05, relative=False)
    assert d["drop"] == pytest.approx(0.02) and d["decayed"] is False
    # better than the reference: a negative drop
    assert decay("pr_auc", 0.9, 0.8, max_drop=0.05, relative=False)["drop"] == pytest.approx(-0.1)


def test_decay_of_a_metric_where_lower_is_better() -> None:
    d = decay("log_loss", 0.50, 0.40, max_drop=0.05, relative=False)
    assert d["drop"] == pytest.approx(0.10) and d["decayed"] is True
    assert decay("rmse", 9.0, 10.0, max_drop=0.5, relative=False)["decayed"] is False


def test_decay_limit_is_relative_or_the_natural_variation() -> None:
    d = decay("roc_auc", 0.75, 0.80, max_drop=0.1, relative=True)
    assert d["limit"] == pytest.approx(0.08) and d["decayed"] is False
    d = decay("roc_auc", 0.70, 0.80, max_drop=0.05, relative=False, natural=0.12)
    assert d["limit"] == pytest.approx(0.12) and d["decayed"] is False
    d = decay("roc_auc", 0.60, 0.80, max_drop=0.05, relative=False, natural=0.12)
    assert d["decayed"] is True


@pytest.mark.parametrize(
    ("value", "reference"), [(None, 0.8), (0.7, None), (float("nan"), 0.8), (0.7, float("nan"))]
)
def test_decay_without_a_value_is_not_judged(value: float | None, reference: float | None) -> None:
    d = decay("pr_auc", value, reference, max_drop=0.05, relative=False)
    assert d == {"metric": "pr_auc", "drop": None, "decayed": False}


def test_natural_variation_is_the_worst_reference_chunk() -> None:
    ref = {
        "roc_auc": 0.80,
        "log_loss": 0.40,
        "chunk_metrics": {"roc_auc": [0.78, 0.83, 0.74], "log_loss": [0.38, 0.47, 0.41]},
        "metric_chunk_rows": 1000,
    }
    assert natural_variation(ref, "roc_auc", 1000) == pytest.approx(0.06)
    assert natural_variation(ref, "roc_auc", 50_000) == pytest.approx(0.06)  # not scaled down
    assert natural_variation(ref, "roc_auc", 250) == pytest.approx(0.12)  # sqrt(1000 / 250)
    assert natural_variation(ref, "log_loss", 1000) == pytest.approx(0.07)
    # chunks all better than the reference: no natural variation
    better = {"roc_auc": 0.7, "chunk_metrics": {"roc_auc": [0.71, 0.75]}}
    assert natural_variation(better, "roc_auc", 100) == 0.0
    assert natural_variation({"roc_auc": 0.8}, "roc_auc", 100) == 0.0
    assert natural_variation(ref, "pr_auc", 100) == 0.0
