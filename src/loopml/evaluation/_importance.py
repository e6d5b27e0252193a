"""Permutation importance: how much a metric suffers when one column is shuffled."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from loopml.errors import UsageError
from loopml.evaluation._args import call_predict, check_columns, check_int, to_numpy
from loopml.evaluation._metrics import higher_is_better, metrics


def permutation_importance(
    predict: Callable[[pa.Table], Any],
    table: pa.Table,
    y_true: Any,
    *,
    task: str,
    metric: str,
    columns: Sequence[str],
    repeats: int = 3,
    seed: int | None = 0,
    threshold: float = 0.5,
    classes: Sequence[Any] | None = None,
    groups: Any = None,
    k: int = 10,
) -> list[dict[str, Any]]:
    """Model-agnostic importance of each of ``columns``: how much worse ``metric`` (a key of
    :func:`metrics`) gets when the column is shuffled across rows, most important first.

    Each record has ``column``, ``importance`` (the mean over ``repeats`` shuffles, positive when
    the metric got worse, whichever way it points), ``std`` (population standard deviation over
    the shuffles) and ``metric``. Shuffles are drawn from one generator seeded with ``seed``.
    ``predict`` maps a Table to the scores :func:`metrics` expects for ``task``.

    >>> import numpy as np, pyarrow as pa
    >>> table = pa.table({"x": np.arange(50.0), "noise": np.zeros(50)})
    >>> ranked = permutation_importance(lambda t: t["x"].to_numpy(), table, np.arange(50.0),
    ...                                 task="regression", metric="mae", columns=["noise", "x"])
    >>> [r["column"] for r in ranked]
    ['x', 'noise']
    """
    if not isinstance(table, pa.Table) or table.num_rows == 0:
        raise UsageError("table must be a non-empty pyarrow Table", details={"argument": "table"})
    names = check_columns(table, columns)
    count = check_int("repeats", repeats, minimum=1)
    higher = higher_is_better(metric)
    rng = np.random.default_rng(None if seed is None else check_int("seed", seed))
    y = to_numpy(y_true, "y_true")
    options: dict[str, Any] = {"threshold": threshold, "classes": classes, "groups": groups, "k": k}
    base_all = metrics(task, y, call_predict(predict, table), **options)
    if metric not in base_all:
        raise UsageError(
            f"metric {metric!r} is not a metric of task {task!r}; use one of {sorted(base_all)}",
            details={"argument": "metric", "value": metric},
        )
    base = base_all[metric]
    out: list[dict[str, Any]] = []
    for name in names:
        index = table.schema.get_field_index(name)
        drops = np.empty(count)
        for r in range(count):
            shuffled = table[name].take(pa.array(rng.permutation(table.num_rows)))
            score = metrics(
                task, y, call_predict(predict, table.set_column(index, name, shuffled)), **options
            )
            drops[r] = (base - score[metric]) if higher else (score[metric] - base)
        out.append(
            {
                "column": name,
                "importance": float(drops.mean()),
                "std": float(drops.std()),
                "metric": metric,
            }
        )
    out.sort(key=lambda rec: -rec["importance"] if np.isfinite(rec["importance"]) else np.inf)
    return out
