"""The compiled row predictor and the batch path agree to the last bit."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from loopml import Project
from loopml.serving import RowPredictor


def test_row_and_batch_paths_agree_on_10000_flights(served: Project) -> None:
    table = served.features.build(labelled_only=False).table.slice(0, 10_000)
    assert table.num_rows == 10_000
    model = served.models.load("champion")
    batch = model.predict(table)
    row = RowPredictor(model)
    assert row.compiled  # LightGBM's single-row C path
    single = np.array([row.score(r) for r in table.to_pylist()])
    assert np.array_equal(single, batch)  # bit for bit, not approximately


def test_row_path_from_a_request_uses_the_online_features(served: Project) -> None:
    fs = served.features.feature_set
    table = served.features.build(labelled_only=False).table.slice(12_000, 200)
    model = served.models.load("champion")
    row = RowPredictor(model, online=served.features.online)
    for r in table.to_pylist()[:50]:
        features, score = row.predict({k: r[k] for k in fs.request})
        assert score == model.predict(pa.table({f: [features[f]] for f in fs.vector}))[0]


def test_sklearn_models_take_the_general_path(tmp_path: object) -> None:
    from sklearn.linear_model import LogisticRegression

    from loopml.training import Encoding, Model

    x = np.random.default_rng(0).normal(size=(200, 2))
    y = (x[:, 0] > 0).astype(float)
    est = LogisticRegression().fit(x, y)
    model = Model("binary", "sklearn", Encoding(["a", "b"]), est, "y", [0, 1])
    row = RowPredictor(model)
    assert not row.compiled
    assert row.score({"a": 1.0, "b": 0.0}) == est.predict_proba([[1.0, 0.0]])[0, 1]
