"""A rollout's two arms from the landed prediction log and their labels: the per-prediction
losses of the champion and the challenger over a period, counting only labels known by its end.

The comparison is paired whenever it can be: in a shadow, the challenger scores requests the
champion answered; in a canary, the champion scores (in the background) the requests the
challenger answered. A shadow prediction names the served one it shadows and takes its label;
the difference of two models' losses on the same request varies far less than either loss, so
a step is decided with a fraction of the labels an unpaired comparison needs. Without shadow
scores, a canary compares its two groups of requests unpaired."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.features import to_micros
from loopml.monitoring import binary_truth
from loopml.rollout._decide import per_row_loss
from loopml.rollout._store import Rollout

if TYPE_CHECKING:
    from loopml.registry import Registry
    from loopml.rollout._services import OutcomeLog


def arm_losses(
    rollout: Rollout,
    *,
    registry: Registry,
    monitoring: OutcomeLog,
    metric: str,
    since: datetime,
    until: datetime,
    land: bool = True,
) -> dict[str, Any]:
    """``{"champion": losses, "challenger": losses, "paired": bool}`` for predictions made in
    [since, until) whose label was known by ``until``, read from the monitored log
    (``monitoring``; ``registry`` finds the champion's version, whose profile gives the task,
    classes and threshold)."""
    mon = monitoring
    if land:
        mon.land()
    empty = {"champion": np.zeros(0), "challenger": np.zeros(0), "paired": False}
    preds = mon.log.predictions()
    if preds is None or preds.num_rows == 0:
        return empty
    lo, hi = to_micros(since), to_micros(until)
    keep = pc.and_(
        pc.and_(pc.greater_equal(preds["at"], lo), pc.less(preds["at"], hi)),
        pc.is_in(preds["version"], value_set=pa.array([rollout.champion, rollout.challenger])),
    )
    preds = preds.filter(keep)
    if preds.num_rows == 0:
        return empty
    mode = pc.fill_null(preds["mode"], "")
    served = preds.filter(pc.not_equal(mode, "shadow"))
    champion_mv = registry.get(rollout.model, rollout.champion)
    profile = mon.profile(champion_mv)
    task = profile.task or "binary"
    kind = "number" if task in ("binary", "regression") else "text"
    joined, _ = mon.log.joined(served, mon.join_keys(), kind, observed_since=lo)
    known = pc.and_(
        pc.is_valid(joined["label"]), pc.less_equal(pc.fill_null(joined["label_at"], 2**62), hi)
    )
    joined = joined.filter(known)

    def losses(table: pa.Table) -> np.ndarray:
        if table.num_rows == 0:
            return np.zeros(0)
        scores = table["score"].to_numpy(zero_copy_only=False).astype(float)
        if task == "binary":
            y = pc.fill_null(binary_truth(table["label"], profile.classes), False)
            yv = y.to_numpy(zero_copy_only=False)
        else:
            yv = pc.cast(table["label"], pa.float64()).to_numpy(zero_copy_only=False)
        ok = np.isfinite(scores)
        return per_row_loss(metric, scores[ok], yv[ok], threshold=profile.threshold)

    # Paired when the other model scored the same requests in the background: a shadow's
    # challenger beside the champion's answers, or a canary's champion beside the challenger's.
    if rollout.strategy == "shadow":
        answered_by, shadowed_by = rollout.champion, rollout.challenger
    else:
        answered_by, shadowed_by = rollout.challenger, rollout.champion
    shadow = preds.filter(
        pc.and_(pc.equal(mode, "shadow"), pc.equal(preds["version"], shadowed_by))
    )
    answered = joined.filter(pc.equal(joined["version"], answered_by))
    if shadow.num_rows and answered.num_rows:
        index = {pid: i for i, pid in enumerate(answered["id"].to_pylist())}
        pairs = [
            (index[of], j)
            for j, of in enumerate(shadow["of"].to_pylist())
            if of is not None and of in index
        ]
        if pairs:
            base = answered.take(pa.array([p[0] for p in pairs]))
            other = (
                shadow.take(pa.array([p[1] for p in pairs]))
                .select(["score"])
                .append_column("label", base["label"])
            )
            mine, theirs = losses(base), losses(other)
            if rollout.strategy == "shadow":
                return {"champion": mine, "challenger": theirs, "paired": True}
            return {"champion": theirs, "challenger": mine, "paired": True}
    if rollout.strategy == "shadow":
        return {**empty, "paired": True}
    return {
        "champion": losses(joined.filter(pc.equal(joined["version"], rollout.champion))),
        "challenger": losses(answered),
        "paired": False,
    }
