"""``POST /rank``: order a list of candidates with the model's score, and, while an
interleaving experiment runs, merge two rankers' orders by team draft.

Each candidate is one row (the request's ``context`` merged with the candidate's fields) scored
like a ``/predict`` row. Every item shown is logged as a prediction with its own id
(``{ranking}:{position}``), the ranking it belongs to (``of``) and, in an experiment, the
ranker that placed it (``version``) and the experiment (``rollout``); a click is then ordinary
feedback for that item id (label 1), and the experiment credits each ranking to the ranker whose
items got more clicks.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from loopml.errors import UsageError
from loopml.features import Flags
from loopml.monitoring import PredictionRecord
from loopml.serving._engine import CLIENT_ID_PREFIX, RESERVED, merge_flags
from loopml.serving._errors import HttpError
from loopml.serving._holder import Served
from loopml.serving._runtime import Runtime


class RankHandler:
    """Answers ``/rank`` bodies for one worker."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._rng = np.random.default_rng()

    def rank(self, payload: Any) -> dict[str, Any]:
        rt = self.rt
        candidates, context, k, rank_id = self._parse(payload)
        served = rt.holder.current
        if served is None:
            raise HttpError(503, "no_model", rt.holder.unavailable(), {"alias": rt.spec.alias})
        started = time.perf_counter()
        rows = rt.engine.parse([{**context, **c} for c in candidates])
        values = [
            rt.online.complete(row, at=row.get("_at")) if rt.online is not None else row
            for row in rows
        ]
        rollout = rt.router.current
        arms = None
        if (
            rollout is not None
            and rollout.active
            and rollout.strategy == "interleave"
            and rt.arms_ready(rollout.arms)
        ):
            arms = [rt.arm_models[v] for v in rollout.arms]
        flags: list[Flags | None] = [v.get("_flags") for v in values]
        if arms is None:
            scores = _scores(served, values, flags)
            order = sorted(range(len(rows)), key=lambda i: -scores[i])[:k]
            shown = [(i, served.number, scores[i]) for i in order]
        else:
            from loopml.rollout import team_draft

            a = _scores(arms[0], values, flags)
            b = _scores(arms[1], values, None)
            order_a = sorted(range(len(rows)), key=lambda i: -a[i])
            order_b = sorted(range(len(rows)), key=lambda i: -b[i])
            merged = team_draft(order_a, order_b, k=k, rng=self._rng)
            shown = [
                (i, arms[team].number, (a, b)[team][i])
                for i, team in zip(merged.items, merged.teams, strict=True)
            ]
        seconds = time.perf_counter() - started
        # A client's id is namespaced like a /predict row's: it never takes a server id.
        rank_id = CLIENT_ID_PREFIX + rank_id if rank_id else rt.engine.new_id()
        rollout_id = rollout.id if arms is not None and rollout is not None else None
        now = int(time.time() * 1_000_000)
        items = []
        for pos, (i, version, score) in enumerate(shown):
            item_id = f"{rank_id}:{pos}"
            item: dict[str, Any] = {"index": i, "id": item_id, "version": version, "score": score}
            item_flags = flags[i]
            if item_flags:
                item["flags"] = item_flags
                rt.count_flags(item_flags)
            items.append(item)
            if rt.logger is not None:
                rt.logger.log(
                    PredictionRecord(
                        id=item_id,
                        at=now,
                        model=rt.name,
                        version=version,
                        mode="rank",
                        output=score,
                        latency_us=seconds * 1e6 / max(len(shown), 1),
                        features={k2: v for k2, v in values[i].items() if k2 not in RESERVED},
                        of=rank_id,
                        rollout=rollout_id,
                        flags=item_flags or None,
                    )
                )
            if rollout_id is not None:
                rt.counters.add(rollout_id, version, "shown")
        if rollout_id is not None:
            rt.counters.add(rollout_id, rollout.arms[0] if rollout else 0, "rankings")
        rt.metrics.requests.labels("rank", "dynamic", str(served.number)).inc()
        return {
            "id": rank_id,
            "model": rt.name,
            "interleaved": arms is not None,
            "rollout": rollout_id,
            "items": items,
            "latency_ms": round(seconds * 1000, 3),
        }

    def _parse(self, payload: Any) -> tuple[list[dict[str, Any]], dict[str, Any], int, str | None]:
        if not isinstance(payload, dict):
            raise UsageError(
                'send {"candidates": [{...}, ...], "context": {...}, "k": 10}',
                details={"field": "body"},
            )
        candidates = payload.get("candidates")
        if (
            not isinstance(candidates, list)
            or not candidates
            or not all(isinstance(c, dict) for c in candidates)
        ):
            raise UsageError(
                "'candidates' must be a non-empty list of objects", details={"field": "candidates"}
            )
        limit = self.rt.spec.max_batch
        if len(candidates) > limit:
            raise UsageError(
                f"{len(candidates)} candidates; the limit is {limit} per request",
                details={"field": "candidates", "limit": limit},
            )
        context = payload.get("context") or {}
        if not isinstance(context, dict):
            raise UsageError("'context' must be an object", details={"field": "context"})
        k = payload.get("k", len(candidates))
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise UsageError(f"'k' must be a positive integer, got {k!r}", details={"field": "k"})
        rank_id = payload.get("id")
        if rank_id is not None and (
            not isinstance(rank_id, str)
            or not rank_id
            or ":" in rank_id
            or len(rank_id) > 128
            or not rank_id.isprintable()
        ):
            raise UsageError(
                "'id' must be a string of 1 to 128 printable characters without ':'",
                details={"field": "id"},
            )
        unknown = sorted(set(payload) - {"candidates", "context", "k", "id"})
        if unknown:
            raise UsageError(
                f"unknown field {unknown[0]!r} in the /rank body", details={"field": unknown[0]}
            )
        return candidates, context, min(k, len(candidates)), rank_id


def _scores(
    served: Served, values: list[dict[str, Any]], flags: list[Flags | None] | None
) -> list[float]:
    """Each candidate's score; with ``flags``, each candidate's flags gain the categorical
    inputs this version found null or never saw in training."""
    out = []
    for i, v in enumerate(values):
        s = served.predictor.score(v)
        if flags is not None:
            flags[i] = merge_flags(flags[i], served.predictor.category_flags(v))
        out.append(float(np.max(s)) if np.ndim(s) else float(s))
    return out
