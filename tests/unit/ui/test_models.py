"""The Models and "Who served what" pages: versions a page at a time, a version's evidence, two
versions compared, the alias periods with their anchors, the chart, and the rollback action."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from sqlalchemy import func, select

from loopml import Project
from loopml.storage import tables as t
from tests.unit.ui.conftest import TOKEN, figure

pytestmark = pytest.mark.xdist_group("ui")

MODEL = "stream_model"
RAW_FLOAT = re.compile(r"\d\.\d{6,}")


def _text(page: str) -> str:
    """What a person reads: the page without its tags, scripts and charts."""
    page = re.sub(r"<script.*?</script>", " ", page, flags=re.S)
    page = re.sub(r"<div class=\"chart\">.*?</div>\s*</div>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def _links(page: str, base: str) -> list[str]:
    hrefs = re.findall(r'href="([^"#]*)(?:#[^"]*)?"', page)
    return sorted({urljoin(base, html.unescape(h)) for h in hrefs if h.startswith("/ui/")})


def _anchors(page: str) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', page))


def _count(root: Path, table: Any) -> int:
    with Project.open(root) as p, p.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)


# ------------------------------------------------------------------------------ empty project


@pytest.mark.parametrize("path", ["/ui/models", "/ui/served"])
def test_pages_of_an_empty_project_say_there_is_no_model(
    empty_root: Path, client_for: Callable[..., Any], path: str
) -> None:
    with client_for(empty_root) as c:
        r = c.get(path)
        assert r.status_code == 200
        assert "No model yet" in r.text
        for missing in (
            f"{path}/nope",
            "/ui/models/nope/versions/1",
            "/ui/models/nope/compare",
            "/ui/served/nope/chart",
        ):
            r = c.get(missing)
            assert r.status_code == 404
            assert "no model 'nope'" in html.unescape(r.text)


# ------------------------------------------------------------------------------------- models


def test_the_models_pages_show_every_version_formatted_with_working_links(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(ui_base) as c:
        listing = c.get("/ui/models")
        assert listing.status_code == 200 and MODEL in listing.text
        page = c.get(f"/ui/models/{MODEL}")
        assert page.status_code == 200
        text = _text(page.text)
        assert not RAW_FLOAT.search(text), RAW_FLOAT.findall(text)[:3]
        for v in (1, 2, 3, 4):
            assert f'id="v{v}"' in page.text
        with Project.open(ui_base) as p:
            champion = p.registry.aliases(MODEL)["champion"]
            v1 = p.registry.get(MODEL, 1)
        row = page.text.split(f'id="v{champion}"')[1].split("</tr>")[0]
        assert "champion" in row
        assert f"{v1.metrics['pr_auc']:.4g}" in _text(page.text.split('id="v1"')[1])
        for link in _links(page.text, str(page.url)) + _links(listing.text, str(listing.url)):
            if "/experiments/" in link or "/data/" in link:
                continue  # other areas' pages
            assert c.get(link).status_code == 200, link


def test_versions_are_paged_by_version_number(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(ui_base) as c:
        seen: list[str] = []
        url: str | None = f"/ui/models/{MODEL}?limit=3"
        pages = 0
        while url:
            r = c.get(url)
            assert r.status_code == 200
            seen += re.findall(r'<tr id="v(\d+)"', r.text)
            nxt = re.search(r'rel="next" href="([^"]+)"', r.text)
            url = html.unescape(nxt.group(1)) if nxt else None
            pages += 1
        assert pages == 2
        assert seen == ["5", "4", "3", "2", "1"]
        assert c.get(f"/ui/models/{MODEL}?limit=0").status_code == 422


def test_a_version_page_shows_its_evidence(ui_base: Path, client_for: Callable[..., Any]) -> None:
    with Project.open(ui_base) as p:
        mv = p.registry.get(MODEL, 4)
        evaluations = p.registry.evaluations(MODEL, 4)
        size = p.artifacts.size(mv.files["model.txt"])
    with client_for(ui_base) as c:
        r = c.get(f"/ui/models/{MODEL}/versions/4")
        assert r.status_code == 200
        text = _text(r.text)
        assert not RAW_FLOAT.search(text), RAW_FLOAT.findall(text)[:3]
        # lineage: the snapshot (linked), the features' hash, the rows and cut-off
        assert f'/ui/data/snapshots/{mv.lineage["snapshot"]}"' in r.text
        assert mv.lineage["features_hash"][:16] in text
        assert f"{mv.lineage['rows']['train']:,}" in text
        assert "none: trained from scratch" in text
        # metrics beside each baseline, slices, calibration
        for name in (mv.report or {})["baselines"]:
            assert f">{name}</th>" in r.text
        curve = figure(r.text, "calibration-4")  # the curve, drawn by ui.js once Plotly loads
        assert curve["data"] and "/ui/static/ui.js" in r.text
        gaps = [s["gap"] for s in (mv.report or {})["slices"]]
        shown = re.findall(r"<td>([+−][0-9.]+)</td></tr>", r.text.split('id="slices"')[1])
        assert len(shown) == len(gaps)
        values = [float(x.replace("−", "-")) for x in shown]
        assert values == sorted(values, reverse=True)  # the worst first
        # every gate verdict at its anchor, each check with its rows
        anchors = _anchors(r.text)
        for e in evaluations:
            assert f"gate-{e.id}" in anchors
            for check in e.report["checks"]:
                assert check["name"] in text
        # files with sizes in units and hashes
        assert mv.files["model.txt"] in text
        assert f"{size / 1000:.3g} kB" in text
        assert c.get(f"/ui/models/{MODEL}/versions/99").status_code == 404


def test_the_timeline_links_to_gate_verdicts_and_moves(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    """The timeline's links into this area (the URL contract) resolve, anchors included."""
    with client_for(ui_base) as c:
        home = c.get("/ui/?limit=500&kind=models")
        if "gate-" not in home.text:
            home = c.get("/ui/?limit=500")
        links = re.findall(r'href="(/ui/(?:models|served)/[^"]+)"', home.text)
        assert any("#gate-" in x for x in links) and any("#move-" in x for x in links)
        for link in {html.unescape(x) for x in links}:
            path, _, anchor = link.partition("#")
            r = c.get(path)
            assert r.status_code == 200, link
            if anchor:
                assert anchor in _anchors(r.text), link


