"""Argument checks shared by the samplers: every bad argument is a UsageError that names it."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import UsageError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def check_int(name: str, value: object, *, minimum: int = 0) -> int:
    """``value`` as an int of at least ``minimum``; bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(
            f"{name} must be an integer, got {value!r}",
            details={"argument": name, "value": repr(value)},
        )
    if int(value) < minimum:
        raise UsageError(
            f"{name} must be at least {minimum}, got {int(value)}",
            details={"argument": name, "value": int(value)},
        )
    return int(value)


def make_rng(seed: object) -> np.random.Generator:
    """A fresh generator for ``seed`` (None: unpredictable)."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(check_int("seed", seed, minimum=0))


def round_half_up(x: npt.ArrayLike) -> IntArray:
    """Round halves up, forgiving float noise: 0.35 * 10 is 3.4999999999999996 but rounds to 4."""
    return np.floor(np.round(np.asarray(x, dtype=np.float64), 9) + 0.5).astype(np.int64)


def check_frac(frac: object) -> float:
    if isinstance(frac, bool) or not isinstance(frac, numbers.Real):
        raise UsageError(
            f"frac must be a number in (0, 1], got {frac!r}",
            details={"argument": "frac", "value": repr(frac)},
        )
    f = float(frac)
    if not 0.0 < f <= 1.0:
        raise UsageError(
            f"frac must be in (0, 1], got {f}; use n= for a fixed count",
            details={"argument": "frac", "value": f},
        )
    return f


def check_one_of(n: object, frac: object) -> None:
    if (n is None) == (frac is None):
        raise UsageError(
            "give exactly one of n (a row count) and frac (a fraction of rows)",
            details={"argument": "n", "n": repr(n), "frac": repr(frac)},
        )


def sample_size(population: int, n: object, frac: object, *, replace: bool) -> int:
    """The number of rows to draw from ``population`` rows, given exactly one of n and frac."""
    check_one_of(n, frac)
    if frac is not None:
        return int(round_half_up(check_frac(frac) * population))
    count = check_int("n", n)
    if count > population and not replace:
        raise UsageError(
            f"n={count} is larger than the population of {population} rows; "
            "lower n or pass replace=True",
            details={"argument": "n", "n": count, "population": population},
        )
    if count > 0 and population == 0:
        raise UsageError(
            f"cannot draw n={count} rows from an empty population",
            details={"argument": "n", "n": count, "population": 0},
        )
    return count


def as_weights(weights: Any, name: str = "weights") -> FloatArray:
    """A 1-D float64 copy of ``weights``; nulls, NaN, infinities and negatives are refused."""
    if isinstance(weights, pa.ChunkedArray | pa.Array):
        if weights.null_count:
            first = int(pc.index(pc.is_null(weights), True).as_py())
            raise UsageError(
                f"{name}[{first}] is null; every row needs a weight (0 to exclude it)",
                details={"argument": name, "row": first},
            )
        weights = weights.to_numpy(zero_copy_only=False)
    try:
        w = np.array(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"{name} must be numbers, one per row: {exc}", details={"argument": name}
        ) from exc
    if w.ndim != 1:
        raise UsageError(
            f"{name} must be one-dimensional (one weight per row), got shape {w.shape}",
            details={"argument": name, "shape": list(w.shape)},
        )
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise UsageError(
            f"{name}[{first}] is {w[first]}; weights must be finite and non-negative "
            f"({int(bad.sum())} bad values)",
            details={"argument": name, "row": first, "value": float(w[first])},
        )
    return w


def as_codes(labels: Any, name: str = "strata") -> tuple[IntArray, int]:
    """Integer codes 0..k-1 for the distinct labels of each row, and k. Null is a label of its own.

    Arrow arrays are dictionary-encoded in Arrow; everything else goes through ``pandas.factorize``,
    which hashes any mix of hashable values.
    """
    if isinstance(labels, pa.ChunkedArray):
        labels = labels.combine_chunks()
    if isinstance(labels, pa.Array):
        if pa.types.is_dictionary(labels.type):
            labels = labels.dictionary_decode()
        encoded = pc.dictionary_encode(labels, null_encoding="encode")
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        return codes, len(encoded.dictionary)
    import pandas as pd

    if isinstance(labels, np.ndarray | pd.Series | pd.Index | pd.Categorical):
        values: Any = labels
        if np.ndim(values) != 1:
            raise UsageError(
                f"{name} must be one label per row (one-dimensional), got shape {np.shape(values)}",
                details={"argument": name},
            )
    elif isinstance(labels, str | bytes) or not hasattr(labels, "__iter__"):
        raise UsageError(
            f"{name} must be a sequence of labels, one per row, got {type(labels).__name__}",
            details={"argument": name},
        )
    else:
        # A Series keeps tuples as single labels where numpy would make a 2-D array of them.
        values = pd.Series(list(labels), dtype=object)
    try:
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
    except TypeError as exc:
        raise UsageError(
            f"{name} must hold hashable labels: {exc}", details={"argument": name}
        ) from exc
    return np.asarray(codes, dtype=np.int64), len(uniques)
