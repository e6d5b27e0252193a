"""A trained model: its estimator, its encoding and what it predicts, saved in formats that do not
execute code (LightGBM's own text format; skops for scikit-learn, loading only the types recorded
when it was saved)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from loopml.errors import IntegrityError, UsageError
from loopml.spec import Task
from loopml.training._encoding import Encoding

LIGHTGBM = "lightgbm"
SKLEARN = "sklearn"
_ROUNDS = ("n_estimators", "num_boost_round", "num_iterations", "num_round", "num_trees")


@dataclass
class Model:
    """A fitted estimator with everything needed to use it on new rows."""

    task: Task
    kind: str  # lightgbm | sklearn
    encoding: Encoding
    estimator: Any
    label: str
    classes: list[Any] | None = None
    threshold: float = 0.5
    params: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    # --------------------------------------------------------------------------- predicting

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """Scores for an encoded matrix: P(positive) for binary, an (n, k) probability matrix
        for multiclass, values for regression, relevance scores for ranking."""
        if self.kind == LIGHTGBM:
            out = self.estimator.predict(x)
            return np.asarray(out, dtype=np.float64)
        if self.task in ("binary", "multiclass"):
            proba = np.asarray(self.estimator.predict_proba(x), dtype=np.float64)
            return proba[:, 1] if self.task == "binary" else proba
        return np.asarray(self.estimator.predict(x), dtype=np.float64)

    def predict(self, table: pa.Table) -> np.ndarray:
        """Scores for the rows of a table (see :meth:`predict_matrix`)."""
        return self.predict_matrix(self.encoding.matrix(table))

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Decisions from scores: the class at the threshold (binary) or the likeliest class."""
        if self.task == "binary":
            return scores >= self.threshold
        if self.task == "multiclass":
            assert self.classes is not None
            return np.asarray(self.classes, dtype=object)[np.argmax(scores, axis=1)]
        return scores

    def contributions(self, table: pa.Table) -> np.ndarray | None:
        """Per-prediction feature contributions (LightGBM's SHAP values; None for others):
        (n, d + 1), the last column the expected value."""
        if self.kind != LIGHTGBM or self.task == "multiclass":
            return None
        return np.asarray(self.estimator.predict(self.encoding.matrix(table), pred_contrib=True))

    def gain_importance(self) -> dict[str, float] | None:
        if self.kind != LIGHTGBM:
            return None
        gains = self.estimator.feature_importance(importance_type="gain")
        return {f: float(g) for f, g in zip(self.encoding.features, gains, strict=True)}

    # ------------------------------------------------------------------------------ saving

    def to_files(self) -> tuple[dict[str, bytes], list[str]]:
        """The files to register and, for skops, the types it may load."""
        manifest = {
            "task": self.task,
            "kind": self.kind,
            "label": self.label,
            "classes": self.classes,
            "threshold": self.threshold,
            "params": self.params,
            "encoding": self.encoding.to_dict(),
            "meta": self.meta,
        }
        files = {
            "model.json": orjson.dumps(
                manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
            )
        }
        trusted: list[str] = []
        if self.kind == LIGHTGBM:
            files["model.txt"] = self.estimator.model_to_string().encode()
        else:
            import skops.io as sio

            blob = sio.dumps(self.estimator)
            files["model.skops"] = blob
            trusted = sorted(sio.get_untrusted_types(data=blob))
        return files, trusted

    @classmethod
    def from_files(
        cls, files: Mapping[str, bytes], trusted_types: list[str] | None = None
    ) -> Model:
        """Rebuild a model from its registered files; skops loads only ``trusted_types``."""
        try:
            manifest = orjson.loads(files["model.json"])
        except (KeyError, orjson.JSONDecodeError) as exc:
            raise IntegrityError(
                f"the model's model.json is missing or unreadable ({exc})"
            ) from None
        kind = manifest["kind"]
        if kind == LIGHTGBM:
            import lightgbm as lgb

            estimator: Any = lgb.Booster(model_str=files["model.txt"].decode())
        elif kind == SKLEARN:
            import skops.io as sio

            try:
                estimator = sio.loads(files["model.skops"], trusted=list(trusted_types or []))
            except Exception as exc:  # noqa: BLE001 - skops raises UntrustedTypesFoundException and others
                raise IntegrityError(f"refusing to load the scikit-learn model: {exc}") from None
        else:
            raise IntegrityError(f"unknown model kind {kind!r} in model.json")
        return cls(
            task=manifest["task"],
            kind=kind,
            encoding=Encoding.from_dict(manifest["encoding"]),
            estimator=estimator,
            label=manifest["label"],
            classes=manifest["classes"],
            threshold=manifest["threshold"],
            params=manifest["params"],
            meta=manifest.get("meta", {}),
        )


