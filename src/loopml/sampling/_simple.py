"""Simple random sampling: every subset of rows of the same size is equally likely."""

from __future__ import annotations

import numpy as np

from loopml.sampling._args import IntArray, check_int, make_rng, sample_size


def simple_random(
    n_rows: int,
    *,
    n: int | None = None,
    frac: float | None = None,
    seed: int | None = None,
    replace: bool = False,
) -> IntArray:
    """Sorted indices of a simple random sample of ``n`` (or ``frac``) of ``n_rows`` rows.

    With ``frac`` the count is ``frac * n_rows`` rounded half up. Without replacement no index
    repeats and ``n`` may not exceed ``n_rows``; with replacement indices may repeat. Take the rows
    with ``table.take(idx)``.

    >>> simple_random(10, n=3, seed=0)
    array([5, 6, 9])
    >>> len(simple_random(1000, frac=0.25, seed=1))
    250
    """
    population = check_int("n_rows", n_rows)
    count = sample_size(population, n, frac, replace=replace)
    rng = make_rng(seed)
    if replace:
        idx = rng.integers(0, population, size=count, dtype=np.int64)
    else:
        # Generator.choice without replacement is O(count) (Floyd / partial shuffle), not O(n_rows).
        idx = rng.choice(population, size=count, replace=False).astype(np.int64)
    idx.sort()
    return idx
