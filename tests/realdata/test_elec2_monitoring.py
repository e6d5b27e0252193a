"""Monitoring on the real elec2 stream (issue 7): a model trained on the first weeks of the NSW
electricity market is watched over the following 2.5 years, two weeks at a time, and the windows
show the performance decay and the drift when they happen.

No project is needed: the profile comes from :func:`model_profile` and every window is judged by
:func:`evaluate_window` with the model's scores and the labels, with the default monitoring
settings. The table of windows is printed (``pytest -s``). Skipped where ../shared/datasets is
absent; CI has it.

Two facts of the data make assertions possible without knowing the drift's exact timing:

- ``vicprice``, ``vicdemand`` and ``transfer`` are constant (filled in) over the first 17,424
  rows and real afterwards: the inputs change there, and only there for those columns.
- elec2 is the classic concept-drift stream: a model frozen after a few weeks does markedly worse
  later, while its predicted probabilities stay confident, so the label-free estimate does not
  see the decay that the labels show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pytest

from loopml.evaluation import metrics
from loopml.monitoring._monitor import Evaluation, choose_window, evaluate_window
from loopml.monitoring._profile import Profile, model_profile
from loopml.monitoring._report import FirstDetected, Settings, TimelineItem
from loopml.spec import MonitoringSpec
from tests.conftest import DATASETS

# One worker runs the module (make test's --dist loadgroup): the stream is judged once.
pytestmark = [pytest.mark.realdata, pytest.mark.xdist_group("elec2_monitoring")]

ELEC2 = DATASETS / "elec2.csv"
DAY = 48  # half-hours
TRAIN_DAYS, REFERENCE_DAYS, WINDOW_DAYS = 21, 7, 14
FILLED_UNTIL = 17_424  # rows where the Victorian columns are constant
VIC = {"vicprice", "vicdemand", "transfer"}
# Harries (1999): the stream runs from 7 May 1996, one row per half-hour (for the HTML's axis).
STREAM_START = datetime(1996, 5, 7, tzinfo=UTC)

# The model's inputs. `date` is left out: it is the position in the stream (normalized, mostly
# increasing), so every window after training lies outside its training range; it would drift
# by construction and the trees would extrapolate on it. `day` (day of week) and `period`
# (half-hour of day) are cyclic: every two-week window holds each of their values equally often,
# so they carry the daily and weekly pattern of prices without telling where in the stream a row
# is. `nswprice` stays, as in the usual benchmark, though `class` is derived from it (UP: the
# price is above its average over the last 24 hours), so it leaks part of the label.
FEATURES = ["day", "period", "nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"]


@dataclass
class Window:
    start: int  # first row
    evaluation: Evaluation

    @property
    def end(self) -> int:
        return self.start + self.evaluation.rows


@dataclass
class Stream:
    profile: Profile
    spec: MonitoringSpec
    windows: list[Window]


def matrix(table: pa.Table) -> np.ndarray:
    return np.column_stack([table[c].to_numpy() for c in FEATURES])


@pytest.fixture(scope="module")
def stream() -> Stream:
    if not ELEC2.exists():
        pytest.skip(f"the real data sets are not here ({DATASETS}); CI has them")
    import lightgbm as lgb

    data = pcsv.read_csv(ELEC2)  # time-ordered by row (its `date` column is not a clean axis)
    assert data.num_rows == 45_312
    up = pc.equal(data["class"], "UP").to_numpy(zero_copy_only=False).astype(np.int64)
    data = data.append_column("up", pa.array(up))
    # The first four weeks: three to train on, the fourth held out as the reference the
    # windows are compared with (its predictions, metrics and their variation).
    train = data.slice(0, TRAIN_DAYS * DAY)
    held_out = data.slice(TRAIN_DAYS * DAY, REFERENCE_DAYS * DAY)
    model = lgb.LGBMClassifier(
        n_estimators=200, learning_rate=0.05, num_leaves=15, n_jobs=1, verbose=-1
    ).fit(matrix(train), train["up"].to_numpy())
    scores = model.predict_proba(matrix(held_out))[:, 1]
    spec = MonitoringSpec()
    profile = model_profile(
        train,
        held_out,
        features=FEATURES,
        categorical=[],
        label="up",
        task="binary",
        test_scores=scores,
        classes=[0, 1],
        reference=metrics("binary", held_out["up"].to_numpy().astype(bool), scores),
        spec=spec.drift,
    )
    windows = []
    for start in range((TRAIN_DAYS + REFERENCE_DAYS) * DAY, data.num_rows, WINDOW_DAYS * DAY):
        rows = data.slice(start, WINDOW_DAYS * DAY)
        evaluation = evaluate_window(
            profile,
            rows.select(FEATURES),
            spec,
            scores=model.predict_proba(matrix(rows))[:, 1],
            labels=rows["up"].to_numpy(),
            task="binary",
            threshold=0.5,
        )
        windows.append(Window(start, evaluation))
    show(profile, windows)
    return Stream(profile, spec, windows)


def show(profile: Profile, windows: list[Window]) -> None:
    ref = profile.reference
    print(
        f"\nelec2: LightGBM trained on days 1-{TRAIN_DAYS}, reference days "
        f"{TRAIN_DAYS + 1}-{TRAIN_DAYS + REFERENCE_DAYS}: roc_auc {ref['roc_auc']:.3f}, "
        f"accuracy {ref['accuracy']:.3f}, pr_auc {ref['pr_auc']:.3f}\n"
        "(start: first row; acc: realized accuracy; est.acc: label-free estimate; drop: of the "
        "decay metric, pr_auc, from the reference)"
    )
    print(
        f"{'start':>6} {'day':>4} {'rows':>4} {'roc_auc':>7} {'acc':>5} {'est.acc':>7} "
        f"{'drop':>6} {'decay':>5}  {'kinds':<22} drifted"
    )
    for w in windows:
        e = w.evaluation
        drop = e.decay.get("drop")
        print(
            f"{w.start:6d} {w.start // DAY + 1:4d} {e.rows:4d} {e.performance['roc_auc']:7.3f} "
            f"{e.performance['accuracy']:5.3f} {e.estimated['accuracy']:7.3f} "
            f"{'' if drop is None else f'{drop:+.3f}':>6} "
            f"{'yes' if e.decay['decayed'] else '':>5}  {'+'.join(e.shift.kinds) or '-':<22} "
            f"{','.join(e.features.drifted) or '-'}"
        )


def realized(windows: list[Window], metric: str) -> np.ndarray:
    return np.array([w.evaluation.performance[metric] for w in windows])


def test_the_reference_week_shows_a_good_model(stream: Stream) -> None:
    ref = stream.profile.reference
    assert ref["roc_auc"] > 0.85 and ref["accuracy"] > 0.8
    rows = [w.evaluation.rows for w in stream.windows]
    assert sum(rows) == 45_312 - (TRAIN_DAYS + REFERENCE_DAYS) * DAY and len(rows) == 66
    assert all(w.evaluation.shift.labels_known for w in stream.windows)


def test_performance_decays_after_training(stream: Stream) -> None:
    windows = stream.windows
    ref = stream.profile.reference
    accuracy, auc = realized(windows, "accuracy"), realized(windows, "roc_auc")
    decayed = [w.evaluation.decay["decayed"] for w in windows]
    # A frozen model on elec2 decays in most later windows, and badly in some.
    assert sum(decayed) >= len(windows) // 2, f"{sum(decayed)} of {len(windows)} decayed"
    assert accuracy.min() < ref["accuracy"] - 0.2 and auc.min() < ref["roc_auc"] - 0.2
    assert np.median(accuracy) < ref["accuracy"] - 0.1
    # The first window after training is better than the later ones on average.
    assert accuracy[0] > accuracy[1:].mean() + 0.05
    assert auc[0] > auc[1:].mean() + 0.05


def test_the_victorian_columns_drift_when_they_stop_being_constant(stream: Stream) -> None:
    before = [w for w in stream.windows if w.end <= FILLED_UNTIL]
    after = [w for w in stream.windows if w.start >= FILLED_UNTIL]
    assert len(before) >= 20 and len(after) >= 40
    for w in before:
        assert not VIC & set(w.evaluation.features.drifted), (
            w.start,
            w.evaluation.features.drifted,
        )
    for w in after:
        assert VIC & set(w.evaluation.features.drifted), (w.start, w.evaluation.features.drifted)
        assert w.evaluation.shift.covariate


def test_decay_with_stable_inputs_is_concept_drift(stream: Stream) -> None:
    """Before the Victorian columns change, the model decays while no input drifts beyond the
    variation its reference shows: the report calls that concept drift, never label shift."""
    before = [w.evaluation for w in stream.windows if w.end <= FILLED_UNTIL]
    concept = [e for e in before if e.shift.concept]
    assert len(concept) >= len(before) // 2, f"concept in {len(concept)} of {len(before)}"
    for e in before:
        if e.decay["decayed"] and not e.features.drifted:
            assert e.shift.concept
        assert not e.shift.label


def test_the_label_free_estimate_misses_concept_drift(stream: Stream) -> None:
    """CBPE trusts the model's probabilities; under concept drift they stay confident while the
    outcomes change, so the estimate stays high where the labels show decay."""
    windows = stream.windows
    estimated = np.array([w.evaluation.estimated["accuracy"] for w in windows])
    accuracy = realized(windows, "accuracy")
    assert (estimated - accuracy).mean() > 0.1
    assert (estimated > accuracy).mean() > 0.8


def test_the_windows_make_an_html_report(stream: Stream, tmp_path: Path) -> None:
    html = pytest.importorskip("loopml.monitoring._html")
    if not hasattr(html, "render_html"):
        pytest.skip("loopml.monitoring._html has no render_html yet")
    report = report_of(stream)
    first = report["first_detected"]
    assert first["concept"] == first["decay"] == when(stream.windows[0].start)
    changed = next(w.start for w in stream.windows if w.start >= FILLED_UNTIL)
    assert first["covariate"] == when(changed)
    assert first["label"] is None
    page = html.render_html(report)
    path = tmp_path / "elec2_monitoring.html"
    path.write_text(page, encoding="utf-8")
    print(f"\nelec2 report: {path} ({len(page) // 1024} kB)")
    assert page.startswith("<!DOCTYPE html>")
    for text in ("Concept drift", "Covariate shift", "vicprice", "1996-06-04", "1997-05-06"):
        assert text in page, text


def when(row: int) -> str:
    return (STREAM_START + timedelta(minutes=30 * row)).isoformat()


def report_of(stream: Stream) -> dict[str, Any]:
    """The windows as the report :meth:`Monitoring.report` returns, dated from the stream's
    start (evaluate_window knows no time)."""
    # the windows of the timeline as the report types them (the sliding window: the same)
    items = [
        TimelineItem.of(w.evaluation, w.evaluation, {}).model_copy(
            update={"start": when(w.start), "end": when(w.end)}
        )
        for w in stream.windows
    ]
    timeline = [item.model_dump(mode="json") for item in items]
    choice = choose_window(stream.spec, np.zeros(0, np.int64), timedelta(days=WINDOW_DAYS))
    last = stream.windows[-1]
    current = last.evaluation.to_dict()
    current["start"], current["end"] = when(last.start), when(last.end)
    return {
        "model": "elec2 (LightGBM, first 4 weeks)",
        "version": 1,
        "generated_at": datetime.now(UTC).isoformat(),
        "rows": sum(w.evaluation.rows for w in stream.windows),
        "period": {"start": timeline[0]["start"], "end": timeline[-1]["end"]},
        "settings": Settings.of(stream.spec, choice).model_dump(mode="json"),
        "reference": {
            "metrics": stream.profile.reference,
            "features": stream.profile.features,
            "rows": {n: c.rows for n, c in stream.profile.columns.items()},
        },
        "current": {"current": current},
        "timeline": timeline,
        "first_detected": FirstDetected.of(items).model_dump(),
    }