# -------------------------------------------------------------------------------- fitting


def lightgbm_params(
    task: Task, params: Mapping[str, Any], n_classes: int | None
) -> tuple[dict[str, Any], int]:
    """LightGBM parameters for a task (sklearn-style names accepted), and the number of rounds.
    The defaults are the reference model of DESIGN.md: 200 trees of 63 leaves."""
    p: dict[str, Any] = {
        "num_leaves": 63,
        "learning_rate": 0.05,
        "verbose": -1,
        "seed": 0,
        "deterministic": True,
        "force_col_wise": True,
        "min_data_in_leaf": 20,
    }
    rounds = 200
    for k, v in params.items():
        if k in _ROUNDS:
            rounds = int(v)
        elif k == "random_state":
            p["seed"] = v
        else:
            p[k] = v
    objective = {
        "binary": "binary",
        "multiclass": "multiclass",
        "regression": "regression",
        "ranking": "lambdarank",
    }[task]
    p.setdefault("objective", objective)
    if task == "multiclass":
        p["num_class"] = n_classes
    if task == "ranking":
        p.setdefault("metric", "ndcg")
    return p, rounds


def fit_lightgbm(
    task: Task,
    params: Mapping[str, Any],
    encoding: Encoding,
    x: np.ndarray,
    y: np.ndarray,
    *,
    weight: np.ndarray | None = None,
    group: np.ndarray | None = None,
    n_classes: int | None = None,
    init_model: Any = None,
) -> Any:
    import lightgbm as lgb

    p, rounds = lightgbm_params(task, params, n_classes)
    data = lgb.Dataset(
        x,
        label=y,
        weight=weight,
        group=group,
        feature_name=[_safe(f) for f in encoding.features],
        categorical_feature=encoding.categorical_indices or "auto",
        free_raw_data=False,
    )
    return lgb.train(p, data, num_boost_round=rounds, init_model=init_model)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def make_sklearn(estimator: str, params: Mapping[str, Any], encoding: Encoding) -> Any:
    """A scikit-learn pipeline: median-imputed numbers and one-hot categories, then the
    estimator named ``module:Class``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    cls = import_estimator(estimator)
    try:
        est = cls(**params)
    except TypeError as exc:
        raise UsageError(f"model.params do not fit {estimator}: {exc}") from None
    cat = encoding.categorical_indices
    num = [i for i in range(len(encoding.features)) if i not in cat]
    parts: list[tuple[str, Any, list[int]]] = []
    if num:
        parts.append(("num", SimpleImputer(strategy="median", keep_empty_features=True), num))
    if cat:
        parts.append(
            (
                "cat",
                Pipeline(
                    [
                        (
                            "fill",
                            SimpleImputer(
                                strategy="constant", fill_value=-1.0, keep_empty_features=True
                            ),
                        ),
                        ("onehot", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                cat,
            )
        )
    return Pipeline([("prep", ColumnTransformer(parts)), ("est", est)])


def import_estimator(path: str) -> Any:
    module, _, name = path.partition(":")
    if not name:
        raise UsageError(f"model.estimator {path!r}: write lightgbm or module:Class")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"model.estimator {path!r} cannot be imported: {exc}") from None
    if not (hasattr(cls, "fit") and (hasattr(cls, "predict") or hasattr(cls, "predict_proba"))):
        raise UsageError(
            f"model.estimator {path!r} is not a scikit-learn estimator (no fit/predict)"
        )
    return cls
