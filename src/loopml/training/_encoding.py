"""From feature values to the numeric matrix a model reads, the same way in training, batch
prediction and (later) the compiled row predictor: numbers as float64 (null as NaN), booleans as
0/1, categories as their code in a mapping fixed at training time (unseen or null as NaN)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import UsageError


@dataclass
class Encoding:
    """The model's inputs: their order, and the categories of the categorical ones."""

    features: list[str]
    categorical: dict[str, list[Any]] = field(default_factory=dict)

    @classmethod
    def fit(
        cls, table: pa.Table, features: Sequence[str], categorical: Sequence[str] | None = None
    ) -> Encoding:
        """Learn the categories from training rows. Without ``categorical``, the string features
        are the categorical ones; booleans are numbers (0/1)."""
        missing = [f for f in features if f not in table.column_names]
        if missing:
            raise UsageError(f"the training set has no column(s) {', '.join(missing)}")
        cats: dict[str, list[Any]] = {}
        chosen = (
            set(categorical)
            if categorical is not None
            else {
                f
                for f in features
                if pa.types.is_string(table[f].type) or pa.types.is_large_string(table[f].type)
            }
        )
        for f in features:
            t = table[f].type
            if pa.types.is_timestamp(t) or pa.types.is_duration(t) or pa.types.is_date(t):
                raise UsageError(
                    f"feature {f!r} is a {t}: turn it into numbers (date parts, durations) first"
                )
            if f in chosen:
                values = pc.unique(table[f]).drop_null().to_pylist()
                cats[f] = sorted(values, key=lambda v: (str(type(v)), v))
            elif not (
                pa.types.is_integer(t)
                or pa.types.is_floating(t)
                or pa.types.is_boolean(t)
                or pa.types.is_null(t)
            ):
                raise UsageError(
                    f"feature {f!r} is {t}: declare it categorical (model.categorical)"
                )
        return cls(list(features), cats)

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, f in enumerate(self.features) if f in self.categorical]

    def matrix(self, table: pa.Table) -> np.ndarray:
        """An (n, d) float64 matrix of the features of ``table``."""
        out = np.empty((table.num_rows, len(self.features)), dtype=np.float64)
        for j, f in enumerate(self.features):
            if f not in table.column_names:
                raise UsageError(f"the rows have no feature {f!r} that the model reads")
            col = table[f]
            if f in self.categorical:
                codes = pc.index_in(col, value_set=pa.array(self.categorical[f], type=col.type))
                out[:, j] = np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.float64)
            else:
                if pa.types.is_boolean(col.type) or pa.types.is_null(col.type):
                    col = col.cast(pa.float64())
                out[:, j] = np.asarray(
                    pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
                )
        return out

    def row(self, values: Mapping[str, Any]) -> np.ndarray:
        """A (1, d) matrix for one row of Python values (the serving path)."""
        lookup = self._lookup()
        out = np.empty((1, len(self.features)), dtype=np.float64)
        for j, f in enumerate(self.features):
            v = values.get(f)
            if f in lookup:
                code = lookup[f].get(v)
                out[0, j] = np.nan if code is None else code
            else:
                out[0, j] = np.nan if v is None else float(v)
        return out

    def _lookup(self) -> dict[str, dict[Any, int]]:
        cached = getattr(self, "_cache", None)
        if cached is None:
            cached = {f: {v: i for i, v in enumerate(vals)} for f, vals in self.categorical.items()}
            object.__setattr__(self, "_cache", cached)
        return cached

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.features, "categorical": self.categorical}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Encoding:
        return cls(list(data["features"]), {k: list(v) for k, v in data["categorical"].items()})