def test_two_versions_compared(ui_base: Path, client_for: Callable[..., Any]) -> None:
    with Project.open(ui_base) as p:
        a, b = p.registry.get(MODEL, 1), p.registry.get(MODEL, 4)
    with client_for(ui_base) as c:
        r = c.get(f"/ui/models/{MODEL}/compare?a=1&b=4")
        assert r.status_code == 200
        text = _text(r.text)
        assert not RAW_FLOAT.search(text), RAW_FLOAT.findall(text)[:3]
        row = _text(r.text.split(">log_loss<")[1].split("</tr>")[0])
        delta = b.metrics["log_loss"] - a.metrics["log_loss"]
        digits = 4 if abs(delta) >= 0.1 else 3 if abs(delta) >= 0.01 else 2  # fewer when small
        assert ("+" if delta > 0 else "−") + f"{abs(delta):.{digits}g}" in row
        row_n = r.text.split(">n<")[1].split("</tr>")[0]
        assert 'class="good"' not in row_n and 'class="bad"' not in row_n  # a count, not quality
        better = "good" if delta < 0 else "bad"  # log loss: lower is better
        assert f'class="{better}"' in r.text.split(">log_loss<")[1].split("</tr>")[0]
        assert a.lineage["snapshot"] in text and b.lineage["snapshot"] in text
        assert 'class="differs"' in r.text  # the snapshots differ
        assert c.get(f"/ui/models/{MODEL}/compare").status_code == 200  # the two newest
        assert c.get(f"/ui/models/{MODEL}/compare?a=1&b=77").status_code == 404


# -------------------------------------------------------------------------------- who served


