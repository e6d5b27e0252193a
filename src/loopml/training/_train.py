"""Training: a training set in, a fitted, evaluated, registered model version out.

Stateless training fits from scratch on a window of data. Stateful training continues the
parent version (LightGBM ``init_model``; ``partial_fit``; or ``warm_start``) on the rows newer
than the parent saw, keeping the parent's encoding; the parent is recorded.

With ``refit``, the model fitted on the training rows (the *held-out model*: the one evaluated,
whose metrics are reported, and which the gate judges) is fitted again on every row up to the
cut-off with the same parameters and number of rounds, and that refitted model is the artifact
registered: a time split otherwise leaves the newest validation and test rows out of the model
that serves. Both are stored; the lineage records which rows each learned from.
"""

from __future__ import annotations

import contextlib
import copy
import io
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loopml.errors import UsageError
from loopml.features import TrainingSet
from loopml.spec import DriftSpec, ModelSpec
from loopml.training._encoding import Encoding
from loopml.training._model import LIGHTGBM, SKLEARN, Model, fit_lightgbm, make_sklearn
from loopml.training._report import build_report
from loopml.training._split import Split, split

PACKAGES = ("loopml", "lightgbm", "scikit-learn", "numpy", "pyarrow", "duckdb", "skops")


HOLDOUT = "holdout/"  # the held-out model's files in a refitted version


@dataclass
class Trained:
    """A fitted model, its evaluation, and what it was trained on. ``model`` is the artifact
    registered (refitted on every row with ``refit``); ``holdout`` the model fitted on the
    training rows only, which the report, the metrics and the gate are about (``model`` itself
    without a refit)."""

    model: Model
    report: dict[str, Any]
    lineage: dict[str, Any]
    test: pa.Table
    sizes: dict[str, int]
    seconds: float
    files: dict[str, bytes] = field(default_factory=dict)
    trusted_types: list[str] = field(default_factory=list)
    holdout: Model | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.report["metrics"])

    @property
    def refit(self) -> bool:
        return self.holdout is not None


def labels(
    task: str, column: pa.ChunkedArray, classes: list[Any] | None = None
) -> tuple[np.ndarray, list[Any] | None]:
    """Targets as numbers: 0/1, class codes, values or relevance grades."""
    if task == "binary":
        values = column.cast(pa.int64()) if pa.types.is_boolean(column.type) else column
        y = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
        if not np.isin(y, (0, 1)).all():
            raise UsageError("a binary label must be a boolean or 0/1")
        return y, [0, 1]
    if task == "multiclass":
        classes = classes or sorted(pc.unique(column).drop_null().to_pylist(), key=str)
        codes = pc.index_in(column, value_set=pa.array(classes, type=column.type))
        y = np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.float64)
        return y, classes
    return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)), None


def class_weights(y: np.ndarray) -> np.ndarray:
    """Per-row weights making every class weigh the same in total ("balanced")."""
    values, counts = np.unique(y, return_counts=True)
    per_class = len(y) / (len(values) * counts)
    return per_class[np.searchsorted(values, y)]


def resample(idx: np.ndarray, y: np.ndarray, how: str, ratio: float, seed: int) -> np.ndarray:
    """Random over-sampling of the smaller classes, or under-sampling of the largest, to
    ``ratio`` (smaller : largest)."""
    rng = np.random.default_rng(seed)
    values, counts = np.unique(y[idx], return_counts=True)
    largest = int(counts.max())
    others = counts[counts < largest]
    runner_up = int(others.max()) if len(others) else largest
    keep: list[np.ndarray] = []
    for value, count in zip(values, counts, strict=True):
        members = idx[y[idx] == value]
        if how == "over" and count < largest * ratio:
            extra = rng.choice(members, size=int(largest * ratio) - int(count), replace=True)
            members = np.concatenate([members, extra])
        elif how == "under" and count == largest:
            target = min(largest, int(runner_up / ratio))
            members = rng.choice(members, size=target, replace=False)
        keep.append(members)
    return np.sort(np.concatenate(keep))


