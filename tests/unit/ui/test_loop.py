"""The loop's pages: its state, lease, next step, triggers and cycles with their outcomes; a
cycle's events with their anchors and links; a trigger by hand (token, who, why)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from loopml import Project
from loopml.storage import tables as t
from tests.unit.ui.conftest import links, no_raw_floats, shown

pytestmark = pytest.mark.xdist_group("ui")

MODEL = "stream_model"


def test_an_empty_project_has_no_loop(empty_root: Path, client_for: Callable[..., Any]) -> None:
    with client_for(empty_root) as c:
        r = c.get("/ui/loop")
        assert r.status_code == 200 and "declares no model" in r.text
        assert "loopml loop run" in r.text
        missing = c.get("/ui/loop/nope")
        assert missing.status_code == 404 and "no loop of model &#39;nope&#39;" in missing.text
        assert c.get("/ui/loop/nope/cycles/1").status_code == 404


def test_the_loop_page(ui_base: Path, client_for: Callable[..., Any]) -> None:
    with client_for(ui_base) as c:
        r = c.get("/ui/loop")
        assert r.status_code == 200 and str(r.url).endswith(f"/ui/loop/{MODEL}")
        no_raw_floats(r.text)
        text = shown(r.text)
        assert "phase canary" in text and "cycle 5" in text
        assert "challenger version 5" in text and f"/ui/models/{MODEL}/versions/5" in r.text
        assert "/ui/experiments/4" in r.text  # the rollout of the canary
        assert "free: no controller holds the loop" in text  # the fixture released its lease
        assert "alerts decay" in text and "at least between cycles 2d" in text
        # every cycle with its outcome
        assert "promoted version 1" in text
        assert "rolled back by its canary: version 2 at 20%" in text
        assert "rolled back by its canary: version 3 at 50%" in text
        assert "promoted version 4" in text  # the decay alert's retrain
        assert "in progress: a canary" in text
        assert "asked by ui-fixture: a challenger trained on noise" in text
        # the next step is loaded after the page (it counts the lake's new rows)
        nxt = c.get(f"/ui/loop/{MODEL}/next")
        assert nxt.status_code == 200
        assert "Judge the canary of version 5 (rollout 4)" in nxt.text
        assert "new data" in shown(nxt.text) and "min interval" in shown(nxt.text)
        part = c.get(f"/ui/loop/{MODEL}/next", headers={"hx-request": "true"})
        assert "<html" not in part.text and "Next step" in part.text
        for href in links(r.text, f"/ui/loop/{MODEL}/cycles/"):
            assert c.get(href).status_code == 200


def test_cycles_page_by_number(ui_base: Path, client_for: Callable[..., Any]) -> None:
    with client_for(ui_base) as c:
        url = f"/ui/loop/{MODEL}?limit=1"
        seen: list[int] = []
        while url:
            r = c.get(url)
            assert r.status_code == 200
            seen += [
                int(x) for x in re.findall(rf'<td><a href="/ui/loop/{MODEL}/cycles/(\d+)">', r.text)
            ]
            older = [h for h in links(r.text, f"/ui/loop/{MODEL}?") if "before=" in h]
            url = older[0] if older else ""
        assert seen == [5, 4, 3, 2, 1]
        assert c.get(f"/ui/loop/{MODEL}?before=x").status_code == 422


def test_every_event_of_a_cycle_in_order_with_its_anchor(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    with Project.open(ui_base) as p, p.store.read() as conn:
        events = list(
            conn.execute(
                select(t.loop_events.c.id, t.loop_events.c.cycle).order_by(t.loop_events.c.id)
            )
        )
    with client_for(ui_base) as c:
        pages: dict[int, str] = {}
        for cycle in sorted({e[1] for e in events}):
            r = c.get(f"/ui/loop/{MODEL}/cycles/{cycle}")
            assert r.status_code == 200
            no_raw_floats(r.text)
            pages[cycle] = r.text
            anchors = [int(x) for x in re.findall(r'<li id="event-(\d+)"', r.text)]
            assert anchors == [e[0] for e in events if e[1] == cycle]
        # the timeline's links to loop events land on their anchors
        timeline = c.get("/ui/?kind=loop&limit=500").text
        targets = re.findall(rf'href="/ui/loop/{MODEL}/cycles/(\d+)#event-(\d+)"', timeline)
        assert len(targets) == len(events)
        for cycle, event in targets:
            assert f'id="event-{event}"' in pages[int(cycle)]
        # cycle 2: its canary rolled it back, with the decision's numbers
        two = shown(pages[2])
        assert "rolled back version 2 at 20%" in two and "n champion 282" in two
        assert "/ui/experiments/1" in pages[2] and f"/ui/models/{MODEL}/versions/2" in pages[2]
        assert "smoke passed 100" in two  # the gate's checks
        # cycle 4: triggered by the decay alert, linked to it
        assert 'href="/ui/monitoring/alerts/1"' in pages[4]
        assert c.get("/ui/monitoring/alerts/1").status_code == 200
        missing = c.get(f"/ui/loop/{MODEL}/cycles/99")
        assert missing.status_code == 404 and "no cycle 99" in missing.text
        # a page of events at a time
        url, ids, n_pages = f"/ui/loop/{MODEL}/cycles/3?limit=4", [], 0
        while url:
            page = c.get(url).text
            found = [int(x) for x in re.findall(r'<li id="event-(\d+)"', page)]
            assert 1 <= len(found) <= 4
            ids += found
            n_pages += 1
            later = links(page, f"/ui/loop/{MODEL}/cycles/3?after=")
            url = later[0] if later else ""
        three = [e[0] for e in events if e[1] == 3]
        assert ids == three and n_pages == -(-len(three) // 4) > 1


def _state(root: Path) -> tuple[dict[str, Any], int, int]:
    with Project.open(root) as p, p.store.read() as conn:
        data = conn.execute(select(t.loop_state.c.data)).scalar()
        n_events = conn.execute(select(func.count()).select_from(t.loop_events)).scalar()
        n_actions = conn.execute(select(func.count()).select_from(t.actions)).scalar()
    return dict(data or {}), int(n_events or 0), int(n_actions or 0)


def test_a_trigger_by_hand_needs_the_token_and_is_recorded(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    form = {"by": "ana", "reason": "the new supplier's data is in"}
    before = _state(ui_copy)
    assert "manual" not in before[0]
    with client_for(ui_copy) as c:
        assert c.post(f"/ui/loop/{MODEL}/trigger", data=form).status_code == 401
        wrong = c.post(f"/ui/loop/{MODEL}/trigger", data={**form, "token": "nope"})
        assert wrong.status_code == 401
    with client_for(ui_copy, token=None) as c:
        assert c.post(f"/ui/loop/{MODEL}/trigger", data={**form, "token": "x"}).status_code == 403
    assert _state(ui_copy) == before  # nothing changed, nothing recorded
    from tests.unit.ui.conftest import TOKEN, shown

    with client_for(ui_copy) as c:
        no_reason = c.post(f"/ui/loop/{MODEL}/trigger", data={"by": "ana", "token": TOKEN})
        assert no_reason.status_code == 422 and "reason" in no_reason.text
        r = c.post(f"/ui/loop/{MODEL}/trigger", data={**form, "token": TOKEN})
        assert r.status_code == 200
        text = shown(r.text)
        assert "Recorded a trigger by hand" in text and "Nothing has been retrained yet" in text
        assert "waits until cycle 5 ends" in text  # the loop is in its canary
        page = shown(c.get(f"/ui/loop/{MODEL}").text)
        assert "trigger by hand waiting" in page and "the new supplier's data is in" in page
    data, n_events, n_actions = _state(ui_copy)
    assert data["manual"]["by"] == "ana" and data["manual"]["reason"] == form["reason"]
    assert n_events == before[1]  # a trigger recorded, no cycle started
    assert n_actions == before[2] + 1
    with Project.open(ui_copy) as p, p.store.read() as conn:
        action = conn.execute(select(t.actions)).mappings().all()[-1]
    assert (action["by"], action["reason"], action["action"], action["target"], action["ok"]) == (
        "ana",
        form["reason"],
        "loop.trigger",
        MODEL,
        True,
    )


def test_a_model_whose_loop_never_ran(tmp_path: Path, client_for: Callable[..., Any]) -> None:
    from loopml.testing import stream_spec
    from tests.unit.ui.conftest import TOKEN

    root = tmp_path / "fresh"
    root.mkdir()
    (root / "loopml.yaml").write_text(stream_spec())
    with client_for(root) as c:
        r = c.get("/ui/loop")
        assert r.status_code == 200 and str(r.url).endswith(f"/ui/loop/{MODEL}")
        assert "cycle none yet" in shown(r.text) and "The loop has run no cycle yet" in r.text
        nxt = shown(c.get(f"/ui/loop/{MODEL}/next").text)
        assert "Wait: no trigger is due" in nxt and "no champion yet" in nxt
        assert c.get(f"/ui/loop/{MODEL}/cycles/0").status_code == 404
        assert c.get(f"/ui/loop/{MODEL}/cycles/1").status_code == 404
        assert "No monitoring report has been computed yet" in c.get("/ui/monitoring").text
        done = c.post(
            f"/ui/loop/{MODEL}/trigger", data={"by": "ana", "reason": "first", "token": TOKEN}
        )
        assert done.status_code == 200
        assert "the next loop step (loopml loop run, or loopml loop step) starts cycle 1" in (
            shown(done.text)
        )
        assert "asked by ana: first" in shown(c.get(f"/ui/loop/{MODEL}/next").text)
