"""The Models and "Who served what" read models on the real PostgreSQL server: the same pages
of versions and alias periods as on SQLite (a correlated subquery, JSON columns)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.spec import MetadataConfig, PostgresConfig, SQLiteConfig
from loopml.ui._pages import _models_queries as mq
from tests.unit.registry.test_registry_sqlite import local_registry


def _history(config: MetadataConfig, root: Path) -> dict[str, object]:
    reg = local_registry(config, root)
    try:
        for i in range(5):
            reg.register(
                "m",
                task="binary",
                files={"f": f"v{i}".encode()},
                format="raw",
                lineage={"i": i},
                metrics={"pr_auc": 0.5 + i / 10},
                by="me",
            )
        reg.promote("m", 1, by="me", reason="first", force=True)
        reg.set_alias("m", "challenger", 2, by="loop", reason="canary")
        reg.promote("m", 3, by="me", reason="better", force=True)
        reg.remove_alias("m", "challenger", by="loop", reason="ended")
        reg.rollback("m", by="ops", reason="v3 misbehaves")
        with reg.store.read() as conn:
            first, older = mq.versions_page(conn, "m", before=None, limit=2)
            rest, end = mq.versions_page(conn, "m", before=older, limit=10)
            periods, cursor = mq.periods_page(conn, "m", alias=None, before=None, limit=3)
            tail, _ = mq.periods_page(conn, "m", alias=None, before=cursor, limit=10)
            champion, _ = mq.periods_page(conn, "m", alias="champion", before=None, limit=10)
            return {
                "versions": [r.version for r in first + rest],
                "aliases": [r.aliases for r in first + rest],
                "metrics": first[0].metrics,
                "cursors": (older, end),
                "periods": [
                    (p.alias, p.action, p.version, p.previous, p.until is None)
                    for p in periods + tail
                ],
                "ends": [p.ended_by["action"] if p.ended_by else None for p in champion],
                "count": mq.version_numbers(conn, "m"),
                "moves": mq.move_count(conn, "m"),
            }
    finally:
        reg.store.close()


EXPECTED = {
    "versions": [5, 4, 3, 2, 1],
    "aliases": [[], [], [], [], ["champion"]],
    "metrics": {"pr_auc": 0.9},
    "cursors": (4, None),
    "periods": [
        ("champion", "rollback", 1, 3, True),
        ("challenger", "remove", None, 2, True),
        ("champion", "force", 3, 1, False),
        ("challenger", "set", 2, None, False),
        ("champion", "force", 1, None, False),
    ],
    "ends": [None, "rollback", "force"],
    "count": (5, 1, 5),
    "moves": 5,
}


def test_the_read_models_on_sqlite(tmp_path: Path) -> None:
    assert _history(SQLiteConfig(path="meta.db"), tmp_path) == EXPECTED


@pytest.mark.postgres
def test_the_read_models_on_postgres(postgres_schema: tuple[str, str], tmp_path: Path) -> None:
    url, schema = postgres_schema
    config = PostgresConfig(url=url, schema=schema)  # type: ignore[call-arg]
    assert _history(config, tmp_path) == EXPECTED