def fit(
    spec: ModelSpec,
    ts: TrainingSet,
    *,
    parent: Model | None = None,
    parent_ref: str | None = None,
    since: datetime | None = None,
    drift: DriftSpec | None = None,
    min_rows: int = 10,
    refit: bool = False,
) -> Trained:
    """Fit, evaluate and describe a model on a training set (nothing is registered here);
    with ``refit``, fit it again on every row once evaluated (see the module's docstring)."""
    started = time.perf_counter()
    table = ts.table
    label = spec.label or ts.label
    if not label or label not in table.column_names:
        raise UsageError("the training set has no label: define features.label or model.label")
    features = list(parent.encoding.features if parent else (spec.features or ts.vector))
    if spec.window is not None and table.num_rows:
        end = pc.max(table["_event_time"]).as_py()
        table = table.filter(
            pc.greater_equal(
                table["_event_time"], pa.scalar(end - spec.window, table["_event_time"].type)
            )
        )
    if since is not None:
        table = table.filter(
            pc.greater(table["_event_time"], pa.scalar(since, table["_event_time"].type))
        )
        if table.num_rows < min_rows:
            raise UsageError(
                f"only {table.num_rows} labelled rows are newer than the parent's data ({since:%Y-%m-%d %H:%M}); nothing to warm-start on"
            )
    table = table.filter(pc.is_valid(table[label]))
    if table.num_rows < min_rows:
        raise UsageError(
            f"only {table.num_rows} labelled rows to train on; at least {min_rows} are needed"
        )
    parts = split(table, spec.split, label=label)
    encoding = (
        parent.encoding
        if parent
        else Encoding.fit(table.take(pa.array(parts.train)), features, spec.categorical)
    )
    x = encoding.matrix(table)
    y, classes = labels(spec.task, table[label], parent.classes if parent else None)
    model = _fit(spec, encoding, x, y, parts, table, classes, parent)
    if spec.task == "binary":
        model.threshold = _threshold(spec, model, x, y, parts)
    test = table.take(pa.array(parts.test))
    train = table.take(pa.array(parts.train))
    scores = model.predict_matrix(x[parts.test])
    report = build_report(
        spec,
        model,
        test=test,
        y_test=y[parts.test],
        scores=scores,
        train=train,
        y_train=y[parts.train],
    )
    start, end = pc.min(table["_event_time"]).as_py(), pc.max(table["_event_time"]).as_py()
    holdout: Model | None = None
    seen = rows_seen(train, refit=False)
    held = seen
    frozen: dict[str, Any] = {}
    if refit:
        holdout = model
        model, frozen = _refit(spec, table, features, y, classes, parent, holdout)
        seen = rows_seen(table, refit=True)
    # The newest row the served trees learned from: the next warm start continues after it, so
    # rows held out here (validation, test, when not refitted) are learned then instead of never.
    learned = seen["end"]
    lineage = {
        "snapshot": ts.snapshot,
        "features_hash": ts.definitions_hash,
        "as_of": ts.as_of.isoformat() if ts.as_of else None,
        "data_start": start.isoformat() if start else None,  # None: events without a time
        "data_end": end.isoformat() if end else None,
        "trained_until": learned,
        "rows": parts.sizes(),
        # Which rows each stored model learned from: the registered artifact, and (refitted)
        # the held-out model the metrics and the gate are about.
        "refit": refit,
        "learned": seen,
        "holdout": held if refit else None,
        "metrics_from": "the held-out model, before the refit" if refit else "the model",
        "parent": parent_ref,
        "stateful": parent is not None,
        "estimator": spec.estimator,
        "params": dict(spec.params),
        "refit_params": frozen,
        "split": spec.split.model_dump(),
        "imbalance": spec.imbalance.model_dump(),
        "code_version": code_version(),
        "packages": package_versions(),
        "trained_at": datetime.now(UTC).isoformat(),
    }
    elapsed = time.perf_counter() - started
    lineage["training_seconds"] = round(elapsed, 3)
    model.meta = {"label": label, "features_hash": ts.definitions_hash}
    files, trusted = model.to_files()
    if holdout is not None:
        holdout.meta = dict(model.meta)
        held_files, held_trusted = holdout.to_files()
        files.update({HOLDOUT + name: data for name, data in held_files.items()})
        trusted = sorted({*trusted, *held_trusted})
        report["refit"] = {"learned": seen, "holdout": held}
    buffer = io.BytesIO()
    pq.write_table(test, buffer)
    files["test.parquet"] = buffer.getvalue()
    # The reference monitoring compares live traffic with: the held-out model's predictions on
    # rows it did not learn from, which is what the served model's answers should look like.
    files[PROFILE_FILE] = _profile(
        spec, holdout or model, train, test, scores, label, report, drift or DriftSpec()
    )
    return Trained(
        model, report, lineage, test, parts.sizes(), elapsed, files, trusted, holdout=holdout
    )


