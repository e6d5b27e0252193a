"""The Models and "Who served what" pages' read models: a page of versions, a page of alias
periods, the rollouts of a model, straight from the metadata tables (a page at a time: the
registry's ``versions()`` and ``history()`` load everything, fine for one version, not for a
list of 10,000)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select
from starlette.exceptions import HTTPException

from loopml.storage import tables as t

# The metrics a list shows for each task (the first is the task's primary metric).
HEADLINE = {
    "binary": ("pr_auc", "roc_auc", "log_loss"),
    "multiclass": ("macro_f1", "accuracy", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
    "ranking": ("ndcg@10", "map"),
}
CHART_MOVES = 5000  # the step chart draws at most the newest this many alias moves


def headline(task: str) -> tuple[str, ...]:
    return HEADLINE.get(task, HEADLINE["binary"])


@dataclass(frozen=True)
class VersionRow:
    version: int
    created_at: datetime
    created_by: str
    note: str
    metrics: dict[str, Any]
    aliases: list[str]


@dataclass(frozen=True)
class Period:
    """One alias move and the period it began: ``version`` held ``alias`` from ``start`` until
    ``until`` (None: it still does); a removal begins a period of nothing."""

    id: int
    alias: str
    action: str
    version: int | None
    previous: int | None
    start: datetime
    until: datetime | None
    by: str
    reason: str
    evaluation_id: int | None
    ended_by: dict[str, Any] | None  # the move that ended it: id, action, by, reason

    @property
    def seconds(self) -> float:
        end = self.until or datetime.now(UTC)
        return max(0.0, (end - self.start).total_seconds())


def model_task(conn: Connection, model: str) -> str | None:
    return conn.execute(select(t.models.c.task).where(t.models.c.name == model)).scalar()


def require_model(conn: Connection, model: str) -> str:
    """The model's task; a 404 page naming the models there are when it is not one."""
    task = model_task(conn, model)
    if task is None:
        names = list(conn.execute(select(t.models.c.name).order_by(t.models.c.name)).scalars())
        known = f"models are {', '.join(names)}" if names else "the registry has no model yet"
        raise HTTPException(404, f"no model {model!r} in the registry: {known}")
    return task


def version_numbers(conn: Connection, model: str) -> tuple[int, int, int]:
    """(count, lowest, highest) of the model's versions."""
    v = t.model_versions.c
    row = conn.execute(
        select(func.count(), func.min(v.version), func.max(v.version)).where(v.model == model)
    ).one()
    return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)


def aliases_by_version(conn: Connection, model: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    rows = conn.execute(
        select(t.aliases.c.alias, t.aliases.c.version)
        .where(t.aliases.c.model == model)
        .order_by(t.aliases.c.alias)
    )
    for alias, version in rows:
        out.setdefault(int(version), []).append(alias)
    return out


def versions_page(
    conn: Connection, model: str, *, before: int | None, limit: int
) -> tuple[list[VersionRow], int | None]:
    """The newest ``limit`` versions below ``before`` and the cursor of the next page (None: the
    last page). Reads the listed columns only (not the reports)."""
    v = t.model_versions.c
    q = (
        select(v.version, v.created_at, v.created_by, v.note, v.metrics)
        .where(v.model == model)
        .order_by(v.version.desc())
        .limit(limit + 1)
    )
    if before is not None:
        q = q.where(v.version < before)
    rows = list(conn.execute(q).mappings())
    held = aliases_by_version(conn, model)
    out = [
        VersionRow(
            version=r["version"],
            created_at=r["created_at"],
            created_by=r["created_by"],
            note=r["note"],
            metrics=dict(r["metrics"] or {}),
            aliases=held.get(r["version"], []),
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return out, out[-1].version if more and out else None


def periods_page(
    conn: Connection, model: str, *, alias: str | None, before: int | None, limit: int
) -> tuple[list[Period], int | None]:
    """A page of alias moves, newest first, each with the period it began (until the next move
    of the same alias), and the cursor of the next page."""
    h = t.alias_history
    later = h.alias("later")
    next_id = (
        select(func.min(later.c.id))
        .where(and_(later.c.model == h.c.model, later.c.alias == h.c.alias, later.c.id > h.c.id))
        .scalar_subquery()
        .label("next_id")
    )
    q = select(h, next_id).where(h.c.model == model).order_by(h.c.id.desc()).limit(limit + 1)
    if alias:
        q = q.where(h.c.alias == alias)
    if before is not None:
        q = q.where(h.c.id < before)
    rows = list(conn.execute(q).mappings())
    more = len(rows) > limit
    rows = rows[:limit]
    ids = [r["next_id"] for r in rows if r["next_id"] is not None]
    ends: dict[int, dict[str, Any]] = {}
    if ids:
        for r in conn.execute(
            select(h.c.id, h.c.at, h.c.action, h.c.by, h.c.reason).where(h.c.id.in_(ids))
        ).mappings():
            ends[r["id"]] = dict(r)
    out = [
        Period(
            id=r["id"],
            alias=r["alias"],
            action=r["action"],
            version=r["to_version"],
            previous=r["from_version"],
            start=r["at"],
            until=ends[r["next_id"]]["at"] if r["next_id"] in ends else None,
            by=r["by"],
            reason=r["reason"],
            evaluation_id=r["evaluation_id"],
            ended_by=ends.get(r["next_id"]) if r["next_id"] is not None else None,
        )
        for r in rows
    ]
    return out, out[-1].id if more and out else None


def moves_for_chart(conn: Connection, model: str) -> tuple[list[dict[str, Any]], bool]:
    """The newest :data:`CHART_MOVES` moves (oldest first) for the step chart, and whether older
    ones were left out."""
    h = t.alias_history.c
    rows = list(
        conn.execute(
            select(h.id, h.alias, h.action, h.to_version, h.at)
            .where(h.model == model)
            .order_by(h.id.desc())
            .limit(CHART_MOVES + 1)
        ).mappings()
    )
    cut = len(rows) > CHART_MOVES
    return [dict(r) for r in reversed(rows[:CHART_MOVES])], cut


def move_count(conn: Connection, model: str) -> int:
    h = t.alias_history.c
    return int(conn.execute(select(func.count()).where(h.model == model)).scalar() or 0)


def rollouts_of(conn: Connection, model: str, *, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` rollouts of ``model``, each with its arms (an experiment's versions,
    the control first; a canary's or shadow's champion and challenger) and why it ended."""
    r = t.rollouts.c
    rows = conn.execute(
        select(
            r.id,
            r.strategy,
            r.champion,
            r.challenger,
            r.status,
            r.share,
            r.shadow,
            r.started_at,
            r.ended_at,
            r.data,
        )
        .where(r.model == model)
        .order_by(r.id.desc())
        .limit(limit)
    ).mappings()
    out = []
    for x in rows:
        row = dict(x)
        data = row.pop("data") or {}
        arms = data.get("arms") or (data.get("experiment") or {}).get("arms")
        row["arms"] = [int(a) for a in arms] if arms else [row["champion"], row["challenger"]]
        row["reason"] = data.get("reason") or ""
        out.append(row)
    return out


def evaluations_of(conn: Connection, model: str, version: int) -> list[dict[str, Any]]:
    e = t.evaluations.c
    rows = conn.execute(
        select(t.evaluations)
        .where(and_(e.model == model, e.version == version))
        .order_by(e.id.desc())
    ).mappings()
    return [dict(x) for x in rows]