def test_who_served_what_lists_every_period_exactly(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    with Project.open(ui_base) as p:
        history = p.registry.history(MODEL)
        held = p.registry.aliases(MODEL)
    with client_for(ui_base) as c:
        assert c.get("/ui/served").status_code == 200
        r = c.get(f"/ui/served/{MODEL}")
        assert r.status_code == 200
        text = _text(r.text)
        assert not RAW_FLOAT.search(text), RAW_FLOAT.findall(text)[:3]
        anchors = _anchors(r.text)
        for move in history:
            assert f"move-{move.id}" in anchors
        # each period ends at the next move of the same alias: its row says until when
        for move in history:
            row = r.text.split(f'id="move-{move.id}"')[1].split("</tr>")[0]
            later = [m for m in history if m.alias == move.alias and m.id > move.id]
            if later:
                assert f'href="#move-{later[0].id}"' in row
            elif move.to_version is not None:
                assert "now" in _text(row)
            assert move.by in row and move.reason in row
        # the holders now, and why nothing can be rolled back in this history
        for alias, version in held.items():
            assert f"{alias} (v{version}" in text
        assert "nothing to roll back to" in text
        assert 'hx-get="/ui/served/stream_model/chart"' in r.text
        with Project.open(ui_base) as p, p.store.read() as conn:
            ended = [
                (x.id, x.data["reason"])
                for x in conn.execute(select(t.rollouts.c.id, t.rollouts.c.data))
                if x.data.get("reason")
            ]
        assert ended and all(
            html.escape(why, quote=True) in r.text or why in text for _, why in ended
        )
        for rid, _ in ended:
            assert f'href="/ui/experiments/{rid}"' in r.text
        assert "/ui/static/ui.js" in r.text  # draws the chart the page loads after it
        # paged: the newest two moves, then the rest
        first = c.get(f"/ui/served/{MODEL}?limit=2")
        ids = re.findall(r'<tr id="move-(\d+)"', first.text)
        assert ids == [str(m.id) for m in reversed(history)][:2]
        nxt = html.unescape(re.search(r'rel="next" href="([^"#]+)', first.text).group(1))  # type: ignore[union-attr]
        second = re.findall(r'<tr id="move-(\d+)"', c.get(nxt).text)
        assert second == [str(m.id) for m in reversed(history)][2:4]
        only = c.get(f"/ui/served/{MODEL}?alias=champion")
        assert {m.alias for m in history if f'id="move-{m.id}"' in only.text} == {"champion"}


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def test_the_chart_draws_versions_against_realized_performance(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(ui_base) as c:
        r = c.get(f"/ui/served/{MODEL}/chart", headers={"HX-Request": "true"})
        assert r.status_code == 200
        assert "<html" not in r.text  # the fragment alone
        assert 'id="served-stream_model"' in r.text
        drawn = figure(r.text, "served-stream_model")
        assert drawn["layout"]["yaxis"]["dtick"] == 1  # a few versions: a tick each
        steps = drawn["data"]
        assert any(tr.get("line", {}).get("shape") == "hv" for tr in steps)  # the step chart
        assert "v1 pr_auc" in r.text and "drift share" in r.text
        # beside each version's realized performance, the one estimated from its scores alone
        names = {tr.get("name") for tr in steps}
        assert {"v1 pr_auc", "v1 pr_auc, estimated"} <= names
        (guess,) = [tr for tr in steps if tr.get("name") == "v1 pr_auc, estimated"]
        assert all(0 <= y <= 1 for y in guess["y"] if y is not None) and any(guess["y"])
        assert "monitoring windows judged across 4 versions" in _text(r.text)
        with Project.open(ui_base) as p, p.store.read() as conn:
            rollouts = list(
                conn.execute(
                    select(t.rollouts.c.id, t.rollouts.c.status, t.rollouts.c.started_at).order_by(
                        t.rollouts.c.id
                    )
                )
            )
        ends = re.findall(r"<tr><td class=\"text\">[^<]+ to ([^<]+)</td>", r.text)
        last = max(datetime.strptime(e, "%Y-%m-%d %H:%M UTC").replace(tzinfo=UTC) for e in ends)
        shaded = [rid for rid, _, started in rollouts if _utc(started) < last]
        assert shaded == [1, 2, 3]  # rollout 4 began as the log ends: no traffic to shade yet
        for rid, status, _ in rollouts:  # each traffic split in the log shaded and named
            drawn = f"#{rid} canary" in r.text and status.replace("_", " ") in r.text
            assert drawn == (rid in shaded), rid
        windows = re.findall(r"<tr><td class=\"text\">[^<]+ to [^<]+</td>", r.text)
        assert len(windows) == int(re.search(r"(\d+) monitoring windows", r.text).group(1))  # type: ignore[union-attr]
        assert not RAW_FLOAT.search(_text(r.text.split("<details")[1]))
        whole = c.get(f"/ui/served/{MODEL}/chart")
        assert "<html" in whole.text and "/ui/static/ui.js" in whole.text


def test_the_chart_shows_the_last_days_of_the_log(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(ui_base) as c:
        whole = c.get(f"/ui/served/{MODEL}/chart?days=36500")
        recent = c.get(f"/ui/served/{MODEL}/chart?days=3", headers={"HX-Request": "true"})
        assert whole.status_code == recent.status_code == 200
        n_all = int(re.search(r"(\d+) monitoring windows", whole.text).group(1))  # type: ignore[union-attr]
        n_recent = int(re.search(r"(\d+) monitoring windows", recent.text).group(1))  # type: ignore[union-attr]
        assert 0 < n_recent < n_all
        starts = re.findall(r"<tr><td class=\"text\">(\S+) 00:00 UTC to", recent.text)
        assert len(set(starts)) == 4  # whole days: the cut-off's day and the three after it
        assert 'hx-get="/ui/served/stream_model/chart?days=30"' in recent.text
        assert c.get(f"/ui/served/{MODEL}/chart?days=0").status_code == 422


def test_an_old_move_is_found_on_its_page(ui_base: Path, client_for: Callable[..., Any]) -> None:
    """The timeline links /served/{model}#move-{id}; a move older than the first page is shown
    by the page that starts with it (the page's script goes there)."""
    with client_for(ui_base) as c:
        first = c.get(f"/ui/served/{MODEL}?limit=1")
        assert 'id="move-1"' not in first.text
        assert 'location.pathname + "?before="' in first.text
        assert 'id="move-1"' in c.get(f"/ui/served/{MODEL}?limit=1&before=2").text


def test_a_chart_of_many_versions_leaves_the_ticks_to_plotly(
    empty_root: Path, client_for: Callable[..., Any]
) -> None:
    # A tick per version over thousands of versions hung the browser (10,000 labels).
    with Project.open(empty_root) as p:
        for v in range(1, 31):
            p.registry.register(
                "m", task="binary", files={"f": b"x"}, format="raw", lineage={}, metrics={}, by="me"
            )
            p.registry.promote("m", v, by="me", reason="next", force=True)
    with client_for(empty_root) as c:
        chart = c.get("/ui/served/m/chart")
        assert chart.status_code == 200
        axis = figure(chart.text, "served-m")["layout"]["yaxis"]
        assert "dtick" not in axis and axis["tickformat"] == "d"


def test_rollout_arms_on_the_registry_clock_are_drawn_as_steps(
    empty_root: Path, client_for: Callable[..., Any]
) -> None:
    with Project.open(empty_root) as p:
        for _ in range(2):
            p.registry.register(
                "m", task="binary", files={"f": b"x"}, format="raw", lineage={}, metrics={}, by="me"
            )
        p.registry.promote("m", 1, by="me", reason="first", force=True)
        p.rollouts.start("m", strategy="shadow", champion=1, challenger=2, shadow=1.0)
    with client_for(empty_root) as c:
        chart = c.get("/ui/served/m/chart")
        assert chart.status_code == 200
        names = {tr.get("name") for tr in figure(chart.text, "served-m")["data"]}
        assert "rollout arms" in names
        page = c.get("/ui/served/m")
        assert "shadow" in page.text and 'href="/ui/experiments/1"' in page.text


def test_the_chart_of_a_model_that_never_served(
    empty_root: Path, client_for: Callable[..., Any]
) -> None:
    with Project.open(empty_root) as p:
        p.registry.register(
            "m", task="binary", files={"f": b"x"}, format="raw", lineage={}, metrics={}, by="me"
        )
    with client_for(empty_root) as c:
        r = c.get("/ui/served/m")
        assert r.status_code == 200 and "nothing serves it" in r.text
        chart = c.get("/ui/served/m/chart")
        assert chart.status_code == 200 and "Nothing to draw yet" in chart.text
        v = c.get("/ui/models/m/versions/1")
        assert v.status_code == 200 and "No evaluation of this version yet" in v.text


# ------------------------------------------------------------------------------------ rollback


def _rollback(c: Any, alias: str = "champion", **extra: Any) -> Any:
    form = {"alias": alias, "by": "ana", "reason": "v4 misbehaves in production", **extra}
    return c.post(f"/ui/served/{MODEL}/rollback", data=form)


def test_rollback_needs_the_token_and_changes_nothing_without_it(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    moves = _count(ui_copy, t.alias_history)
    with client_for(ui_copy) as c:
        assert _rollback(c).status_code == 401
        assert _rollback(c, token="wrong").status_code == 401
    with client_for(ui_copy, token=None) as c:
        assert _rollback(c, token=TOKEN).status_code == 403
    assert _count(ui_copy, t.alias_history) == moves
    assert _count(ui_copy, t.actions) == 0


def test_rollback_with_nothing_to_roll_back_to_shows_the_error(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    moves = _count(ui_copy, t.alias_history)
    with Project.open(ui_copy) as p:  # version 5 is the first to hold the challenger alias
        first = [m for m in p.registry.history(MODEL, "challenger") if m.to_version == 5]
        assert [m.from_version for m in first] == [None]
    with client_for(ui_copy) as c:
        r = c.post(
            f"/ui/served/{MODEL}/rollback",
            data={"alias": "challenger", "by": "ana", "reason": "try", "token": TOKEN},
            headers={"HX-Request": "true"},
        )
        assert r.status_code == 409
        assert "no version held it before" in html.unescape(r.text)
        assert "<html" not in r.text  # shown in the form's result, not a page
        # htmx leaves an error unswapped unless the page lets it into the form's result
        assert (
            '{"code": "[2345]..", "swap": true, "error": false}'
            in c.get(f"/ui/served/{MODEL}").text
        )
    assert _count(ui_copy, t.alias_history) == moves
    with Project.open(ui_copy) as p, p.store.read() as conn:
        action = conn.execute(select(t.actions)).mappings().one()
    assert not action["ok"] and action["by"] == "ana" and "no version" in action["outcome"]["error"]


def test_rollback_with_the_token_moves_the_alias_back_and_is_recorded(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    with Project.open(ui_copy) as p:  # the loop promoted version 4 over version 1
        assert p.registry.aliases(MODEL)["champion"] == 4
    with client_for(ui_copy) as c:
        before = c.get(f"/ui/served/{MODEL}")
        assert "a rollback returns it to" in before.text
        r = _rollback(c, token=TOKEN)
        assert r.status_code == 200
        assert "from version 4 to version 1" in html.unescape(r.text)
        back = re.search(r'href="(/ui/served/[^"]+)"', r.text).group(1)  # type: ignore[union-attr]
        path, _, anchor = back.partition("#")
        page = c.get(path)
        assert anchor in _anchors(page.text)
        row = page.text.split(f'id="{anchor}"')[1].split("</tr>")[0]
        assert "rollback" in row and "ana" in row and "v4 misbehaves in production" in row
    with Project.open(ui_copy) as p, p.store.read() as conn:
        assert p.registry.aliases(MODEL)["champion"] == 1
        action = conn.execute(select(t.actions)).mappings().one()
    assert action["ok"] and action["by"] == "ana" and action["action"] == "rollback"
    assert action["reason"] == "v4 misbehaves in production"
    assert action["outcome"]["from"] == 4 and action["outcome"]["to"] == 1


def test_a_missing_file_is_shown_as_missing(ui_copy: Path, client_for: Callable[..., Any]) -> None:
    with Project.open(ui_copy) as p:
        digest = p.registry.get(MODEL, 2).files["model.txt"]
        shared = [v for v in (1, 3, 4) if digest in p.registry.get(MODEL, v).files.values()]
    assert not shared
    blob = next((ui_copy / ".loopml" / "artifacts").rglob(digest))
    blob.unlink()
    with client_for(ui_copy) as c:
        r = c.get(f"/ui/models/{MODEL}/versions/2")
        assert r.status_code == 200
        row = r.text.split(digest)[0].rsplit("<tr>", 1)[1]
        assert "missing" in row
