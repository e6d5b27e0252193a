"""Labels have one spelling from training to monitoring (issue 16, item 3): a model trained on
a boolean (or 0/1, or word) label, its traffic labelled by feedback spelled as booleans,
strings, 0/1 or words, shows no label drift when the labels do not move, and the positive
rate the monitor sees is the true one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from loopml.monitoring._labels import LabelDomain, binary_name, binary_strings
from loopml.monitoring._profile import LABEL, canonical_labels, fit_profile
from loopml.monitoring._report import ColumnDriftRecord, MonitoringReport
from loopml.spec import DriftSpec
from tests.unit.monitoring.conftest import Trained, features_of, positive_rate, train_project

ALL = "36500d"  # one window over the whole traffic: the label test sees every label

# each pair spells (positive, negative); the traffic's labels rotate through them
BINARY_SPELLINGS: list[tuple[Any, Any]] = [
    (True, False),
    ("true", "false"),
    (1, 0),
    ("1", "0"),
    ("yes", "no"),
    ("TRUE", "No"),
    (1.0, 0.0),
]


@pytest.fixture(scope="module", params=["flag", "flag01"])
def binary(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Trained on a boolean label, and on the same label as 0/1."""
    return train_project(tmp_path_factory.mktemp(request.param) / "p", label=request.param)


@pytest.fixture(scope="module")
def words(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A two-class model whose classes are words (UP, DOWN)."""
    return train_project(tmp_path_factory.mktemp("move") / "p", label="move", task="multiclass")


def label_drift(report: MonitoringReport) -> ColumnDriftRecord:
    assert report.current is not None
    drift = report.current.current.label
    assert drift is not None, "the label was not tested"
    return drift


def test_binary_labels_in_any_spelling_show_no_false_drift(binary: Trained, tmp_path: Path) -> None:
    truth = binary.traffic["flag"].to_pylist()
    with binary.copy(tmp_path) as p:
        version = p.monitoring.record_batch(features_of(p, binary.traffic), id_prefix="s")[
            "version"
        ]
        rows = []
        for i, positive in enumerate(truth):
            yes, no = BINARY_SPELLINGS[i % len(BINARY_SPELLINGS)]
            rows.append({"prediction_id": f"s-{version}-{i}", "target": yes if positive else no})
        sent = p.monitoring.feedback(rows)
        assert sent == {"accepted": len(truth), "rejected": []}

        report = p.monitoring.report(window=_days(ALL), alerts=False)
        assert report.labels.labelled == len(truth)
        drift = label_drift(report)
        # The reference (training labels) and the traffic come from the same process.
        assert not drift.drifted, drift
        assert drift.p_adjusted > 0.01 and drift.js < 0.1 and drift.psi < 0.1, drift
        assert report.current is not None
        assert report.current.current.shift.label is False
        realized = report.current.current.performance
        assert realized["positive_rate"] == pytest.approx(positive_rate(binary.traffic["flag"]))
        # The profile spells the training labels 0/1, whatever type they had.
        profile = p.monitoring.profile(p.registry.get("m", version))
        assert sorted(profile.columns[LABEL].categories) == ["0", "1"]


def test_word_classes_in_any_case_show_no_false_drift(words: Trained, tmp_path: Path) -> None:
    truth = words.traffic["move"].to_pylist()
    with words.copy(tmp_path) as p:
        version = p.monitoring.record_batch(features_of(p, words.traffic), id_prefix="w")["version"]
        spell = [str.upper, str.lower, str.title]
        rows = [
            {"prediction_id": f"w-{version}-{i}", "label": spell[i % 3](move)}
            for i, move in enumerate(truth)
        ]
        assert p.monitoring.feedback(rows) == {"accepted": len(truth), "rejected": []}
        refused = p.monitoring.feedback([{"prediction_id": f"w-{version}-0", "label": "SIDEWAYS"}])
        assert refused["accepted"] == 0
        assert "DOWN, UP" in refused["rejected"][0]["error"]

        report = p.monitoring.report(window=_days(ALL), alerts=False)
        assert report.labels.labelled == len(truth)
        drift = label_drift(report)
        assert not drift.drifted and drift.p_adjusted > 0.01, drift
        assert report.current is not None
        accuracy = report.current.current.performance["accuracy"]
        assert accuracy > 0.7  # the labels were read as the classes they name


def test_label_domains_read_every_spelling_and_refuse_the_rest() -> None:
    binary = LabelDomain("binary")
    for yes, no in BINARY_SPELLINGS:
        assert (binary.read(yes), binary.read(no)) == (1, 0)
    for bad in ("maybe", 2, -1, 0.5, "", "yes please"):
        with pytest.raises(ValueError, match="not a binary label"):
            binary.read(bad)
    regression = LabelDomain("regression")
    assert regression.read("2.5") == 2.5 and regression.read(3) == 3.0
    for bad in ("high", float("inf"), True):
        with pytest.raises(ValueError, match="number"):
            regression.read(bad)
    classes = LabelDomain("multiclass", ("1", "2", "10"))
    assert [classes.read(v) for v in (1, 2.0, "10")] == ["1", "2", "10"]
    with pytest.raises(ValueError, match="classes 1, 2, 10"):
        classes.read(3)
    ranking = LabelDomain("ranking")
    assert ranking.read(True) == 1.0 and ranking.read("2") == 2.0
    with pytest.raises(ValueError, match="0 or more"):
        ranking.read(-1)


def test_binary_labels_are_profiled_as_0_and_1_and_old_profiles_read_so() -> None:
    spellings = [
        pa.array([True, False, None]),
        pa.array([1, 0, None]),
        pa.array([1.0, 0.0, None]),
        pa.array(["Yes", "no", None]),
    ]
    for values in spellings:
        assert binary_strings(values).to_pylist() == ["1", "0", None]
    table = pa.table({"x": [1.0, 2.0, 3.0, 4.0] * 10})
    labels = pa.array([True, False, False, True] * 10)
    fitted = fit_profile(table, ["x"], DriftSpec(), labels=labels, task="binary", classes=[0, 1])
    assert sorted(fitted.columns[LABEL].categories) == ["0", "1"]
    assert sorted(fitted.columns["x"].by_class) == ["0", "1"]
    # A profile stored before labels had one spelling kept false/true: read as 0/1.
    old = fit_profile(table, ["x"], DriftSpec(), labels=labels, task="multiclass")
    old.task = "binary"
    assert sorted(old.columns[LABEL].categories) == ["false", "true"]
    canonical_labels(old)
    assert sorted(old.columns[LABEL].categories) == ["0", "1"]
    assert sorted(old.columns["x"].by_class) == ["0", "1"]
    assert [binary_name(c) for c in ("true", "False", "1.0", "other")] == ["1", "0", "1", "other"]


def _days(text: str) -> Any:
    from loopml.spec import parse_duration

    return parse_duration(text)
