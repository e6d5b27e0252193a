"""The compiled row predictor: one request (a dict) to a prediction, with no pandas and no
per-call allocation on the way: request features, online lookups and window aggregates, derived
features (compiled expressions), the model's encoding into a reused numpy row, then LightGBM's
single-row C entry point (or the scikit-learn estimator)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from loopml.features import MISSING_CATEGORY, UNSEEN_CATEGORY, Flags, OnlineFeatures
from loopml.serving._fast import fast_booster
from loopml.training import LIGHTGBM, Model

_NAN = math.nan


class RowPredictor:
    """Predictions for single rows from one model version."""

    def __init__(self, model: Model, *, online: OnlineFeatures | None = None) -> None:
        self.model = model
        self.online = online
        enc = model.encoding
        lookups = {
            f: {v: float(i) for i, v in enumerate(vals)} for f, vals in enc.categorical.items()
        }
        self._slots: list[tuple[int, str, dict[Any, float] | None]] = [
            (j, f, lookups.get(f)) for j, f in enumerate(enc.features)
        ]
        self._categorical = [(f, lookups[f]) for f in enc.features if f in lookups]
        outputs = len(model.classes or []) if model.task == "multiclass" else 1
        self._fast = (
            fast_booster(model.estimator, len(enc.features), outputs)
            if model.kind == LIGHTGBM
            else None
        )
        self._multiclass = model.task == "multiclass"

    @property
    def compiled(self) -> bool:
        """Whether rows go through LightGBM's single-row C path."""
        return self._fast is not None

    def _fill(self, row: np.ndarray, values: Mapping[str, Any]) -> None:
        for j, name, lookup in self._slots:
            v = values.get(name)
            if v is None:
                row[j] = _NAN
            elif lookup is not None:
                row[j] = lookup.get(v, _NAN)
            else:
                row[j] = v  # numbers and booleans; numpy converts
        return None

    def score(self, values: Mapping[str, Any]) -> float | np.ndarray:
        """The model's output for one complete feature row: P(positive), class probabilities,
        a value, or a relevance score."""
        if self._fast is not None:
            self._fill(self._fast.buffer(), values)
            out = self._fast.predict_buffer()
            return out.copy() if self._multiclass else float(out[0])
        row = np.empty((1, len(self._slots)), dtype=np.float64)
        self._fill(row[0], values)
        result = self.model.predict_matrix(row)
        return result[0].copy() if self._multiclass else float(result[0])

    def category_flags(self, values: Mapping[str, Any]) -> Flags | None:
        """The categorical inputs of ``values`` that are null (``missing_category``) or that the
        model never saw in training (``unseen_category``): both are scored as missing. None
        when there are none."""
        flags: Flags | None = None
        for name, known in self._categorical:
            v = values.get(name)
            if v is None:
                flags = _flag(flags, name, MISSING_CATEGORY)
            elif v not in known:
                flags = _flag(flags, name, UNSEEN_CATEGORY)
        return flags

    def features(self, request: Mapping[str, Any], *, at: Any = None) -> dict[str, Any]:
        """Every feature of one request, computed online (request, lookups, windows, derived)."""
        if self.online is None:
            return dict(request)
        return self.online.vector(request, at=at)

    def predict(
        self, request: Mapping[str, Any], *, at: Any = None
    ) -> tuple[dict[str, Any], float | np.ndarray]:
        """Features and output for one request."""
        values = self.features(request, at=at)
        return values, self.score(values)

    def close(self) -> None:
        if self._fast is not None:
            self._fast.close()


def _flag(flags: Flags | None, name: str, flag: str) -> Flags:
    if flags is None:
        return {name: [flag]}
    flags.setdefault(name, []).append(flag)
    return flags
