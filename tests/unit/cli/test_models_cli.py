"""`loopml train`, `loopml evaluate` and `loopml models` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from loopml.cli import main
from tests.unit.training.test_tasks import BASE, items


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_evaluate_promote_rollback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = BASE
    for k, v in (
        ("SPLITCOL", "null"),
        ("LABEL", "flag"),
        ("TASK", "binary"),
        ("ESTIMATOR", "lightgbm"),
        ("PARAMS", "{n_estimators: 40, num_leaves: 15}"),
        ("GROUP", ""),
        ("SPLIT", "time"),
    ):
        spec = spec.replace(k, v)
    (tmp_path / "loopml.yaml").write_text(spec)
    pacsv.write_csv(items(), tmp_path / "items.csv")
    p = str(tmp_path)
    assert run(capsys, "ingest", "items", str(tmp_path / "items.csv"), "-p", p)[0] == 0
    code, out, _ = run(capsys, "train", "-p", p, "--json")
    trained = json.loads(out)
    assert code == 0 and trained["version"] == 1 and trained["metrics"]["roc_auc"] > 0.9
    assert "prior" in trained["baselines"] and trained["report"]["calibration"]
    code, out, _ = run(capsys, "train", "-p", p)
    assert code == 0 and "version 2" in out and "prior" in out
    code, _, err = run(capsys, "models", "promote", "1", "-p", p)
    assert code == 1 and "evaluate" in err  # the gate comes first
    code, out, _ = run(capsys, "evaluate", "1", "-p", p)
    assert code == 0 and "PASSED" in out
    assert run(capsys, "models", "promote", "1", "--reason", "first", "-p", p)[0] == 0
    code, out, _ = run(capsys, "evaluate", "2", "-p", p, "--json")
    verdict = json.loads(out)
    assert verdict["against"] == 1 and verdict["checks"][0]["name"] == "smoke"
    if verdict["passed"]:
        assert run(capsys, "models", "promote", "2", "-p", p)[0] == 0
    else:
        assert (
            run(capsys, "models", "promote", "2", "--force", "--reason", "testing", "-p", p)[0] == 0
        )
    code, out, _ = run(capsys, "models", "list", "-p", p, "--json")
    listed = json.loads(out)
    assert [v["aliases"] for v in listed] == [[], ["champion"]]
    code, out, _ = run(capsys, "models", "rollback", "--reason", "back", "-p", p, "--json")
    assert code == 0 and json.loads(out)["to_version"] == 1
    code, out, _ = run(capsys, "models", "history", "-p", p, "--json")
    assert [m["action"] for m in json.loads(out)][-1] == "rollback"
    code, out, _ = run(capsys, "models", "show", "champion", "-p", p)
    assert code == 0 and "sha256" in out and "evaluation" in out
    code, _, err = run(capsys, "models", "show", "9", "-p", p)
    assert code == 2 and "9" in err
    code, out, _ = run(capsys, "train", "--compare-imbalance", "-p", p, "--json")
    assert code == 0 and {r["strategy"] for r in json.loads(out)["rows"]} >= {
        "plain",
        "class_weight",
    }
