"""Train / validation / test splits: random, stratified, by time (the latest rows are the test
set) and by group (no group in two splits)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import UsageError
from loopml.spec import SplitSpec


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def _cut(order: np.ndarray, spec: SplitSpec) -> Split:
    n = len(order)
    n_test = round(n * spec.test)
    n_valid = round(n * spec.valid)
    train = order[: n - n_test - n_valid]
    valid = order[n - n_test - n_valid : n - n_test]
    test = order[n - n_test :]
    return Split(np.sort(train), np.sort(valid), np.sort(test))


def split(
    table: pa.Table, spec: SplitSpec, *, label: str, time_column: str = "_event_time"
) -> Split:
    """Row indices of the three parts of ``table``."""
    n = table.num_rows
    if n < 10:
        raise UsageError(f"{n} labelled rows are too few to train and test a model")
    rng = np.random.default_rng(spec.seed)
    if spec.method == "random":
        return _cut(rng.permutation(n), spec)
    if spec.method == "time":
        column = spec.column or time_column
        if column not in table.column_names:
            raise UsageError(f"model.split: no time column {column!r} in the training set")
        # Stable by row number among equal times, so the split is reproducible.
        keys = (
            pc.cast(table[column], pa.int64()).to_numpy(zero_copy_only=False)
            if not pa.types.is_integer(table[column].type)
            else table[column].to_numpy()
        )
        return _cut(np.lexsort((np.arange(n), keys)), spec)
    if spec.method == "stratified":
        y = np.asarray(table[label].to_numpy(zero_copy_only=False))
        parts: list[Split] = []
        for value in np.unique(y):
            members = np.flatnonzero(y == value)
            parts.append(_cut(members[rng.permutation(len(members))], spec))
        return Split(
            *(
                np.sort(np.concatenate([getattr(p, k) for p in parts]))
                for k in ("train", "valid", "test")
            )
        )
    group_column = spec.column
    if group_column is None or group_column not in table.column_names:
        raise UsageError(
            "model.split: group splits need split.column, a column of the training set"
        )
    groups = (
        pc.dictionary_encode(table[group_column])
        .combine_chunks()
        .indices.to_numpy(zero_copy_only=False)
    )
    unique = rng.permutation(np.unique(groups))
    sizes = np.bincount(groups)[unique]
    cum = np.cumsum(sizes) / n
    test_groups = unique[cum > 1 - spec.test]
    valid_groups = unique[(cum > 1 - spec.test - spec.valid) & (cum <= 1 - spec.test)]
    in_test = np.isin(groups, test_groups)
    in_valid = np.isin(groups, valid_groups)
    return Split(
        np.flatnonzero(~in_test & ~in_valid), np.flatnonzero(in_valid), np.flatnonzero(in_test)
    )
