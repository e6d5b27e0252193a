"""The gate reports every check it was asked for with the rows it judged, or why it skipped it;
the default backtest is chosen from the data (a seasonal history has empty weeks); a metric
that cannot be computed (one class in a short backtest) is skipped or refused as the policy
says; and the models are judged only on rows they did not learn from."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tests.unit.training import seasons

from loopml import Project
from loopml.training._gate import test_table as held_out_rows


def by_name(verdict: object) -> dict[str, dict[str, object]]:
    return {c["name"]: c for c in verdict.to_dict()["checks"]}  # type: ignore[attr-defined]


def test_every_check_is_reported_with_its_rows(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = seasons.project(make_project, tmp_path)
    v = p.models.train().version
    assert v is not None
    verdict = p.models.evaluate(v.version)
    checks = by_name(verdict)
    assert set(checks) == {"smoke", "test:pr_auc", "backtest:pr_auc", "slices"}
    assert checks["smoke"]["rows"] == 100 and checks["smoke"]["status"] == "passed"
    test_rows = v.lineage["rows"]["test"]
    assert checks["test:pr_auc"]["rows"] == test_rows == verdict.numbers["test"]["rows"]
    assert checks["test:pr_auc"]["status"] == "passed"
    # Asked for (max_slice_regression) but with no champion there is nothing to compare.
    assert checks["slices"]["status"] == "skipped" and checks["slices"]["rows"] is None
    assert "no champion" in str(checks["slices"]["detail"])
    # The default backtest on a history with summer gaps: the latest 200 labelled rows the
    # model did not learn from, whatever period they span.
    back = verdict.numbers["backtest"]
    assert checks["backtest:pr_auc"]["rows"] == back["rows"] == 200
    assert back["why"].startswith("auto: the latest 200 labelled rows")
    assert back["start"] > v.lineage["trained_until"]
    assert verdict.passed and verdict.summary().startswith("PASSED (4 checks: 3 passed, 1 skipped")


def test_a_backtest_of_one_class_is_not_computable_and_skipped_by_default(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    table = seasons.seasons()
    times = table["t"].cast(pa.int64()).to_numpy()  # seconds
    last_two = np.unique(times // 86400)[-2] * 86400
    # The home side won none of the season's last two match days.
    flag = np.where(times >= last_two, False, table["flag"].to_numpy(zero_copy_only=False))
    table = table.set_column(table.column_names.index("flag"), "flag", pa.array(flag))
    p = seasons.project(make_project, tmp_path, gate="{backtest: 10d}", table=table)
    v = p.models.train().version
    assert v is not None
    verdict = p.models.evaluate(v.version)
    assert verdict.passed, [c.detail for c in verdict.failed()]  # not refused for it
    check = next(c for c in verdict.checks if c.name == "backtest:pr_auc")
    assert check.status == "skipped" and check.rows == 12
    assert check.detail.startswith("not computable: one class in 12 rows")
    # The policy may refuse instead, saying why.
    gate = p.models.project_spec.gate
    p.models.project_spec.gate = gate.model_copy(update={"not_computable": "refuse"})
    refused = p.models.evaluate(v.version)
    assert not refused.passed and [c.name for c in refused.failed()] == ["backtest:pr_auc"]
    assert "one class in 12 rows" in refused.failed()[0].detail


def test_a_declared_backtest_without_rows_says_why(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = seasons.project(make_project, tmp_path, gate="{backtest: 7d}")
    summer = datetime(2002, 7, 15, tzinfo=UTC)  # the last season ended in May
    v = p.models.train(as_of=summer).version
    assert v is not None
    verdict = p.models.evaluate(v.version, as_of=summer)
    (check,) = [c for c in verdict.checks if c.name.startswith("backtest")]
    assert check.name == "backtest:pr_auc" and check.skipped and check.rows == 0
    assert (
        "no labelled rows" in check.detail and "the latest labelled row is 2002-05-" in check.detail
    )
    assert verdict.numbers["backtest"]["rows"] == 0
    assert verdict.passed


def test_no_computable_metric_at_all_refuses(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    table = seasons.seasons()
    n = table.num_rows
    # The newest 40 % of the history: never a home win, so the test set holds one class.
    flag = table["flag"].to_numpy(zero_copy_only=False).copy()
    flag[int(n * 0.6) :] = False
    table = table.set_column(table.column_names.index("flag"), "flag", pa.array(flag))
    p = seasons.project(make_project, tmp_path, gate="{backtest: null}", table=table)
    v = p.models.train().version
    assert v is not None
    verdict = p.models.evaluate(v.version)
    assert not verdict.passed and [c.name for c in verdict.failed()] == ["metrics"]
    checks = by_name(verdict)
    assert checks["test:pr_auc"]["status"] == "skipped"
    assert checks["backtest"]["status"] == "skipped" and "null" in str(checks["backtest"]["detail"])


def test_a_gate_with_no_rows_to_judge_refuses(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = seasons.project(make_project, tmp_path, gate="{backtest: 7d}")
    spec = p.models.spec
    # A champion split at random learned rows up to the end of the data.
    p.models.project_spec.model = spec.model_copy(
        update={"split": spec.split.model_copy(update={"method": "random"})}
    )
    v1 = p.models.train().version
    p.models.project_spec.model = spec
    assert v1 is not None
    p.models.promote(v1.version, force=True, reason="the champion")
    v2 = p.models.train().version
    assert v2 is not None
    # Long after the data's end, the backtest's week holds no labelled row; the challenger's
    # test rows were all learned by the champion: nothing left to judge on.
    verdict = p.models.evaluate(v2.version, as_of=datetime(2010, 1, 1, tzinfo=UTC))
    checks = by_name(verdict)
    assert checks["test:pr_auc"]["status"] == checks["backtest:pr_auc"]["status"] == "skipped"
    assert checks["test:pr_auc"]["rows"] == checks["backtest:pr_auc"]["rows"] == 0
    assert "the champion learned from" in str(checks["test:pr_auc"]["detail"])
    assert not verdict.passed and [c.name for c in verdict.failed()] == ["metrics"]


def test_the_champion_is_judged_on_rows_it_did_not_learn_from(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = seasons.project(make_project, tmp_path)
    spec = p.models.spec
    # A champion split at random learned rows up to the end of its data (May 2000).
    p.models.project_spec.model = spec.model_copy(
        update={"split": spec.split.model_copy(update={"method": "random"})}
    )
    v1 = p.models.train(as_of=datetime(2000, 7, 1, tzinfo=UTC)).version
    p.models.project_spec.model = spec
    assert v1 is not None
    assert p.models.evaluate(v1.version).passed
    p.models.promote(v1.version, reason="first")
    v2 = p.models.train().version  # to 2002: its test rows start in the 1999 season
    assert v2 is not None
    verdict = p.models.evaluate(v2.version)
    until = v1.lineage["trained_until"]
    test = held_out_rows(p.registry.load_files(v2))
    unseen = test.filter(
        pc.greater(
            test["_event_time"], pa.scalar(datetime.fromisoformat(until), test["_event_time"].type)
        )
    ).num_rows
    assert 0 < unseen < test.num_rows
    numbers = verdict.numbers["test"]
    assert numbers["rows"] == unseen and numbers["start"] > until
    assert "the champion learned from" in numbers["why"]
    assert by_name(verdict)["test:pr_auc"]["rows"] == unseen
    assert verdict.numbers["backtest"]["start"] > until


def test_the_backtest_leaves_out_rows_the_challenger_learned_from(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = seasons.project(make_project, tmp_path, gate="{backtest: 800d}")
    v = p.models.train().version
    assert v is not None
    verdict = p.models.evaluate(v.version)
    back = verdict.numbers["backtest"]
    # 800 days reach back into the training rows; only those after them are judged.
    assert back["start"] > v.lineage["trained_until"]
    assert "learned from the rows before" in back["why"] and back["rows"] > 200
