"""Refitting on every row up to the cut-off: the held-out model is evaluated and judged, the
artifact registered learned every row (the lineage says which), with the same parameters and
rounds; a warm start continues after the last row the artifact learned from."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tests.unit.training import seasons

from loopml import Project


def iso(table: pa.Table, how: str) -> str:
    value = (pc.min if how == "min" else pc.max)(table["_event_time"]).as_py()
    return str(value.isoformat())


def test_a_refit_learns_every_row_up_to_the_cut_off(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = seasons.project(make_project, tmp_path)
    plain = p.models.train()
    refit = p.models.train(refit=True)
    assert plain.version is not None and refit.version is not None
    rows = p.features.build().table
    lin = refit.version.lineage
    assert lin["refit"] is True
    assert lin["learned"] == {
        "rows": rows.num_rows,
        "start": iso(rows, "min"),
        "end": iso(rows, "max"),
        "refit": True,
    }
    # A warm start from it continues after every row it learned from.
    assert lin["trained_until"] == lin["data_end"] == lin["learned"]["end"]
    # The held-out model: the training rows only, as without a refit.
    held = plain.version.lineage["learned"]
    assert lin["holdout"] == held and held["rows"] == lin["rows"]["train"] and not held["refit"]
    assert held["end"] == plain.version.lineage["trained_until"] < lin["learned"]["end"]
    # The version's metrics are the held-out model's, labelled so.
    assert refit.trained.metrics == plain.trained.metrics
    assert lin["metrics_from"] == "the held-out model, before the refit"
    assert plain.version.lineage["refit"] is False and plain.version.lineage["holdout"] is None
    # The registered artifact is the refitted model: the same rounds, other trees.
    served = p.models.load(refit.version.version)
    holdout = refit.trained.holdout
    assert holdout is not None and "holdout/model.txt" in refit.version.files
    assert served.estimator.num_trees() == holdout.estimator.num_trees() == 40
    test = refit.trained.test
    assert not np.allclose(served.predict(test), holdout.predict(test))
    assert served.threshold == holdout.threshold
    # The gate judges the held-out model (on rows it did not learn from), not the refit.
    verdict = p.models.evaluate(refit.version.version)
    judged = verdict.numbers["test"]["challenger"]["pr_auc"]
    assert judged == refit.trained.metrics["pr_auc"] and verdict.passed


def test_a_warm_start_continues_after_the_last_row_the_artifact_learned(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = seasons.project(make_project, tmp_path)
    parent = p.models.train(as_of=datetime(2000, 7, 1, tzinfo=UTC), refit=True).version
    assert parent is not None
    child = p.models.train(warm_start=str(parent.version), refit=True).version
    assert child is not None
    plin, clin = parent.lineage, child.lineage
    assert plin["trained_until"] == plin["data_end"]
    rows = p.features.build().table
    newer = rows.filter(
        pc.greater(
            rows["_event_time"],
            pa.scalar(datetime.fromisoformat(plin["data_end"]), rows["_event_time"].type),
        )
    )
    assert clin["parent"] == parent.ref and clin["stateful"] is True
    assert clin["data_start"] == iso(newer, "min") > plin["data_end"]
    assert clin["learned"] == {
        "rows": newer.num_rows,
        "start": iso(newer, "min"),
        "end": iso(newer, "max"),
        "refit": True,
    }


def test_a_refit_keeps_the_iterations_early_stopping_chose(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = seasons.project(
        make_project,
        tmp_path,
        model="  estimator: sklearn.ensemble:GradientBoostingClassifier\n"
        "  params: {n_estimators: 300, n_iter_no_change: 3, max_depth: 2, random_state: 0}\n",
    )
    r = p.models.train(refit=True)
    assert r.version is not None and r.trained.holdout is not None
    held = r.trained.holdout.estimator.named_steps["est"]
    served = p.models.load(r.version.version).estimator.named_steps["est"]
    assert held.n_estimators_ < 300  # stopped early on its own validation rows
    # The refit has no rows to stop on: it grows the trees the held-out model chose to.
    assert served.n_estimators_ == held.n_estimators_
    assert served.get_params()["n_iter_no_change"] is None
    assert r.version.lineage["refit_params"] == {
        "n_estimators": held.n_estimators_,
        "n_iter_no_change": None,
    }
