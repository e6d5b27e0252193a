"""The flights model: trained on January–February, far above its baselines, with slices,
calibration and importance; the gate refuses worse challengers and passes better ones; promote,
rollback and history; a tampered artifact is refused; warm starts record their parent."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tests.helpers import flights_project

from loopml import GateError, IntegrityError, Project
from loopml.training import Model, fit

MARCH = datetime(2013, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return flights_project(tmp_path_factory.mktemp("flights-model"), months=(1, 2, 3))


@pytest.fixture(scope="module")
def first(project: Project) -> object:
    return project.models.train(as_of=MARCH)


def test_the_model_beats_its_baselines(first: object) -> None:
    t = first.trained  # type: ignore[attr-defined]
    report = t.report
    prior = report["baselines"]["prior"]["metrics"]["pr_auc"]
    heuristic = report["baselines"]["heuristic"]["metrics"]["pr_auc"]
    assert report["metrics"]["pr_auc"] > max(prior, heuristic) + 0.1
    assert report["metrics"]["roc_auc"] > 0.7
    assert 0.05 < t.model.threshold < 0.95
    assert report["worst_slices"] and {"column", "slice", "rows", "gap"} <= set(
        report["worst_slices"][0]
    )
    assert len(report["calibration"]) >= 5 and report["metrics"]["ece"] < 0.1
    gain = report["importance"]["gain"]
    assert (
        abs(sum(gain.values()) - 1) < 1e-6
        and len(report["importance"]["mean_abs_contribution"]) == 23
    )
    assert (
        "perturbation" in report["behaviour"]
        and "origin_dep_delay_1h" in report["behaviour"]["directional"]
    )


def test_lineage_is_recorded(project: Project, first: object) -> None:
    v = first.version  # type: ignore[attr-defined]
    lin = v.lineage
    assert lin["snapshot"] and len(lin["features_hash"]) == 64 and lin["parent"] is None
    assert lin["data_end"] < MARCH.isoformat() and lin["rows"]["test"] > 5000
    assert {"lightgbm", "numpy", "python"} <= set(lin["packages"]) and lin["code_version"]
    assert set(v.files) == {"model.json", "model.txt", "test.parquet", "profile.json.gz"}
    assert project.models.load(v.version).predict(first.trained.test.slice(0, 5)).shape == (5,)  # type: ignore[attr-defined]


def test_gate_promote_rollback_history(project: Project, first: object) -> None:
    v1 = first.version.version  # type: ignore[attr-defined]
    with pytest.raises(GateError):
        project.models.promote(v1)
    verdict = project.models.evaluate(v1, as_of=MARCH)
    assert verdict.passed and verdict.against is None, [c.to_dict() for c in verdict.failed()]
    assert {c.name for c in verdict.checks} >= {"smoke", "test:pr_auc", "backtest:pr_auc"}
    project.models.promote(v1, reason="first model")

    # A worse challenger: a tenth of the trees, shallow.
    spec = project.models.spec
    project.models.project_spec.model = spec.model_copy(
        update={"params": {"n_estimators": 3, "num_leaves": 3}}
    )
    try:
        worse = project.models.train(as_of=MARCH).version
    finally:
        project.models.project_spec.model = spec
    refused = project.models.evaluate(worse.version, as_of=MARCH)  # type: ignore[union-attr]
    assert not refused.passed and refused.against == v1
    assert any(c.name == "test:pr_auc" and not c.passed for c in refused.checks)
    with pytest.raises(GateError):
        project.models.promote(worse.version)  # type: ignore[union-attr]

    # Another: the labels shuffled before training.
    ts = project.models.features.build(as_of=MARCH)
    labels = ts.table["delayed"].to_numpy(zero_copy_only=False)
    shuffled = np.random.default_rng(0).permutation(labels)
    ts.table = ts.table.set_column(
        ts.table.column_names.index("delayed"), "delayed", pa.array(shuffled)
    )
    noise = fit(project.models.spec, ts)
    noisy = project.registry.register(
        "flights_delay",
        task="binary",
        files=noise.files,
        format=noise.model.kind,
        trusted_types=noise.trusted_types,
        lineage=noise.lineage,
        metrics=noise.metrics,
        by="test",
    )
    assert not project.models.evaluate(noisy.version, as_of=MARCH).passed

    # A better one: trained on data to the end of March.
    better = project.models.train().version
    passed = project.models.evaluate(better.version)  # type: ignore[union-attr]
    assert passed.passed, [c.to_dict() for c in passed.failed()]
    project.models.promote(better.version, reason="more data")  # type: ignore[union-attr]
    assert project.models.get("champion").version == better.version  # type: ignore[union-attr]

    forced = project.models.promote(worse.version, force=True, reason="testing force")  # type: ignore[union-attr]
    assert forced.action == "force"
    back = project.models.rollback(reason="forced one was worse")
    assert back.to_version == better.version  # type: ignore[union-attr]
    back = project.models.rollback(reason="and once more")
    assert back.to_version == v1
    moves = [(m.action, m.from_version, m.to_version) for m in project.models.history("champion")]
    assert moves == [
        ("promote", None, v1),
        ("promote", v1, better.version),  # type: ignore[union-attr]
        ("force", better.version, worse.version),  # type: ignore[union-attr]
        ("rollback", worse.version, better.version),  # type: ignore[union-attr]
        ("rollback", better.version, v1),  # type: ignore[union-attr]
    ]


def test_a_tampered_artifact_is_refused(project: Project, first: object, tmp_path: Path) -> None:
    v = first.version  # type: ignore[attr-defined]
    good = project.models.load(v.version)
    digest = v.files["model.txt"]
    blob = Path(project.artifacts.files.path(f"sha256/{digest[:2]}/{digest}"))
    original = blob.read_bytes()
    blob.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])
    try:
        with pytest.raises(IntegrityError, match=r"model\.txt"):
            project.models.load(v.version)
        # What was loaded before keeps answering.
        assert good.predict(first.trained.test.slice(0, 3)).shape == (3,)  # type: ignore[attr-defined]
    finally:
        blob.write_bytes(original)


def test_warm_start_continues_the_parent(project: Project, first: object) -> None:
    parent = first.version  # type: ignore[attr-defined]
    child = project.models.train(warm_start=str(parent.version))
    lin = child.version.lineage  # type: ignore[union-attr]
    assert lin["parent"] == parent.ref and lin["stateful"] is True
    # New rows only: those after the last one the parent learned from (its held-out
    # validation and test rows are new to its trees).
    assert parent.lineage["trained_until"] < parent.lineage["data_end"]
    assert lin["data_start"] > parent.lineage["trained_until"]
    parent_model = project.models.load(parent.version)
    child_model: Model = child.trained.model
    assert (
        child_model.estimator.num_trees() == parent_model.estimator.num_trees() + 50
    )  # 25% more, slower
    assert child_model.encoding.categorical == parent_model.encoding.categorical
