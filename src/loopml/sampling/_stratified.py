"""Stratified sampling: each stratum contributes in proportion to its size, with exact counts."""

from __future__ import annotations

from typing import Any

import numpy as np

from loopml.errors import UsageError
from loopml.sampling._args import (
    IntArray,
    as_codes,
    check_frac,
    check_int,
    check_one_of,
    make_rng,
    round_half_up,
    sample_size,
)


def stratified(
    strata: Any,
    *,
    n: int | None = None,
    frac: float | None = None,
    seed: int | None = None,
    min_per_stratum: int = 0,
) -> IntArray:
    """Sorted indices of a stratified sample without replacement: rows drawn uniformly per stratum.

    ``strata`` holds one label per row (a list, numpy array, pandas Series or Arrow array); null
    (None, NaN, Arrow null) is a stratum of its own.

    With ``n`` the allocation is proportional and exact: the total is exactly ``n`` and each stratum
    gets the floor or the ceiling of its share ``n * size / n_rows``; the ceilings go to the largest
    remainders (Hamilton's method), ties broken at random. With ``frac`` each stratum gets
    ``frac * size`` rounded half up, so the total can differ from ``frac * n_rows`` by rounding.

    ``min_per_stratum`` guarantees every stratum at least that many rows (all of it when smaller).
    With ``n`` the strata raised to the minimum are fixed and the rest of ``n`` is shared out
    proportionally among the others, so the total stays exactly ``n``.

    >>> labels = ["a"] * 6 + ["b"] * 3 + [None]
    >>> [labels[i] for i in stratified(labels, n=7, seed=0)]
    ['a', 'a', 'a', 'a', 'b', 'b', None]
    """
    codes, n_strata = as_codes(strata)
    minimum = check_int("min_per_stratum", min_per_stratum)
    rng = make_rng(seed)
    sizes = np.bincount(codes, minlength=n_strata).astype(np.int64)
    floors = np.minimum(sizes, minimum)
    check_one_of(n, frac)
    if frac is not None:
        quotas = np.maximum(round_half_up(check_frac(frac) * sizes), floors)
    else:
        total = sample_size(len(codes), n, None, replace=False)
        if floors.sum() > total:
            raise UsageError(
                f"n={total} is too small to give each of the {n_strata} strata "
                f"min_per_stratum={minimum} rows ({int(floors.sum())} needed); raise n or lower "
                "min_per_stratum",
                details={"argument": "n", "n": total, "needed": int(floors.sum())},
            )
        quotas = _allocate(sizes, total, floors, rng)
    return _draw(codes, sizes, quotas, rng)


def _allocate(sizes: IntArray, total: int, floors: IntArray, rng: np.random.Generator) -> IntArray:
    """Split ``total`` over strata proportionally to ``sizes``, each getting at least ``floors``."""
    fixed = np.zeros(len(sizes), dtype=bool)
    while True:
        # Integer arithmetic keeps shares exact: share = rest * size / rest_size.
        rest = total - int(floors[fixed].sum())
        rest_size = int(sizes[~fixed].sum())
        below = ~fixed & (rest * sizes < floors * rest_size)
        if not below.any():
            break
        fixed |= below
    quotas = floors.copy()
    free = np.flatnonzero(~fixed)
    if rest_size == 0:
        return quotas
    num = rest * sizes[free]
    quotas[free] = num // rest_size
    remainders = num % rest_size
    short = rest - int(quotas[free].sum())
    if short:
        # Largest remainders first; a random key orders equal remainders fairly.
        order = np.lexsort((rng.random(len(free)), -remainders))
        quotas[free[order[:short]]] += 1
    return quotas


def _draw(codes: IntArray, sizes: IntArray, quotas: IntArray, rng: np.random.Generator) -> IntArray:
    """The first ``quotas[s]`` rows of each stratum ``s`` in a uniformly random order."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((rng.random(len(codes)), codes))
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    sorted_codes = codes[order]
    rank = np.arange(len(codes), dtype=np.int64) - starts[sorted_codes]
    idx = order[rank < quotas[sorted_codes]].astype(np.int64)
    idx.sort()
    return idx