def rows_seen(table: pa.Table, *, refit: bool) -> dict[str, Any]:
    """The rows a model learned from: how many, the first and last event times, and whether
    they are every row up to the cut-off (a refit)."""
    times = table["_event_time"] if "_event_time" in table.column_names else None
    first = pc.min(times).as_py() if times is not None and table.num_rows else None
    last = pc.max(times).as_py() if times is not None and table.num_rows else None
    return {
        "rows": table.num_rows,
        "start": first.isoformat() if first else None,
        "end": last.isoformat() if last else None,
        "refit": refit,
    }


def holdout_files(files: Mapping[str, bytes]) -> dict[str, bytes] | None:
    """The held-out model's files in a refitted version's files (None: not refitted)."""
    held = {k[len(HOLDOUT) :]: v for k, v in files.items() if k.startswith(HOLDOUT)}
    return held or None


def _refit(
    spec: ModelSpec,
    table: pa.Table,
    features: list[str],
    y: np.ndarray,
    classes: list[Any] | None,
    parent: Model | None,
    holdout: Model,
) -> tuple[Model, dict[str, Any]]:
    """The held-out model fitted again on every row: the same parameters and the same number
    of rounds or iterations (one an estimator chose by early stopping is fixed, since the refit
    has no held-out rows to stop on), the same decision threshold; the categories are learned
    from every row (a stateful model keeps its parent's)."""
    frozen = _chosen_iterations(holdout)
    refit_spec = spec.model_copy(update={"params": {**spec.params, **frozen}}) if frozen else spec
    everything = Split(np.arange(table.num_rows), np.zeros(0, int), np.zeros(0, int))
    encoding = parent.encoding if parent else Encoding.fit(table, features, spec.categorical)
    x = encoding.matrix(table)
    model = _fit(refit_spec, encoding, x, y, everything, table, classes, parent)
    model.threshold = holdout.threshold
    return model, frozen


def _chosen_iterations(model: Model) -> dict[str, Any]:
    """Parameters fixing the rounds a scikit-learn estimator chose by early stopping."""
    if model.kind != SKLEARN:
        return {}  # LightGBM runs its declared rounds (loopml sets no early stopping)
    est = model.estimator.named_steps["est"]
    params = est.get_params()
    if (
        params.get("n_iter_no_change") is not None
        and hasattr(est, "n_estimators_")
        and "n_estimators" in params
    ):  # GradientBoosting*
        return {"n_estimators": int(est.n_estimators_), "n_iter_no_change": None}
    stopped = getattr(est, "do_early_stopping_", params.get("early_stopping") is True)
    if stopped and hasattr(est, "n_iter_") and "max_iter" in params:
        return {"early_stopping": False, "max_iter": int(np.max(est.n_iter_))}
    return {}


PROFILE_FILE = "profile.json.gz"


def _profile(
    spec: ModelSpec,
    model: Model,
    train: pa.Table,
    test: pa.Table,
    scores: np.ndarray,
    label: str,
    report: dict[str, Any],
    drift: DriftSpec,
) -> bytes:
    """The reference profile monitoring compares live traffic with (drift, label shift,
    performance), fitted once per version and stored with it."""
    from loopml.monitoring import dumps_profile, model_profile

    enc = model.encoding
    profile = model_profile(
        train,
        test,
        features=enc.features,
        categorical=list(enc.categorical),
        label=label,
        task=spec.task,
        test_scores=scores,
        classes=model.classes,
        reference={
            k: v for k, v in report.get("metrics", {}).items() if isinstance(v, int | float)
        },
        spec=drift,
        threshold=model.threshold if spec.task == "binary" else None,
    )
    return dumps_profile(profile)


