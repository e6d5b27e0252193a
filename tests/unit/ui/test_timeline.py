"""The home page: the incident timeline, its filters, its pages and its cursor."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loopml import Project
from loopml.errors import UsageError
from loopml.ui import Timeline

pytestmark = pytest.mark.xdist_group("ui")


def test_an_empty_project_shows_an_empty_timeline(
    empty_root: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(empty_root) as c:
        r = c.get("/ui/")
        assert r.status_code == 200
        assert "Nothing has happened yet" in r.text
        assert c.get("/").status_code == 200  # redirected to /ui/


def test_every_kind_of_record_appears_once_in_order(ui_base: Path) -> None:
    with Project.open(ui_base) as p:
        timeline = Timeline(p.store)
        seen: list[Any] = []
        cursor = None
        while True:
            page = timeline.page(cursor=cursor, limit=7)
            seen += page.entries
            cursor = page.next_cursor
            if cursor is None:
                break
        kinds = {e.kind for e in seen}
        # every source of the built history: the data, the loop, the registry, the rollouts
        assert {"batch_landed", "rows_quarantined", "batch_held", "gate", "alias_moved"} <= kinds
        assert {"triggered", "trained", "promoted", "rolled_back", "alert_raised"} <= kinds
        assert {"rollout_started", "rollout_ended"} <= kinds
        keys = [(e.source, e.key) for e in seen]
        assert len(keys) == len(set(keys)), "an entry was shown on two pages"
        assert [e.at for e in seen] == sorted((e.at for e in seen), reverse=True)
        total = timeline.page(limit=500).counts
        assert sum(total.values()) == len(seen)
        # The batches and loop events it holds are all there.
        n_loop = len([e for e in seen if e.source == "loop_events"])
        with p.store.read() as conn:
            from sqlalchemy import func, select

            from loopml.storage import tables as t

            assert n_loop == conn.execute(select(func.count()).select_from(t.loop_events)).scalar()


def test_filters_by_kind_and_time(ui_base: Path) -> None:
    with Project.open(ui_base) as p:
        timeline = Timeline(p.store)
        loop = timeline.page(groups=["loop"], limit=500)
        assert loop.entries and all(e.source == "loop_events" for e in loop.entries)
        assert loop.counts["data"] == 0 and loop.counts["loop"] == len(loop.entries)
        middle = loop.entries[len(loop.entries) // 2].at
        older = timeline.page(groups=["loop"], until=middle, limit=500)
        assert older.entries and all(e.at < middle for e in older.entries)
        with pytest.raises(UsageError, match="unknown timeline kind 'nope'"):
            timeline.page(groups=["nope"])
        with pytest.raises(UsageError, match="cursor"):
            timeline.page(cursor="not-a-cursor")


def test_the_page_links_every_entry_to_its_evidence(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(ui_base) as c:
        r = c.get("/ui/?limit=500")
        assert r.status_code == 200
        links = re.findall(r'<a class="title" href="([^"]+)"', r.text)
        assert links and all(link.startswith("/ui/") for link in links)
        # raw floats never reach what the page shows
        shown = re.sub(r"<[^>]*>", " ", r.text)
        assert not re.search(r"\d\.\d{6,}", shown)
        assert c.get("/ui/?kind=loop&since=2024-01-10").status_code == 200
        bad = c.get("/ui/?since=yesterday")
        assert bad.status_code == 422 and "is not a time" in bad.text


def test_a_quarantine_entry_says_why_it_was_held(ui_base: Path) -> None:
    with Project.open(ui_base) as p:
        entries = Timeline(p.store).page(groups=["data"], limit=500).entries
    titles = {e.kind: e.title for e in entries if e.source == "quarantine"}
    assert titles["rows_quarantined"] == "events: 1 row quarantined: unparseable (x1) in 1 row"
    assert titles["batch_held"].startswith("events: batch held (50 rows): schema_change")


def test_loop_events_read_as_sentences() -> None:
    from loopml.ui._timeline import describe_loop_event

    triggered = describe_loop_event(
        "triggered",
        {
            "triggers": [
                {"kind": "new_data", "rows": 5039},
                {"kind": "monitoring", "signal": "decay"},
                {"kind": "monitoring", "signal": "concept_drift"},
                {"kind": "alert", "rule": "decay", "alert": 1},
            ]
        },
    )
    assert triggered == (
        "triggered by 5,039 new rows, decay seen by monitoring, concept drift seen by "
        "monitoring, alert decay"
    )
    hold = describe_loop_event("canary_hold", {"rollout": 2, "reasons": ["undecided"]})
    assert hold == "canary holds (rollout 2): undecided"  # no share recorded: none shown
