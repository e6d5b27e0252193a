"""Weighted sampling: rows drawn with probability proportional to a weight per row."""

from __future__ import annotations

from typing import Any

import numpy as np

from loopml.errors import UsageError
from loopml.sampling._args import IntArray, as_weights, check_int, make_rng


def weighted(
    weights: Any,
    *,
    n: int,
    seed: int | None = None,
    replace: bool = False,
) -> IntArray:
    """Sorted indices of ``n`` rows drawn with probability proportional to ``weights``.

    With replacement each draw picks row ``i`` with probability ``w_i / sum(w)``. Without
    replacement the sample is that of drawing one row at a time proportionally to the weights of
    the rows not drawn yet (successive sampling), computed in one pass with the A-ES algorithm of
    Efraimidis and Spirakis: each row gets the key ``u ** (1 / w)`` and the ``n`` largest keys win.
    Rows of weight zero are never picked. Weights must be finite and non-negative.

    >>> weighted([0.0, 1.0, 0.0, 5.0], n=2, seed=0)
    array([1, 3])
    """
    w = as_weights(weights)
    count = check_int("n", n)
    positive = int(np.count_nonzero(w))
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if positive == 0:
        raise UsageError(
            f"cannot draw n={count} rows: all {len(w)} weights are zero",
            details={"argument": "weights", "n": count},
        )
    if not replace and count > positive:
        raise UsageError(
            f"n={count} is more than the {positive} rows with a positive weight; without "
            "replacement rows of weight zero are never picked, so lower n or pass replace=True",
            details={"argument": "n", "n": count, "positive": positive},
        )
    rng = make_rng(seed)
    if replace:
        cdf = np.cumsum(w)
        # side="right" skips zero-weight rows: their cdf step is empty.
        idx = np.searchsorted(cdf, rng.random(count) * cdf[-1], side="right").astype(np.int64)
        np.minimum(idx, len(w) - 1, out=idx)  # guard u * total rounding up to the last step
    else:
        idx = _a_es(w, count, rng)
    idx.sort()
    return idx


def _a_es(w: np.ndarray, count: int, rng: np.random.Generator) -> IntArray:
    """The ``count`` rows of largest key ``u ** (1/w)``.

    The key is compared as ``-log(u) / w`` (an exponential of rate ``w``), smallest first: the
    same order, without ``u ** (1/w)`` underflowing to 0 for small weights.
    """
    e = rng.standard_exponential(len(w))
    keys = np.where(w > 0, e / np.where(w > 0, w, 1.0), np.inf)
    if count == len(w):
        return np.arange(len(w), dtype=np.int64)
    return np.argpartition(keys, count - 1)[:count].astype(np.int64)