def _fit(
    spec: ModelSpec,
    encoding: Encoding,
    x: np.ndarray,
    y: np.ndarray,
    parts: Split,
    table: pa.Table,
    classes: list[Any] | None,
    parent: Model | None,
) -> Model:
    train = parts.train
    if spec.imbalance.resample != "none":
        train = resample(train, y, spec.imbalance.resample, spec.imbalance.ratio, spec.split.seed)
    weight = (
        class_weights(y[train])
        if spec.imbalance.class_weight == "balanced" and spec.task in ("binary", "multiclass")
        else None
    )
    kind = LIGHTGBM if spec.estimator == "lightgbm" else SKLEARN
    label = spec.label or ""
    if kind == LIGHTGBM:
        group = None
        if spec.task == "ranking":
            assert spec.group is not None
            train, group = _grouped(table, train, spec.group)
        params = dict(spec.params)
        if parent is not None:
            # Continue gently: a few slower trees on the new rows, not a second model on top.
            from loopml.training._model import lightgbm_params

            base, rounds = lightgbm_params(
                spec.task, spec.params, len(classes) if classes else None
            )
            ws = spec.warm_start
            extra = int(ws.rounds) if ws.rounds >= 1 else max(1, round(rounds * ws.rounds))
            params = {
                **params,
                "n_estimators": extra,
                "learning_rate": base["learning_rate"] * ws.learning_rate_scale,
            }
        if spec.behaviour.enforce_monotone and spec.behaviour.monotone:
            params["monotone_constraints"] = [
                spec.behaviour.monotone.get(f, 0) for f in encoding.features
            ]
        booster = fit_lightgbm(
            spec.task,
            params,
            encoding,
            x[train],
            y[train],
            weight=weight,
            group=group,
            n_classes=len(classes) if classes else None,
            init_model=parent.estimator if parent is not None else None,
        )
        return Model(
            spec.task, LIGHTGBM, encoding, booster, label, classes, params=dict(spec.params)
        )
    if spec.task == "ranking":
        raise UsageError("ranking needs model.estimator: lightgbm (LambdaRank)")
    if parent is not None:
        estimator = _warm_start(parent.estimator, x[train], y[train], weight, classes)
    else:
        estimator = make_sklearn(spec.estimator, spec.params, encoding)
        fit_params = {"est__sample_weight": weight} if weight is not None else {}
        estimator.fit(x[train], y[train], **fit_params)
    return Model(spec.task, SKLEARN, encoding, estimator, label, classes, params=dict(spec.params))


def _warm_start(
    pipeline: Any,
    x: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray | None,
    classes: list[Any] | None,
) -> Any:
    """Continue a fitted scikit-learn pipeline on new rows."""
    model = copy.deepcopy(pipeline)
    est = model.named_steps["est"]
    xt = model.named_steps["prep"].transform(x)
    if hasattr(est, "partial_fit"):
        kwargs: dict[str, Any] = {"sample_weight": weight} if weight is not None else {}
        if classes is not None:
            kwargs["classes"] = np.arange(len(classes), dtype=np.float64)
        est.partial_fit(xt, y, **kwargs)
        return model
    if "warm_start" in est.get_params():
        params: dict[str, Any] = {"warm_start": True}
        if "n_estimators" in est.get_params():
            params["n_estimators"] = est.get_params()["n_estimators"] * 2
        elif "max_iter" in est.get_params():
            params["max_iter"] = est.get_params()["max_iter"] * 2
        est.set_params(**params)
        est.fit(xt, y, **({"sample_weight": weight} if weight is not None else {}))
        return model
    raise UsageError(
        f"{type(est).__name__} cannot warm start: it has neither partial_fit nor warm_start"
    )


def _grouped(table: pa.Table, rows: np.ndarray, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows ordered by query, and the size of each query (LambdaRank needs them contiguous)."""
    codes = (
        pc.dictionary_encode(table[column]).combine_chunks().indices.to_numpy(zero_copy_only=False)
    )
    ordered = rows[np.argsort(codes[rows], kind="stable")]
    _, sizes = np.unique(codes[ordered], return_counts=True)
    return ordered, sizes


def _threshold(spec: ModelSpec, model: Model, x: np.ndarray, y: np.ndarray, parts: Split) -> float:
    """The decision threshold, chosen on validation rows (never on the test set)."""
    imb = spec.imbalance
    if imb.threshold == "fixed" or len(parts.valid) == 0 or len(np.unique(y[parts.valid])) < 2:
        return imb.fixed_threshold
    from loopml.evaluation import best_threshold

    scores = model.predict_matrix(x[parts.valid])
    threshold, _ = best_threshold(
        y[parts.valid], scores, metric=imb.threshold, min_precision=imb.min_precision
    )
    return float(threshold)


def code_version() -> str:
    """The loopml version, and the git commit of the working directory when there is one."""
    import subprocess

    version = metadata.version("loopml")
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{version}+{sha}" if sha else version


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out
