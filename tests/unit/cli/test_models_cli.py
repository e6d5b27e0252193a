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


def test_train_and_evaluate_print_the_counts_they_rest_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.unit.training import seasons

    csv = seasons.write(tmp_path)
    p = str(tmp_path)
    assert run(capsys, "ingest", "matches", str(csv), "-p", p)[0] == 0
    n = seasons.seasons().num_rows
    test, valid = round(n * 0.2), round(n * 0.1)
    train = n - test - valid
    code, out, _ = run(capsys, "train", "-p", p)
    assert code == 0
    assert f"on {train:,} rows (valid {valid:,}, test {test:,})" in out
    # Without a refit, what the artifact never learned is said, with the way to learn it.
    assert f"the newest {valid + test:,} rows" in out and "--refit" in out
    code, out, _ = run(capsys, "train", "--refit", "-p", p)
    assert code == 0 and f"refitted on all {n:,} rows" in out
    assert "held-out model" in out
    code, out, _ = run(capsys, "train", "--refit", "-p", p, "--json")
    trained = json.loads(out)
    assert trained["refit"] is True and trained["learned"]["rows"] == n
    assert trained["holdout"]["rows"] == train
    code, out, _ = run(capsys, "models", "show", "2", "-p", p)
    assert code == 0 and f"learned: {n:,} rows" in out and "refit" in out
    # The gate: every check with its rows, the test set and the backtest described.
    code, out, _ = run(capsys, "evaluate", "2", "-p", p)
    assert code == 0 and "PASSED (4 checks: 3 passed, 1 skipped)" in out
    assert f"test: {test:,} rows" in out and "backtest: 200 rows" in out and "auto" in out
    assert f"test:pr_auc ({test:,} rows)" in out and "backtest:pr_auc (200 rows)" in out
    assert "slices: no champion" in out
    # The backtest chosen for one evaluation, overriding gate.backtest.
    code, out, _ = run(capsys, "evaluate", "2", "--backtest", "400d", "-p", p)
    assert code == 0 and "gate.backtest 400d: the" in out
    code, out, _ = run(capsys, "evaluate", "2", "--backtest", "off", "-p", p)
    assert code == 0 and "skip backtest: no backtest asked for" in out
    code, _, err = run(capsys, "evaluate", "2", "--backtest", "soon", "-p", p)
    assert code == 2 and "--backtest" in err


def test_force_never_promotes_a_tampered_artifact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`promote --force` skips the gate, never the SHA-256 check of the version's files."""
    spec = BASE
    for k, v in (
        ("SPLITCOL", "null"),
        ("LABEL", "flag"),
        ("TASK", "binary"),
        ("ESTIMATOR", "lightgbm"),
        ("PARAMS", "{n_estimators: 20, num_leaves: 7}"),
        ("GROUP", ""),
        ("SPLIT", "time"),
    ):
        spec = spec.replace(k, v)
    (tmp_path / "loopml.yaml").write_text(spec)
    pacsv.write_csv(items(), tmp_path / "items.csv")
    p = str(tmp_path)
    assert run(capsys, "ingest", "items", str(tmp_path / "items.csv"), "-p", p)[0] == 0
    for _ in range(2):
        assert run(capsys, "train", "-p", p)[0] == 0
    assert run(capsys, "models", "promote", "1", "--force", "--reason", "first", "-p", p)[0] == 0
    code, out, _ = run(capsys, "models", "show", "2", "-p", p, "--json")
    digest = json.loads(out)["files"]["model.txt"]
    blob = next((tmp_path / ".loopml").rglob(digest))
    original = blob.read_bytes()
    blob.write_bytes(original.replace(b"tree", b"TREE", 1))
    code, _, err = run(capsys, "models", "promote", "2", "--force", "--reason", "hotfix", "-p", p)
    assert code == 1, err
    assert "model.txt" in err and "SHA-256" in err and ":1 keeps it" in err
    assert len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "models", "list", "-p", p, "--json")
    assert [v["aliases"] for v in json.loads(out)] == [["champion"], []]
    blob.write_bytes(original)
    assert run(capsys, "models", "promote", "2", "--force", "--reason", "hotfix", "-p", p)[0] == 0
    # Nor the smoke check: a version whose (intact) files do not load is never forced in.
    from loopml import Project

    with Project.open(tmp_path) as project:
        v2 = project.models.get(2)
        files = project.registry.load_files(v2)
        broken = project.registry.register(
            v2.model,
            task=next(m.task for m in project.registry.models() if m.name == v2.model),
            files={**files, "model.txt": b"not a LightGBM model"},
            format=v2.format,
            lineage=v2.lineage,
            metrics=v2.metrics,
            by="test",
        )
    code, _, err = run(
        capsys, "models", "promote", str(broken.version), "--force", "--reason", "x", "-p", p
    )
    assert code == 1 and "does not load or predict" in err
    code, out, _ = run(capsys, "models", "list", "-p", p, "--json")
    assert [v["aliases"] for v in json.loads(out)] == [[], ["champion"], []]
