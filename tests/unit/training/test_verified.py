"""One way to load a version (every file checked against its SHA-256, trusted types only) and one
smoke test: the gate, a forced promotion, ``Models.smoke`` and a serving worker's holder accept
and refuse the same versions, so a version the gate passes is one every worker will serve."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from tests.unit.training import seasons

from loopml import Project
from loopml.errors import GateError, IntegrityError
from loopml.registry import ModelVersion
from loopml.serving import ModelHolder


def _nan_leaves(files: dict[str, bytes]) -> dict[str, bytes]:
    text = files["model.txt"].decode()
    # Every leaf of the first tree predicts NaN: so does the model, on every row.
    first = re.search(r"leaf_value=([^\n]*)", text)
    assert first is not None
    nans = " ".join("nan" for _ in first.group(1).split())
    text = text.replace(first.group(0), f"leaf_value={nans}", 1)
    # The trees' byte sizes no longer hold: without them LightGBM reads the trees in order.
    text = re.sub(r"tree_sizes=[^\n]*\n", "", text)
    return {**files, "model.txt": text.encode()}


def _claims_multiclass(files: dict[str, bytes]) -> dict[str, bytes]:
    # A binary booster whose manifest says it scores three classes: one value a row, not three.
    manifest = orjson.loads(files["model.json"])
    manifest.update(task="multiclass", classes=["a", "b", "c"])
    return {**files, "model.json": orjson.dumps(manifest)}


def _no_test_rows(files: dict[str, bytes]) -> dict[str, bytes]:
    table = pq.read_table(io.BytesIO(files["test.parquet"])).slice(0, 0)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return {**files, "test.parquet": buffer.getvalue()}


# name -> (how the trained files are changed, whether the version may serve)
VARIANTS: dict[str, tuple[Callable[[dict[str, bytes]], dict[str, bytes]], bool]] = {
    "as trained": (lambda f: f, True),
    "predicts NaN": (_nan_leaves, False),
    "wrong shape": (_claims_multiclass, False),
    "no test set": (lambda f: {k: v for k, v in f.items() if k != "test.parquet"}, False),
    "empty test set": (_no_test_rows, False),
    "not a model": (lambda f: {**f, "model.txt": b"not a LightGBM model"}, False),
}


def _register(p: Project, base: ModelVersion, files: dict[str, bytes]) -> ModelVersion:
    return p.registry.register(
        base.model,
        task="binary",
        files=files,
        format=base.format,
        trusted_types=base.trusted_types,
        lineage=base.lineage,
        metrics=base.metrics,
        by="test",
    )


def _holder_serves(p: Project, mv: ModelVersion) -> bool:
    try:
        ModelHolder(p.models, lambda: None).load_version(mv)
    except Exception:  # noqa: BLE001 - any failure: the worker does not serve it
        return False
    return True


def _forced_in(p: Project, mv: ModelVersion) -> bool:
    try:
        p.models.promote(mv.version, force=True, reason="test")
    except GateError:
        return False
    return True


def test_the_gate_and_the_holder_accept_and_refuse_the_same_versions(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = seasons.project(make_project, tmp_path, gate="{backtest: null}")
    trained = p.models.train().version
    assert trained is not None
    files = p.registry.load_files(trained)
    outcomes = {}
    for name, (change, serves) in VARIANTS.items():
        mv = _register(p, trained, change(dict(files)))
        smoke = next(c for c in p.models.evaluate(mv.version, against=None).checks)
        assert smoke.name == "smoke"
        outcomes[name] = {
            "gate": smoke.passed,
            "holder": _holder_serves(p, mv),
            "Models.smoke": p.models.smoke(mv) is None,
            "forced promotion": _forced_in(p, mv),
        }
        assert outcomes[name] == dict.fromkeys(outcomes[name], serves), (name, smoke.detail)
    assert len(outcomes) == len(VARIANTS)


def test_the_smoke_test_predicts_the_gates_rows_and_says_what_failed(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = seasons.project(make_project, tmp_path, gate="{backtest: null, smoke_rows: 7}")
    trained = p.models.train().version
    assert trained is not None
    verdict = p.models.evaluate(trained.version, against=None)
    assert verdict.checks[0].rows == 7
    bad = _register(p, trained, _claims_multiclass(p.registry.load_files(trained)))
    detail = p.models.evaluate(bad.version, against=None).checks[0].detail
    assert "shape (7,)" in detail and "(7, 3)" in detail
    with pytest.raises(Exception, match=r"shape \(7,\)") as raised:
        ModelHolder(p.models, lambda: None).load_version(bad)
    assert raised.value.details["check"] == "smoke"  # type: ignore[attr-defined]
    nan = _register(p, trained, _nan_leaves(p.registry.load_files(trained)))
    problem = p.models.smoke(nan)
    assert problem is not None and "NaN or infinity on 7 of its first 7 test rows" in problem


def test_load_verified_checks_every_file(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = seasons.project(make_project, tmp_path)
    trained = p.models.train().version
    assert trained is not None
    model = p.models.load_verified(trained.version)
    test = p.models.verified(trained.version).test()
    assert model.predict(test.slice(0, 3)).shape == (3,)
    digest = trained.files["test.parquet"]
    blob = Path(p.artifacts.files.path(f"sha256/{digest[:2]}/{digest}"))
    blob.write_bytes(blob.read_bytes() + b"x")
    # Not only the model's own files: any file of the version, read through the same path.
    with pytest.raises(IntegrityError, match=r"test\.parquet"):
        p.models.load_verified(trained.version)
