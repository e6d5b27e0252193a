"""The registry's queries. Every function takes an open connection, so the registry composes them
into one transaction (``with store.write() as conn``), as :mod:`loopml.data.catalog` does."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select, update

from loopml.registry._records import AliasMove, Evaluation, ModelInfo, ModelVersion
from loopml.storage import tables as t

# The actions that bring a version into an alias; a rollback undoes the latest of them.
ARRIVALS = ("promote", "force", "set")


def utcnow() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------------- models


def model_task(conn: Connection, model: str) -> str | None:
    return conn.execute(select(t.models.c.task).where(t.models.c.name == model)).scalar()


def model_names(conn: Connection) -> list[str]:
    return list(conn.execute(select(t.models.c.name).order_by(t.models.c.name)).scalars())


def insert_model(conn: Connection, model: str, *, task: str, note: str) -> None:
    conn.execute(t.models.insert().values(name=model, task=task, created_at=utcnow(), note=note))


def list_models(conn: Connection) -> list[ModelInfo]:
    counts = {
        name: (count, latest)
        for name, count, latest in conn.execute(
            select(
                t.model_versions.c.model,
                func.count(),
                func.max(t.model_versions.c.version),
            ).group_by(t.model_versions.c.model)
        )
    }
    held: dict[str, dict[str, int]] = {}
    for name, alias, version in conn.execute(
        select(t.aliases.c.model, t.aliases.c.alias, t.aliases.c.version).order_by(
            t.aliases.c.model, t.aliases.c.alias
        )
    ):
        held.setdefault(name, {})[alias] = version
    rows = conn.execute(select(t.models).order_by(t.models.c.name)).mappings()
    return [
        ModelInfo(
            name=r["name"],
            task=r["task"],
            versions=counts.get(r["name"], (0, 0))[0],
            latest=counts.get(r["name"], (0, 0))[1],
            aliases=held.get(r["name"], {}),
            created_at=r["created_at"],
            note=r["note"],
        )
        for r in rows
    ]


# ----------------------------------------------------------------------------------- versions


def _version(row: Any) -> ModelVersion:
    return ModelVersion(**row)


def get_version(conn: Connection, model: str, version: int) -> ModelVersion | None:
    row = (
        conn.execute(
            select(t.model_versions).where(
                and_(t.model_versions.c.model == model, t.model_versions.c.version == version)
            )
        )
        .mappings()
        .first()
    )
    return _version(row) if row else None


def version_numbers(conn: Connection, model: str) -> list[int]:
    return list(
        conn.execute(
            select(t.model_versions.c.version)
            .where(t.model_versions.c.model == model)
            .order_by(t.model_versions.c.version)
        ).scalars()
    )


def list_versions(conn: Connection, model: str) -> list[ModelVersion]:
    rows = conn.execute(
        select(t.model_versions)
        .where(t.model_versions.c.model == model)
        .order_by(t.model_versions.c.version)
    ).mappings()
    return [_version(r) for r in rows]


def insert_version(conn: Connection, values: Mapping[str, Any]) -> int:
    """Insert the model's next version (writers are serialized, so max + 1 is safe)."""
    last = conn.execute(
        select(func.max(t.model_versions.c.version)).where(
            t.model_versions.c.model == values["model"]
        )
    ).scalar()
    version = (last or 0) + 1
    conn.execute(t.model_versions.insert().values(version=version, **values))
    return version


def set_report(conn: Connection, model: str, version: int, report: dict[str, Any]) -> int:
    result = conn.execute(
        update(t.model_versions)
        .where(and_(t.model_versions.c.model == model, t.model_versions.c.version == version))
        .values(report=report)
    )
    return int(result.rowcount)


# ------------------------------------------------------------------------------------ aliases


def alias_map(conn: Connection, model: str) -> dict[str, int]:
    rows = conn.execute(
        select(t.aliases.c.alias, t.aliases.c.version)
        .where(t.aliases.c.model == model)
        .order_by(t.aliases.c.alias)
    )
    return {alias: version for alias, version in rows}


def holder(conn: Connection, model: str, alias: str) -> int | None:
    return conn.execute(
        select(t.aliases.c.version).where(
            and_(t.aliases.c.model == model, t.aliases.c.alias == alias)
        )
    ).scalar()


def move_alias(
    conn: Connection,
    *,
    model: str,
    alias: str,
    action: str,
    from_version: int | None,
    to_version: int | None,
    by: str,
    reason: str,
    evaluation_id: int | None,
) -> AliasMove:
    """Point ``alias`` at ``to_version`` (``None``: remove it) and append the history row.

    The caller read ``from_version`` in the same write transaction, so it is still the holder.
    """
    now = utcnow()
    where = and_(t.aliases.c.model == model, t.aliases.c.alias == alias)
    if to_version is None:
        conn.execute(t.aliases.delete().where(where))
    elif from_version is None:
        conn.execute(
            t.aliases.insert().values(model=model, alias=alias, version=to_version, updated_at=now)
        )
    else:
        conn.execute(update(t.aliases).where(where).values(version=to_version, updated_at=now))
    values = {
        "model": model,
        "alias": alias,
        "action": action,
        "from_version": from_version,
        "to_version": to_version,
        "by": by,
        "at": now,
        "reason": reason,
        "evaluation_id": evaluation_id,
    }
    key = conn.execute(t.alias_history.insert().values(**values)).inserted_primary_key
    assert key is not None
    return AliasMove(id=int(key[0]), **values)  # type: ignore[arg-type]


def latest_arrival(conn: Connection, model: str, alias: str, version: int) -> AliasMove | None:
    """The latest move that brought ``version`` into ``alias`` (rollbacks are not arrivals, so
    repeated rollbacks walk back one arrival at a time)."""
    row = (
        conn.execute(
            select(t.alias_history)
            .where(
                and_(
                    t.alias_history.c.model == model,
                    t.alias_history.c.alias == alias,
                    t.alias_history.c.to_version == version,
                    t.alias_history.c.action.in_(ARRIVALS),
                )
            )
            .order_by(t.alias_history.c.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return AliasMove(**row) if row else None


def list_history(conn: Connection, model: str, alias: str | None) -> list[AliasMove]:
    q = select(t.alias_history).where(t.alias_history.c.model == model)
    if alias is not None:
        q = q.where(t.alias_history.c.alias == alias)
    return [AliasMove(**r) for r in conn.execute(q.order_by(t.alias_history.c.id)).mappings()]


# -------------------------------------------------------------------------------- evaluations


def insert_evaluation(
    conn: Connection,
    *,
    model: str,
    version: int,
    against_version: int | None,
    passed: bool,
    report: dict[str, Any],
    by: str,
) -> Evaluation:
    values = {
        "model": model,
        "version": version,
        "against_version": against_version,
        "passed": passed,
        "report": report,
        "created_at": utcnow(),
        "created_by": by,
    }
    key = conn.execute(t.evaluations.insert().values(**values)).inserted_primary_key
    assert key is not None
    return Evaluation(id=int(key[0]), **values)  # type: ignore[arg-type]


def list_evaluations(conn: Connection, model: str, version: int) -> list[Evaluation]:
    rows = conn.execute(
        select(t.evaluations)
        .where(and_(t.evaluations.c.model == model, t.evaluations.c.version == version))
        .order_by(t.evaluations.c.id)
    ).mappings()
    return [Evaluation(**r) for r in rows]
