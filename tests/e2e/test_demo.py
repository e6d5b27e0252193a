"""The whole demo: the flights year ingested week by week (every planted defect found), the
features, the first model, serving, monitoring, the loop against static training, and the
experiments (a bandit over three versions, interleaving on MovieLens)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopml.cli import main


@pytest.mark.slow
@pytest.mark.timeout(900)  # the whole year, twice through the loop: minutes, on two cores
def test_demo_finds_every_planted_defect_and_reconciles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--project", str(tmp_path / "demo"), "--json"])
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert code == 0
    # It ends by saying how to open the dashboard on what it built (it starts no server).
    assert f"loopml ui --project {tmp_path / 'demo'}" in captured.err
    assert "http://127.0.0.1:8050/ui/" in captured.err
    assert summary["damage_found"] == summary["damage_planted"] >= 10
    assert all(s["reconciles"] for s in summary["sources"].values())
    flights = summary["sources"]["flights"]
    assert flights["batches_held"] == 1  # the week with the renamed column
    assert summary["lake_rows"]["flights"] == 336_776 - 8  # eight planted defects replace real rows
    features = summary["features"]
    assert features["leaks"] == 0 and features["training_rows"] > 45_000
    assert features["online_equal"] == features["vector_size"] == 23
    model = summary["model"]
    assert model["gate_passed"] and model["champion"] == model["version"] == 1
    assert model["metrics"]["pr_auc"] > model["prior_pr_auc"] + 0.1
    serving = summary["serving"]
    assert serving is not None
    monitoring = summary["monitoring"]
    # every flight of March–December predicted, and every flown one labelled
    assert monitoring["predictions"] > 270_000
    labels = monitoring["labels"]
    assert labels["matched"] > 0.95 * monitoring["predictions"]
    assert monitoring["windows"] >= 43  # weekly, March to December
    assert monitoring["first_detected"]["covariate"] is not None
    assert Path(monitoring["report"]).stat().st_size > 100_000
    # The loop: both retraining modes replayed March–December, retrained on their triggers,
    # through the gate and a canary; dynamic training beats static after the summer shift.
    loop = summary["loop"]
    for variant in ("stateless", "stateful"):
        v = loop["variants"][variant]
        assert v["days"] == 306
        kinds = [e["kind"] for e in v["timeline"]]
        assert "triggered" in kinds and "trained" in kinds and "canary_started" in kinds
        s = loop["summary"][variant]
        assert s["promotions"] >= 1
        assert s["after_summer"] == 5 and s["after_summer_wins"] >= 4
        assert s["pr_auc"] > loop["summary"]["static"]["pr_auc"]
    assert Path(loop["report"]).stat().st_size > 50_000
    # Experiments: a bandit over three versions replayed through the batch server, every
    # flight answered by one arm; interleaving on MovieLens (where the data set is).
    bandit = summary["experiments"]["bandit"]
    assert len(bandit["arms"]) == 3 and bandit["total"] > 20_000
    assert sum(bandit["answered"].values()) == bandit["total"]
    assert bandit["status"] == "stopped"
    # the bandit does at least as well as a uniform split of the three versions
    assert bandit["accuracy"] >= sum(bandit["hindsight"].values()) / 3 - 0.005
    interleaving = summary["experiments"]["interleaving"]
    if interleaving is not None:
        need = interleaving["sessions_for_80"]
        assert need["interleaving"] is not None
        assert need["ab"] is None or need["interleaving"] < need["ab"]
    # A second run needs --fresh, and refuses to delete a folder that is not a demo.
    assert main(["demo", "--project", str(tmp_path / "demo")]) == 1
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["demo", "--project", str(other), "--fresh"]) == 2
    assert (other / "notes.txt").exists()
