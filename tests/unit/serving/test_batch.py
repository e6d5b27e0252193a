"""Batch prediction on the local engine: a training set (every model input) and a requests-only CSV
give the model's own predictions bit for bit, in any chunking; every task's output columns; bad
input fails with a named reason and leaves no file behind; the CLI."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from loopml import BackendUnavailable, Project, ReadError, UsageError
from loopml.cli import main
from loopml.demo._ingest import DEMO_SPEC
from loopml.serving import predict_file
from loopml.training import Model
from tests.helpers import flights_project
from tests.unit.training.test_tasks import items, project_for


@pytest.fixture(scope="module")
def flights(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """January's flights with a promoted champion (fewer trees than the reference model)."""
    spec = DEMO_SPEC.replace("n_estimators: 200,", "n_estimators: 60,")
    p = flights_project(tmp_path_factory.mktemp("batch"), months=(1,), spec=spec)
    v = p.models.train().version
    assert v is not None and p.models.evaluate(v.version).passed
    p.models.promote(v.version, reason="tests")
    return p


@pytest.fixture(scope="module")
def training_set(flights: Project) -> pa.Table:
    """Every January flight (cancelled ones too) with all its features."""
    return flights.features.build(labelled_only=False).table


@pytest.fixture(scope="module")
def files(
    flights: Project, training_set: pa.Table, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("batch-files")
    ts = folder / "training.parquet"
    pq.write_table(training_set, ts)
    requests = training_set.select(flights.features.feature_set.request)
    requests = requests.append_column("row_id", pa.array(np.arange(requests.num_rows)))
    csv = folder / "requests.csv"
    pacsv.write_csv(requests, csv)
    return {"training": ts, "requests": csv}


@pytest.fixture(scope="module")
def champion(flights: Project) -> Model:
    return flights.models.load("champion")


def test_a_training_set_is_predicted_as_the_model_predicts_it(
    flights: Project,
    training_set: pa.Table,
    files: dict[str, Path],
    champion: Model,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out" / "predictions.parquet"  # the folder is created
    summary = predict_file(flights, files["training"], out)
    got = pq.read_table(out)
    expected = champion.predict(training_set)
    assert np.array_equal(got["prediction"].to_numpy(), expected)  # bit for bit
    assert got["decision"].to_pylist() == (expected >= champion.threshold).tolist()
    assert set(got["model_version"].to_pylist()) == {summary["version"]}
    request = flights.features.feature_set.request
    assert got.column_names == [*request, "prediction", "decision", "model_version"]
    assert got.select(request).equals(training_set.select(request))
    assert summary["inputs"] == "features" and summary["snapshot"] is None
    assert summary["rows"] == training_set.num_rows and summary["engine"] == "local"
    assert summary["model"] == "flights_delay" and summary["rows_per_s"] > 0
    assert summary["columns"] == got.column_names
    meta = json.loads(pq.read_schema(out).metadata[b"loopml"])
    assert meta == {"model": "flights_delay", "version": summary["version"], "inputs": "features"}
    assert [p.name for p in out.parent.iterdir()] == ["predictions.parquet"]  # no temp file left


def test_request_rows_get_their_features_computed_point_in_time(
    flights: Project,
    training_set: pa.Table,
    files: dict[str, Path],
    champion: Model,
    tmp_path: Path,
) -> None:
    out = tmp_path / "predictions.parquet"
    summary = predict_file(flights, files["requests"], out)
    got = pq.read_table(out)
    # The features computed for the requests are those of the training set, row for row.
    assert np.array_equal(got["prediction"].to_numpy(), champion.predict(training_set))
    assert got["row_id"].to_pylist() == list(range(training_set.num_rows))
    assert got.column_names[-4:] == ["row_id", "prediction", "decision", "model_version"]
    assert summary["inputs"] == "requests" and summary["snapshot"].startswith("s_")


def test_chunking_does_not_change_the_output(
    flights: Project, files: dict[str, Path], tmp_path: Path
) -> None:
    whole = tmp_path / "whole.parquet"
    chunked = tmp_path / "chunked.parquet"
    seen: list[tuple[int, int | None]] = []
    predict_file(flights, files["training"], whole)
    summary = predict_file(
        flights,
        files["training"],
        chunked,
        chunk_rows=1000,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert pq.read_table(chunked).equals(pq.read_table(whole))
    n = summary["rows"]
    assert summary["chunks"] == -(-n // 1000) == len(seen)
    assert seen[0] == (1000, n) and seen[-1] == (n, n)

    requests_whole = tmp_path / "requests-whole.parquet"
    requests_chunked = tmp_path / "requests-chunked.parquet"
    seen.clear()
    predict_file(flights, files["requests"], requests_whole)
    summary = predict_file(
        flights,
        files["requests"],
        requests_chunked,
        chunk_rows=7000,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert summary["chunks"] == -(-n // 7000) and seen[-1] == (n, None)  # CSV: no total
    assert pq.read_table(requests_chunked).equals(pq.read_table(requests_whole))


def test_categorical_and_empty_inputs(
    flights: Project, training_set: pa.Table, champion: Model, tmp_path: Path
) -> None:
    # A pandas categorical saved as Parquet reads back as a dictionary column.
    table = training_set.slice(0, 500)
    for name in ("carrier", "origin", "dest"):
        i = table.column_names.index(name)
        table = table.set_column(i, name, pc.dictionary_encode(table[name]))
    pq.write_table(table, tmp_path / "dict.parquet")
    predict_file(flights, tmp_path / "dict.parquet", tmp_path / "dict-out.parquet")
    got = pq.read_table(tmp_path / "dict-out.parquet")
    assert np.array_equal(
        got["prediction"].to_numpy(), champion.predict(training_set.slice(0, 500))
    )

    pq.write_table(training_set.slice(0, 0), tmp_path / "empty.parquet")
    summary = predict_file(flights, tmp_path / "empty.parquet", tmp_path / "empty-out.parquet")
    empty = pq.read_table(tmp_path / "empty-out.parquet")
    assert summary["rows"] == 0 and empty.num_rows == 0
    assert empty.schema.field("prediction").type == pa.float64()
    assert empty.column_names == summary["columns"]


@pytest.mark.parametrize(
    ("task", "label", "columns"),
    [
        ("multiclass", "kind", ["p_high", "p_low", "p_mid", "decision", "model_version"]),
        ("regression", "value", ["prediction", "model_version"]),
    ],
)
def test_every_task_has_its_output_columns(
    make_project: Callable[..., Project], tmp_path: Path, task: str, label: str, columns: list[str]
) -> None:
    p = project_for(make_project, tmp_path, TASK=task, LABEL=label)
    version = p.models.train().version
    assert version is not None
    rows = items(400, seed=1)
    pq.write_table(rows, tmp_path / "items.parquet")
    summary = predict_file(p, tmp_path / "items.parquet", tmp_path / "out.parquet", ref=1)
    got = pq.read_table(tmp_path / "out.parquet")
    model = p.models.load(1)
    scores = model.predict(rows)
    assert got.column_names[-len(columns) :] == columns and summary["inputs"] == "features"
    # The identifying columns: the request features, then the columns that are not features.
    others = ["flag", "kind", "value", "grade"]
    assert got.column_names[: -len(columns)] == ["id", "t", "x1", "x2", "cat", "query", *others]
    if task == "multiclass":
        for k, c in enumerate(model.classes or []):
            assert np.array_equal(got[f"p_{c}"].to_numpy(), scores[:, k])
        assert got["decision"].to_pylist() == model.decide(scores).tolist()
    else:
        assert np.array_equal(got["prediction"].to_numpy(), scores)


def test_missing_columns_are_named(
    flights: Project, training_set: pa.Table, tmp_path: Path
) -> None:
    partial = training_set.drop_columns(["weather_temp", "tailnum"])
    pq.write_table(partial, tmp_path / "partial.parquet")
    out = tmp_path / "out.parquet"
    with pytest.raises(UsageError) as caught:
        predict_file(flights, tmp_path / "partial.parquet", out)
    assert "weather_temp" in caught.value.message and "tailnum" in caught.value.message
    assert caught.value.details["missing_inputs"] == ["weather_temp"]
    assert caught.value.details["missing_request"] == ["tailnum"]
    assert not out.exists()


def test_bad_files_and_options(flights: Project, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    (tmp_path / "rows.txt").write_text("a,b\n1,2\n")
    with pytest.raises(UsageError, match=r"unknown file type.*\.parquet or \.csv"):
        predict_file(flights, tmp_path / "rows.txt", out)
    with pytest.raises(UsageError, match="written as Parquet"):
        predict_file(flights, files["training"], tmp_path / "out.csv")
    with pytest.raises(ReadError, match="does not exist"):
        predict_file(flights, tmp_path / "nothing.parquet", out)
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ReadError, match=r"cannot read .*broken\.parquet as Parquet"):
        predict_file(flights, tmp_path / "broken.parquet", out)
    with pytest.raises(UsageError, match="unknown engine 'spark'"):
        predict_file(flights, files["training"], out, engine="spark")
    with pytest.raises(UsageError, match="both the input and the output"):
        predict_file(flights, files["training"], files["training"])
    assert not out.exists()


def test_bad_values_are_a_usage_error(
    flights: Project, training_set: pa.Table, tmp_path: Path
) -> None:
    rows = training_set.slice(0, 10)
    i = rows.column_names.index("distance")
    rows = rows.set_column(i, "distance", pa.array(["far"] * 10))
    pq.write_table(rows, tmp_path / "bad.parquet")
    with pytest.raises(UsageError, match="do not fit the model's inputs"):
        predict_file(flights, tmp_path / "bad.parquet", tmp_path / "out.parquet")


def test_a_crash_leaves_the_previous_file_whole(
    flights: Project, files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.parquet"
    out.write_bytes(b"yesterday's predictions")
    calls = 0
    predict = Model.predict_matrix

    def failing(self: Model, x: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("the machine fell over")
        return predict(self, x)

    monkeypatch.setattr(Model, "predict_matrix", failing)
    with pytest.raises(RuntimeError, match="fell over"):
        predict_file(flights, files["training"], out, chunk_rows=2000)
    assert out.read_bytes() == b"yesterday's predictions"
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_the_ray_engine_names_its_extra_when_ray_is_missing(
    flights: Project, files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(BackendUnavailable, match=r"pip install 'loopml\[ray\]'"):
        predict_file(flights, files["training"], tmp_path / "out.parquet", engine="ray")
    assert not (tmp_path / "out.parquet").exists()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli(
    flights: Project, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = str(flights.root)
    out = tmp_path / "cli.parquet"
    code, stdout, _ = run(
        capsys, "predict", "-p", p, "--input", str(files["training"]), "--output", str(out)
    )
    assert code == 0 and "predicted" in stdout and "features" not in stdout.split("(")[0]
    assert f"wrote {out}" in stdout
    code, stdout, _ = run(
        capsys,
        "predict",
        "-p",
        p,
        "-i",
        str(files["requests"]),
        "-o",
        str(out),
        "--model",
        "1",
        "--chunk-rows",
        "20000",
        "--json",
    )
    summary = json.loads(stdout)
    assert code == 0 and summary["inputs"] == "requests" and summary["version"] == 1
    assert summary["chunks"] == 2 and summary["rows"] == pq.read_metadata(out).num_rows

    code, stdout, stderr = run(
        capsys, "predict", "-p", p, "-i", str(tmp_path / "x.json"), "-o", str(out), "--json"
    )
    assert code == 2 and json.loads(stdout)["error"]["code"] == "usage_error"
    assert "unknown file type" in stderr
    code, _, stderr = run(
        capsys, "predict", "-p", p, "-i", str(files["training"]), "-o", str(out), "-m", "9"
    )
    assert code == 2 and "9" in stderr  # no such version
    code, _, stderr = run(
        capsys, "predict", "-p", p, "-i", str(files["training"]), "-o", str(out), "--engine", "x"
    )
    assert code == 2 and "unknown engine" in stderr
