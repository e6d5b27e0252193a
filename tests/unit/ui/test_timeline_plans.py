"""The timeline's cost does not grow with the history: each source's page is read by walking an
index in time order, newest first, and stopping after ``limit + 1`` rows, never by reading a
whole history and sorting it (SQLite's plan says which: "USE TEMP B-TREE FOR ORDER BY"). A model
filter must not steer SQLite to the model's index: that reads every row of the model (60,000
alerts, benchmarks/ui.py) to sort them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from loopml import Project
from loopml.ui import Timeline
from loopml.ui._timeline import encode_cursor

pytestmark = pytest.mark.xdist_group("ui")


@contextmanager
def plans(engine: Any) -> Iterator[list[tuple[str, list[str]]]]:
    """The statements run meanwhile, each with SQLite's plan for it."""
    seen: list[tuple[str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", before)
    out: list[tuple[str, list[str]]] = []
    try:
        yield out
    finally:
        event.remove(engine, "before_cursor_execute", before)
    raw = engine.raw_connection()
    try:
        for statement, params in seen:
            rows = raw.cursor().execute("EXPLAIN QUERY PLAN " + statement, params).fetchall()
            out.append((statement, [str(r[-1]) for r in rows]))
    finally:
        raw.close()


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"model": "stream_model"},
        {"model": "stream_model", "since": datetime(2024, 1, 5, tzinfo=UTC)},
        {"groups": ["monitoring", "loop"], "model": "stream_model"},
        {"cursor": encode_cursor(datetime(2024, 1, 12, tzinfo=UTC), "alerts", "1")},
        {
            "model": "stream_model",
            "cursor": encode_cursor(datetime(2024, 1, 12, tzinfo=UTC), "alerts", "1"),
        },
    ],
    ids=["all", "model", "model-since", "kinds-model", "cursor", "model-cursor"],
)
def test_every_source_is_read_newest_first_from_an_index(
    ui_base: Path, filters: dict[str, Any]
) -> None:
    with Project.open(ui_base) as p:
        timeline = Timeline(p.store)
        with plans(p.store.engine) as seen:
            timeline.page(limit=5, **filters)
        pages = [(s, plan) for s, plan in seen if "ORDER BY" in s and "LIMIT" in s]
        assert len(pages) >= 3
        sorted_whole = [
            (s.split("FROM")[1].split()[0], plan)
            for s, plan in pages
            if any("TEMP B-TREE FOR ORDER BY" in step for step in plan)
        ]
        # A source has a few schema versions, and schemas.created_at no index of its own (the
        # index named ix_schemas_created_at is on snapshots): sorting them whole costs nothing.
        sorted_whole = [(table, plan) for table, plan in sorted_whole if table != "schemas"]
        assert not sorted_whole, f"sources sorted whole instead of walked: {sorted_whole}"
