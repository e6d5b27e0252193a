"""The monitoring pages: the latest report (drift heat map, performance and labels per window),
the alerts a page at a time, and an alert's evidence and what it led to."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from loopml import Project
from loopml.storage import tables as t
from tests.unit.ui.conftest import figure, links, no_raw_floats, shown

pytestmark = pytest.mark.xdist_group("ui")


def test_an_empty_project_says_what_to_do(empty_root: Path, client_for: Callable[..., Any]) -> None:
    with client_for(empty_root) as c:
        r = c.get("/ui/monitoring")
        assert r.status_code == 200
        assert "declares no model" in r.text and "No alert has been raised" in r.text
        missing = c.get("/ui/monitoring/alerts/1")
        assert missing.status_code == 404 and "no alert 1" in missing.text
        assert c.get("/ui/monitoring?status=nope").status_code == 422


def test_the_latest_report_per_window(ui_base: Path, client_for: Callable[..., Any]) -> None:
    with Project.open(ui_base) as p:
        report = p.monitoring.last_report()
        model = p.models.name
    assert report is not None and report.timeline
    with client_for(ui_base) as c:
        r = c.get("/ui/monitoring")
    assert r.status_code == 200
    no_raw_floats(r.text)
    text = shown(r.text)
    heat = figure(r.text, "drift-heat")  # the heat map, drawn by ui.js
    assert heat["data"][0]["type"] == "heatmap" and "/ui/static/ui.js" in r.text
    # every window, as times, with each feature's score to 3 significant digits
    for item in report.timeline:
        start = datetime.fromisoformat(item.start).strftime("%Y-%m-%d %H:%M UTC")
        assert start in text
        for score in item.features.scores.values():
            assert score is not None and f"{score:#.3g}" in text
    # performance realized and estimated, and where the labels went
    metric = report.timeline[-1].decay.metric
    assert f"Performance per window: {metric}" in text
    estimated = report.timeline[0].estimated[metric]
    assert estimated is not None and f"{estimated:.3g}" in text
    labels = report.labels
    assert labels.matched and f"matched {labels.matched:,}" in text
    assert f"pending {labels.pending:,}" in text and f"predictions {report.rows:,}" in text
    # the alert, linked to its page
    assert links(r.text, "/ui/monitoring/alerts/") and "decay" in text
    assert f"/ui/models/{model}/versions/{report.version}" in r.text


def test_no_report_yet_says_how_to_get_one_and_shows_the_alerts(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    with Project.open(ui_copy) as p:
        model = p.models.name
    (ui_copy / ".loopml/lake/monitoring" / model / "report.json").unlink()
    with client_for(ui_copy) as c:
        r = c.get("/ui/monitoring")
    assert r.status_code == 200
    assert "No monitoring report has been computed yet" in r.text and "loopml monitor" in r.text
    assert "/ui/monitoring/alerts/1" in r.text


def _add_alerts(root: Path, n: int, model: str) -> None:
    t0 = datetime(2024, 2, 1, tzinfo=UTC)
    rows = [
        {
            "model": model,
            "rule": "drift" if i % 3 else "decay",
            "metric": "drift.share",
            "severity": "warning",
            "status": "resolved" if i % 2 else "firing",
            "value": 0.123456789 + i,
            "threshold": 0.5,
            "window": "current",
            "window_start": t0 + timedelta(hours=i),
            "window_end": t0 + timedelta(hours=i + 1),
            "first_at": t0 + timedelta(hours=i + 1),
            "last_at": t0 + timedelta(hours=i + 1),
            "occurrences": 1,
            "notified_at": None,
            "resolved_at": t0 + timedelta(hours=i + 2) if i % 2 else None,
            "details": {"op": ">"},
        }
        for i in range(n)
    ]
    with Project.open(root) as p, p.store.write() as conn:
        conn.execute(t.alerts.insert(), rows)


def test_alerts_page_by_keyset_and_filter(ui_copy: Path, client_for: Callable[..., Any]) -> None:
    _add_alerts(ui_copy, 9, "stream_model")
    with Project.open(ui_copy) as p, p.store.read() as conn:
        everything = {r["id"]: r for r in conn.execute(select(t.alerts)).mappings()}
    with client_for(ui_copy) as c:
        seen: list[int] = []
        url = "/ui/monitoring?limit=4"
        pages = 0
        while url:
            r = c.get(url)
            assert r.status_code == 200
            no_raw_floats(r.text)
            ids = [int(x) for x in re.findall(r'<td><a href="/ui/monitoring/alerts/(\d+)"', r.text)]
            assert len(ids) <= 4
            seen += ids
            pages += 1
            older = [h for h in links(r.text, "/ui/monitoring?") if "before=" in h]
            url = older[0] if older else ""
        assert pages == 3 and seen == sorted(everything, reverse=True)
        firing = c.get("/ui/monitoring?status=firing&rule=decay&limit=500")
        ids = {
            int(x) for x in re.findall(r'<td><a href="/ui/monitoring/alerts/(\d+)"', firing.text)
        }
        assert ids == {
            i for i, a in everything.items() if a["status"] == "firing" and a["rule"] == "decay"
        }
        # an htmx request of the filter gets the list alone
        part = c.get("/ui/monitoring?status=resolved", headers={"hx-request": "true"})
        assert part.status_code == 200 and "<html" not in part.text and "resolved" in part.text


def test_a_hundred_thousand_alerts_page_fast(ui_copy: Path, client_for: Callable[..., Any]) -> None:
    _add_alerts(ui_copy, 100_000, "stream_model")
    with client_for(ui_copy) as c:
        c.get("/ui/monitoring")  # opens the project
        took = []
        for url in (
            "/ui/monitoring",
            "/ui/monitoring?before=50000",
            "/ui/monitoring?status=firing&rule=decay&before=20000",
            "/ui/monitoring/alerts/99999",
        ):
            start = time.perf_counter()
            r = c.get(url)
            took.append(time.perf_counter() - start)
            assert r.status_code == 200
        assert "the oldest" not in c.get("/ui/monitoring?before=50000").text
    assert max(took) < 1.0, took  # the benchmark holds it to 300 ms; a loaded test host, less


def test_an_alert_with_its_evidence_and_what_it_led_to(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    with Project.open(ui_base) as p, p.store.read() as conn:
        alert = conn.execute(select(t.alerts).where(t.alerts.c.id == 1)).mappings().one()
        batches = list(conn.execute(select(t.batches)).mappings())
        model = p.models.name
    start, end = alert["window_start"], alert["window_end"]
    with client_for(ui_base) as c:
        r = c.get("/ui/monitoring/alerts/1")
        assert r.status_code == 200
        no_raw_floats(r.text)
        text = shown(r.text)
        assert "Alert 1: decay" in text and "performance.decayed" in text
        assert "2024-01-13 00:00 UTC to 2024-01-17 00:00 UTC" in text
        assert "occurrences 4 evaluations" in text
        # the windows it fired on: one a day, each with its drift scores
        for day in (13, 14, 15, 16):
            assert f"2024-01-{day:02d} 00:00 UTC – 2024-01-{day + 1:02d} 00:00 UTC" in text
        assert 'id="alert-heat"' in r.text
        # the batches whose rows fall in the window, and only those
        fed = {
            b["id"]
            for b in batches
            if b["status"] == "committed"
            and b["rows_accepted"]
            and b["stats"]["time_min"] < end.isoformat()
            and b["stats"]["time_max"] >= start.isoformat()
        }
        listed = {h.rsplit("/", 1)[1] for h in links(r.text, "/ui/data/batches/")}
        assert fed and listed == fed
        # what it led to: cycle 4, whose canary promoted version 4
        cycle = links(r.text, f"/ui/loop/{model}/cycles/")
        assert cycle == [f"/ui/loop/{model}/cycles/4"]
        assert "promoted version 4" in text and "in progress" not in text
        page = c.get(cycle[0])
        assert page.status_code == 200 and 'href="/ui/monitoring/alerts/1"' in page.text
        # the batches a page at a time
        first = c.get("/ui/monitoring/alerts/1?limit=3")
        more = [h for h in links(first.text, "/ui/monitoring/alerts/1?") if "before=" in h]
        assert more
        second = c.get(more[0])
        assert second.status_code == 200
        both = links(first.text, "/ui/data/batches/") + links(second.text, "/ui/data/batches/")
        assert {h.rsplit("/", 1)[1] for h in both} == fed and len(both) == len(fed)
        missing = c.get("/ui/monitoring/alerts/999")
        assert missing.status_code == 404 and "no alert 999" in missing.text


def test_batches_without_a_time_range_are_listed_as_such(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    with Project.open(ui_copy) as p, p.store.write() as conn:
        first = conn.execute(
            select(t.batches.c.id, t.batches.c.stats)
            .where(t.batches.c.status == "committed")
            .order_by(t.batches.c.id)
        ).first()
        assert first is not None
        old = {k: v for k, v in first[1].items() if k not in ("time_min", "time_max")}
        conn.execute(update(t.batches).where(t.batches.c.id == first[0]).values(stats=old))
        # and a monitoring store with no kept windows: the page says how to judge them again
        conn.execute(delete(t.loop_events).where(t.loop_events.c.kind == "triggered"))
    for name in ("windows.json",):
        (ui_copy / ".loopml/lake/monitoring/stream_model" / name).unlink()
    with client_for(ui_copy) as c:
        r = c.get("/ui/monitoring/alerts/1?limit=500")
    assert r.status_code == 200
    assert f"/ui/data/batches/{first[0]}" in r.text and "time range not recorded" in r.text
    assert "judge them again with loopml monitor --since 2024-01-13T00:00" in shown(r.text)
    assert "No loop cycle was triggered by this alert" in r.text


def test_a_project_wide_alert_without_a_window(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    at = datetime(2024, 1, 5, tzinfo=UTC)
    with Project.open(ui_copy) as p, p.store.write() as conn:
        key = conn.execute(
            t.alerts.insert().values(
                model=None,
                rule="quarantine",
                metric="quarantine_rate",
                severity="critical",
                status="resolved",
                value=0.25,
                threshold=0.1,
                window="current",
                window_start=None,
                window_end=None,
                first_at=at,
                last_at=at,
                occurrences=1,
                notified_at=at,
                resolved_at=at + timedelta(hours=1),
                details={"op": ">"},
            )
        ).inserted_primary_key[0]
    with client_for(ui_copy) as c:
        listed = c.get("/ui/monitoring?status=resolved")
        assert f"/ui/monitoring/alerts/{key}" in listed.text and "(project)" in listed.text
        r = c.get(f"/ui/monitoring/alerts/{key}")
    assert r.status_code == 200
    text = shown(r.text)
    assert "the project (no model)" in text and "The alert names no window" in text
    assert "resolved 2024-01-05 01:00 UTC" in text and "No loop cycle was triggered" in text
