"""Class imbalance on real data: UCI Bank Marketing (45,211 clients, 11.7% positive). Plain
against class weights and resampling, thresholds chosen on validation rows; the report says which
won and by how much. Skipped where ../shared/datasets is absent; CI has it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loopml import Project
from tests.conftest import DATASETS

pytestmark = pytest.mark.realdata

SPEC = """\
project: bank
sources:
  clients: {format: csv}
features:
  event: {source: clients}
  request: [V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13, V14, V15, V16]
  label: {name: subscribed, expr: "Class == 2"}
model:
  name: bank
  task: binary
  params: {n_estimators: 150, num_leaves: 31}
  split: {method: stratified, test: 0.25, valid: 0.15}
gate: {backtest: null}
"""


@pytest.fixture
def bank(make_project: Callable[..., Project]) -> Project:
    path = DATASETS / "bank_marketing.csv"
    if not path.exists():
        pytest.skip(f"the real data sets are not here ({DATASETS}); CI has them")
    p = make_project(SPEC)
    (r,) = p.data.ingest("clients", [path])
    assert r.rows_accepted == 45_211, r.reasons
    return p


def test_imbalance_handling_is_compared_with_the_plain_model(bank: Project) -> None:
    report = bank.models.compare_imbalance()
    rows = {r["strategy"]: r for r in report["rows"]}
    assert set(rows) == {"plain", "class_weight", "oversample", "undersample", "threshold_only"}
    assert all(0.1 < r["positive_rate"] < 0.13 for r in rows.values())
    # The plain model decides at 0.5 and misses most positives; a validation threshold does not.
    best_f1 = max(r["f1"] for r in rows.values())
    assert report["winner_f1"] != "plain" and report["margin_f1"] > 0.03
    assert rows["plain"]["recall"] < rows[report["winner_f1"]]["recall"]
    assert best_f1 > 0.5 and rows["plain"]["pr_auc"] > 0.5
    assert report["winner_f1"] in report["summary"] and "on f1" in report["summary"]
    assert (
        abs(rows["class_weight"]["pr_auc"] - rows["plain"]["pr_auc"]) < 0.05
    )  # ranking quality barely moves
