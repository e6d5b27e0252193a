"""The Data pages: sources, batches, snapshots and the quarantine, on an empty project and on the
history; their pages; schema accept, release and drop, refused without the token and recorded
with who and why; what an action did, said as it happened."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select

from loopml import Project
from loopml.storage import tables as t
from tests.unit.ui.conftest import TOKEN

pytestmark = pytest.mark.xdist_group("ui")

RAW_FLOAT = re.compile(r"\d\.\d{6,}")


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", "", html, flags=re.S)))


def links(html: str, prefix: str = "/ui/data") -> list[str]:
    return [unescape(h) for h in re.findall(r'href="([^"]+)"', html) if h.startswith(prefix)]


def older(html: str) -> str | None:
    found = re.search(r'<a rel="next" href="([^"]+)"', html)
    return unescape(found.group(1)) if found else None


def ids_in(html: str, kind: str) -> list[str]:
    return re.findall(rf'<tr id="{kind}-([^"]+)"', html)


def catalog(root: Path) -> dict[str, Any]:
    with Project.open(root) as p, p.store.read() as conn:
        batches = conn.execute(
            select(t.batches.c.id, t.batches.c.file, t.batches.c.lake_path).where(
                t.batches.c.status == "committed"
            )
        ).all()
        entries = {
            r["id"]: SimpleNamespace(**r)
            for r in conn.execute(select(t.quarantine).order_by(t.quarantine.c.id)).mappings()
        }
        snapshots = conn.execute(select(t.snapshots.c.id)).scalars().all()
        schemas = {
            v: s for v, s in conn.execute(select(t.schemas.c.version, t.schemas.c.status)).all()
        }
        actions = [dict(r) for r in conn.execute(select(t.actions)).mappings()]
    return {
        "batches": {b.id: b for b in batches},
        "entries": entries,
        "snapshots": list(snapshots),
        "schemas": schemas,
        "actions": actions,
    }


def entry_of(root: Path, kind: str) -> str:
    return next(e for e in catalog(root)["entries"].values() if e.kind == kind).id


# ------------------------------------------------------------------------------ empty project


def test_every_page_works_on_an_empty_project(
    empty_root: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(empty_root) as c:
        r = c.get("/ui/data")
        assert r.status_code == 200
        assert "No source yet" in r.text and "No batch has landed yet" in r.text
        assert "No snapshot yet" in r.text
        for url, says in (
            ("/ui/data/quarantine", "Nothing is held in quarantine."),
            ("/ui/data/quarantine?status=all", "No quarantine entry yet."),
            ("/ui/data/quarantine?status=dropped", "No quarantine entry was dropped."),
        ):
            r = c.get(url)
            assert r.status_code == 200 and says in r.text, url
        assert c.get("/ui/data/quarantine?status=lost").status_code == 422
        for url, names in (
            ("/ui/data/sources/orders", "no source 'orders'"),
            ("/ui/data/batches/b_nope", "no batch 'b_nope'"),
            ("/ui/data/quarantine/q_nope", "no quarantine entry 'q_nope'"),
            ("/ui/data/snapshots/s_nope", "no snapshot 's_nope'"),
        ):
            r = c.get(url)
            assert r.status_code == 404, url
            assert names in text_of(r.text)


def test_a_declared_source_without_data_has_its_page(
    tmp_path: Path, client_for: Callable[..., Any]
) -> None:
    root = tmp_path / "declared"
    Project.init(root, name="declared").close()
    spec = (root / "loopml.yaml").read_text()
    (root / "loopml.yaml").write_text(
        spec.replace("sources: {}", "sources:\n  orders: {format: csv}", 1)
    )
    with client_for(root) as c:
        r = c.get("/ui/data")
        assert r.status_code == 200 and 'href="/ui/data/sources/orders"' in r.text
        r = c.get("/ui/data/sources/orders")
        assert r.status_code == 200
        assert "No schema yet" in r.text and "No batch yet" in r.text


# ---------------------------------------------------------------------------- the history


def test_the_overview_counts_the_sources_and_links_to_everything(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    cat = catalog(ui_base)
    landed = [b for b in cat["batches"].values() if b.lake_path]
    with Project.open(ui_base) as p, p.store.read() as conn:
        rows_landed = conn.execute(
            select(func.sum(t.batches.c.rows_accepted)).where(t.batches.c.status == "committed")
        ).scalar()
    with client_for(ui_base) as c:
        r = c.get("/ui/data")
        assert r.status_code == 200
        row = re.search(r'<tr id="source-events">(.*?)</tr>', r.text, flags=re.S)
        assert row is not None
        cells = [text_of(x).strip() for x in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]
        # source, format, rows landed, batches landed, batches held, rows quarantined, held now
        assert cells[1] == "csv"
        assert cells[2] == f"{rows_landed:,}"
        assert cells[3] == str(len(landed))
        assert cells[4] == "1"  # the file whose producer renamed a column
        assert cells[5] == "51" and cells[6] == "51"
        assert "version 1" in cells[7] and "change proposed (version 2)" in cells[7]
        assert 'href="/ui/data/sources/events#proposal"' in row.group(1)
        assert re.search(r">2</a></div><div class=\"label\">quarantine entries held", r.text)
        assert not RAW_FLOAT.search(text_of(r.text))
        for href in set(links(r.text)):
            assert c.get(href).status_code == 200, href


def test_the_lists_are_cut_into_pages(ui_base: Path, client_for: Callable[..., Any]) -> None:
    cat = catalog(ui_base)
    with client_for(ui_base) as c:
        for start, kind, cursor, anchor, want in (
            ("/ui/data?limit=4", "batch", "batches_before=", "#batches", set(cat["batches"])),
            ("/ui/data/sources/events?limit=6", "batch", "before=", "", set(cat["batches"])),
            (
                "/ui/data?limit=4",
                "snapshot",
                "snapshots_before=",
                "#snapshots",
                set(cat["snapshots"]),
            ),
            ("/ui/data/quarantine?limit=1", "entry", "before=", "", set(cat["entries"])),
            (f"/ui/data/snapshots/{cat['snapshots'][0]}?limit=7", "batch", "after=", "", None),
        ):
            limit = int(start.rsplit("=", 1)[1])
            seen: list[str] = []
            url: str | None = start
            pages = 0
            while url:
                r = c.get(url)
                assert r.status_code == 200, url
                mine = ids_in(r.text, kind)
                assert 0 < len(mine) <= limit, url
                seen += mine
                pages += 1
                nexts = re.findall(r'<a rel="next" href="([^"]+)"', r.text)
                # the overview pages its two lists apart: each "older" link names its list
                ours = [unescape(h) for h in nexts if cursor in h and h.endswith(anchor)]
                url = ours[0] if ours else None
            assert pages > 1, start
            assert len(seen) == len(set(seen)), f"{start}: a row on two pages"
            if want is not None:
                assert set(seen) == want, start
            else:  # every batch of a features build's snapshot: those landed before it
                assert set(seen) <= {b for b, r in cat["batches"].items() if r.lake_path}
                assert len(seen) == 20


def test_the_overview_pages_batches_and_snapshots_apart(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(ui_base) as c:
        first = c.get("/ui/data?limit=3").text
        nexts = re.findall(r'<a rel="next" href="([^"]+)"', first)
        to_batches = unescape(next(h for h in nexts if "batches_before" in h))
        to_snapshots = unescape(next(h for h in nexts if "snapshots_before" in h))
        second = c.get(to_batches).text
        assert ids_in(second, "batch")[0] not in ids_in(first, "batch")
        assert ids_in(second, "snapshot") == ids_in(first, "snapshot")
        both = c.get(
            unescape(
                next(
                    h
                    for h in re.findall(r'<a rel="next" href="([^"]+)"', second)
                    if "snapshots_before" in h
                )
            )
        ).text
        assert ids_in(both, "batch") == ids_in(second, "batch")  # the other list keeps its page
        assert ids_in(both, "snapshot") == ids_in(c.get(to_snapshots).text, "snapshot")
        assert c.get("/ui/data?batches_before=not-a-cursor").status_code == 422


def test_the_source_page_shows_the_schema_its_versions_and_the_proposal(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(ui_base) as c:
        r = c.get("/ui/data/sources/events")
        assert r.status_code == 200
        text = text_of(r.text)
        for column in ("id", "ts", "x1", "x2", "c", "outcome"):
            assert f'<td class="text">{column}</td>' in r.text
        assert "timestamp[s, UTC]" in text and "4 categories: a, b, c, d" in text
        assert 'id="version-1"' in r.text and 'id="version-2"' in r.text
        proposal = re.search(r'<section id="proposal".*?</section>', r.text, flags=re.S)
        assert proposal is not None
        assert "new column 'x_2' (float64)" in text_of(proposal.group(0))
        assert 'action="/ui/data/sources/events/accept"' in proposal.group(0)
        assert not RAW_FLOAT.search(text)
        # The timeline's schema_changed entries land here.
        timeline = c.get("/ui/?kind=data&limit=500").text
        schema_links = {
            unescape(h) for h in re.findall(r'href="(/ui/data/sources/[^"]+)"', timeline)
        }
        assert schema_links == {"/ui/data/sources/events"}


def test_every_link_of_the_timeline_into_data_resolves(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(ui_base) as c:
        timeline = c.get("/ui/?kind=data&limit=500").text
        hrefs = set(links(timeline))
        assert any("/batches/" in h for h in hrefs) and any("/quarantine/" in h for h in hrefs)
        assert any("/snapshots/" in h for h in hrefs)
        for href in hrefs:
            r = c.get(href)
            assert r.status_code == 200, href
            assert not RAW_FLOAT.search(text_of(r.text)), href
            for inner in set(links(r.text)):
                assert c.get(inner).status_code == 200, (href, inner)


def test_a_batch_shows_what_it_landed_and_what_it_quarantined(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    cat = catalog(ui_base)
    day3 = next(b for b in cat["batches"].values() if b.file.endswith("day-003.csv"))
    held = next(b for b in cat["batches"].values() if b.file.endswith("late-renamed.csv"))
    rows_entry = entry_of(ui_base, "rows")
    with client_for(ui_base) as c:
        text = text_of(c.get(f"/ui/data/batches/{day3.id}").text)
        for fact in ("rows read 720", "rows landed 719", "rows quarantined 1", "format csv"):
            assert fact in re.sub(r"\s+", " ", text)
        assert "outside its 4 categories" in text  # the warning
        assert rows_entry in text and day3.lake_path in text
        r = c.get(f"/ui/data/batches/{held.id}")
        assert "held whole" in r.text and "nothing landed" in r.text
        assert f'href="/ui/data/quarantine/{entry_of(ui_base, "batch")}"' in r.text


def test_an_entry_shows_each_row_with_its_reasons_and_original_text(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(ui_base) as c:
        r = c.get(f"/ui/data/quarantine/{entry_of(ui_base, 'rows')}")
        assert r.status_code == 200
        text = text_of(r.text)
        assert "column 'x1': value 'not-a-number' is not a float64" in text
        assert re.search(r"e\d+,2024-01-04T[\d:]+Z,not-a-number,", text)
        assert "header: id,ts,x1,x2,c,outcome" in re.sub(r"\s+", " ", text)
        assert 'action="/ui/data/quarantine/' in r.text  # release and drop forms


def test_a_file_held_whole_is_shown_as_it_came_a_page_at_a_time(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    entry = entry_of(ui_base, "batch")
    with client_for(ui_base) as c:
        first = c.get(f"/ui/data/quarantine/{entry}?limit=10")
        assert first.status_code == 200
        assert "schema change" in first.text and "new column &#39;x_2&#39;" in first.text
        assert re.search(r'<span class="ln">1</span> id,ts,x1,x_2,c,outcome', first.text)
        seen: list[str] = []
        url: str | None = f"/ui/data/quarantine/{entry}?limit=10"
        while url:
            page = c.get(url).text
            seen += re.findall(r'<span class="ln">(\d+)</span>', page)
            url = older(page)
        assert seen == [str(n) for n in range(1, 52)]  # the header and its 50 rows, once each


def test_an_entry_of_many_rows_is_read_a_page_at_a_time(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    head, *rows = (ui_copy / "incoming" / "day-006.csv").read_text().splitlines()
    damaged = []
    for i, row in enumerate(rows):
        parts = ("t" + row).split(",")
        if i % 20 == 0:
            parts[2] = f"bad-{i}"
        damaged.append(",".join(parts))
    file = ui_copy / "damaged.csv"
    file.write_text("\n".join([head, *damaged]) + "\n")
    with Project.open(ui_copy) as p:
        (result,) = p.data.ingest("events", [file], by="producer")
    assert result.rows_quarantined == 36 and result.quarantine_id
    seen: list[str] = []
    url: str | None = f"/ui/data/quarantine/{result.quarantine_id}?limit=10"
    with client_for(ui_copy) as c:
        while url:
            page = c.get(url)
            assert page.status_code == 200
            seen += re.findall(r"bad-\d+", text_of(page.text))
            url = older(page.text)
    # each row's original text once (its reason names the value too), in the file's order
    values = list(dict.fromkeys(seen))
    assert values == [f"bad-{i}" for i in range(0, len(rows), 20)]
    assert len(seen) == 2 * len(values)


# --------------------------------------------------------------------------------- actions


def test_actions_need_the_token_and_change_nothing_without_it(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    rows_entry = entry_of(ui_copy, "rows")
    posts = [
        (f"/ui/data/quarantine/{rows_entry}/release", {}),
        (f"/ui/data/quarantine/{rows_entry}/drop", {}),
        ("/ui/data/quarantine", {"op": "drop", "scope": "filter"}),
        ("/ui/data/sources/events/accept", {"release": "1"}),
    ]
    before = catalog(ui_copy)
    with client_for(ui_copy) as c:
        for url, extra in posts:
            for token, status in ((None, 401), ("wrong", 401)):
                form = {"by": "ann", "reason": "why not", **extra}
                if token:
                    form["token"] = token
                assert c.post(url, data=form).status_code == status, url
    with client_for(ui_copy, token=None) as c:
        r = c.post(posts[0][0], data={"by": "ann", "reason": "x", "token": TOKEN})
        assert r.status_code == 403
    after = catalog(ui_copy)
    assert [e.status for e in after["entries"].values()] == ["held", "held"]
    assert after["schemas"] == before["schemas"] and after["actions"] == []


def test_a_release_whose_rows_fail_again_says_the_entry_stays_held(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    entry = entry_of(ui_copy, "rows")
    with client_for(ui_copy) as c:
        r = c.post(
            f"/ui/data/quarantine/{entry}/release",
            data={"by": "ann", "reason": "fixed the parser", "token": TOKEN},
            headers={"hx-request": "true"},
        )
        assert r.status_code == 200
        text = text_of(r.text)
        assert f"{entry} stays held: 1 row checked again, none landed" in text
        assert "unparseable (x1) in 1 row" in text
        assert "released" not in text.replace("stays held", "")
        assert 'class="flash warn"' in r.text
    cat = catalog(ui_copy)
    assert cat["entries"][entry].status == "held"
    (action,) = cat["actions"]
    assert (action["by"], action["reason"], action["action"]) == (
        "ann",
        "fixed the parser",
        "quarantine_release",
    )
    assert action["outcome"]["rows_landed"] == 0 and action["outcome"]["rows_still_held"] == 1


def test_a_release_lands_what_passes_and_says_where(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    head, *rows = (ui_copy / "incoming" / "day-005.csv").read_text().splitlines()
    small = ui_copy / "small.csv"
    small.write_text("\n".join([head] + ["t" + r for r in rows[:40]]) + "\n")
    with Project.open(ui_copy) as p:
        (held,) = p.data.ingest("events", [small], by="producer")
    assert held.status == "held" and held.quarantine_id
    with client_for(ui_copy) as c:
        page = c.get(f"/ui/data/quarantine/{held.quarantine_id}").text
        assert 'name="accept[]" value="row_count"' in page  # it was held for its row count
        r = c.post(
            f"/ui/data/quarantine/{held.quarantine_id}/release",
            data={"by": "ann", "reason": "a short day", "token": TOKEN, "accept[]": "row_count"},
        )
        assert r.status_code == 200
        text = text_of(r.text)
        found = re.search(r"40 landed in batch (b_\w+)", text)
        assert found is not None and "released " + held.quarantine_id in text
        assert c.get(f"/ui/data/batches/{found.group(1)}").status_code == 200
    cat = catalog(ui_copy)
    assert cat["entries"][held.quarantine_id].status == "released"
    assert found.group(1) in cat["batches"]
    (action,) = cat["actions"]
    assert action["outcome"]["rows_landed"] == 40 and action["outcome"]["accepted"] == ["row_count"]


def test_accepting_the_proposal_from_the_page(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(ui_copy) as c:
        r = c.post(
            "/ui/data/sources/events/accept",
            data={"by": "ann", "reason": "the producer renamed x2", "token": TOKEN, "release": "1"},
        )
        assert r.status_code == 200
        text = text_of(r.text)
        assert "events: schema version 2 is now active" in text
        # Both held entries were checked again; neither landed, and the page says why.
        assert text.count("stays held") == 2
        assert "row_count: 50 rows, while the last 20 files held 720 to 720 rows" in text
        page = c.get("/ui/data/sources/events").text
        assert 'id="proposal"' not in page and "version 2 (active since" in text_of(page)
        # Nothing is pending any more: accepting again fails, and the failure is recorded.
        again = c.post(
            "/ui/data/sources/events/accept",
            data={"by": "ann", "reason": "twice", "token": TOKEN},
        )
        assert again.status_code == 400 and "no pending schema change" in text_of(again.text)
    cat = catalog(ui_copy)
    assert cat["schemas"] == {1: "superseded", 2: "active"}
    assert [e.status for e in cat["entries"].values()] == ["held", "held"]
    ok, failed = cat["actions"]
    assert (ok["action"], ok["target"], ok["by"], ok["ok"]) == (
        "schema_accept",
        "source:events",
        "ann",
        True,
    )
    assert ok["outcome"]["version"] == 2 and ok["outcome"]["entries_still_held"] == 2
    assert failed["ok"] is False and failed["reason"] == "twice"


def test_dropping_one_entry(ui_copy: Path, client_for: Callable[..., Any]) -> None:
    entry = entry_of(ui_copy, "rows")
    with client_for(ui_copy) as c:
        r = c.post(
            f"/ui/data/quarantine/{entry}/drop",
            data={"by": "ann", "reason": "a broken sensor", "token": TOKEN},
        )
        assert r.status_code == 200 and f"dropped {entry}: 1 row of events" in text_of(r.text)
        page = c.get(f"/ui/data/quarantine/{entry}").text
        assert "a broken sensor" in page and 'action="/ui/data/quarantine/' not in page
    cat = catalog(ui_copy)
    assert cat["entries"][entry].status == "dropped"
    assert cat["entries"][entry].resolved_by == "ann"


def test_dropping_ticked_entries_in_one_decision(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    ids = list(catalog(ui_copy)["entries"])
    with client_for(ui_copy) as c:
        page = c.get("/ui/data/quarantine").text
        assert sorted(re.findall(r'name="ids\[\]" value="([^"]+)"', page)) == sorted(ids)
        r = c.post(
            "/ui/data/quarantine",
            data={"by": "ann", "reason": "bad week", "token": TOKEN, "op": "drop", "ids[]": ids},
        )
        assert r.status_code == 200
        assert "dropped 2 entries (51 rows), in one decision" in text_of(r.text)
        # Dropped entries cannot be dropped again: all or none, and the refusal is recorded.
        again = c.post(
            "/ui/data/quarantine",
            data={"by": "ann", "reason": "x", "token": TOKEN, "op": "drop", "ids[]": ids[:1]},
        )
        assert again.status_code == 409
        assert "Nothing is held in quarantine" in c.get("/ui/data/quarantine").text
    cat = catalog(ui_copy)
    assert {e.status for e in cat["entries"].values()} == {"dropped"}
    assert {e.resolution["reason"] for e in cat["entries"].values()} == {"bad week"}
    assert [a["ok"] for a in cat["actions"]] == [True, False]
    assert cat["actions"][0]["outcome"]["rows_dropped"] == 51


def test_releasing_every_held_entry_of_a_filter(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(ui_copy) as c:
        r = c.post(
            "/ui/data/quarantine",
            data={
                "by": "ann",
                "reason": "try them all",
                "token": TOKEN,
                "op": "release",
                "scope": "filter",
                "source": "events",
            },
            headers={"hx-request": "true"},
        )
        assert r.status_code == 200
        text = text_of(r.text)
        assert "2 entries checked again: 0 rows landed, 51 rows still held" in text
        assert text.count("stays held") == 2
        nothing = c.post(
            "/ui/data/quarantine",
            data={"by": "ann", "reason": "x", "token": TOKEN, "op": "release"},
        )
        assert nothing.status_code == 422  # nothing ticked
    cat = catalog(ui_copy)
    assert {e.status for e in cat["entries"].values()} == {"held"}
    (action,) = cat["actions"]
    assert action["target"] == "quarantine:every held entry of events"
    assert sorted(action["outcome"]["ids"]) == sorted(cat["entries"])


def test_a_release_of_several_tries_each_and_says_which_failed(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    rows_entry, batch_entry = entry_of(ui_copy, "rows"), entry_of(ui_copy, "batch")
    with Project.open(ui_copy) as p:
        p.data.quarantine.drop(batch_entry, by="bob", reason="a test file")
    form = {"by": "ann", "reason": "again", "token": TOKEN, "op": "release"}
    with client_for(ui_copy) as c:
        r = c.post("/ui/data/quarantine", data={**form, "ids[]": [batch_entry, rows_entry]})
        assert r.status_code == 200
        text = text_of(r.text)
        assert f"{batch_entry}: not released: quarantine entry {batch_entry} is dropped" in text
        assert f"{rows_entry} stays held" in text
        # When every one fails, the action failed, and is recorded so.
        r = c.post("/ui/data/quarantine", data={**form, "ids[]": [batch_entry]})
        assert r.status_code == 409 and "nothing was released" in text_of(r.text)
    first, second = catalog(ui_copy)["actions"]
    assert first["ok"] and first["outcome"]["failed"] == [batch_entry]
    assert not second["ok"]


# ------------------------------------------------------------------------------------ scale


def test_the_lists_read_a_page_of_ten_thousand_batches(
    empty_root: Path, client_for: Callable[..., Any]
) -> None:
    n = 10_000
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with Project.open(empty_root) as p, p.store.write() as conn:
        conn.execute(
            t.sources.insert().values(
                name="clicks", format="csv", declared=False, config={}, created_at=start
            )
        )
        conn.execute(
            t.batches.insert(),
            [
                {
                    "id": f"b_{i:06d}",
                    "source": "clicks",
                    "status": "committed",
                    "content_hash": f"{i:064d}",
                    "file": f"/in/clicks-{i}.csv",
                    "format": "csv",
                    "rows_read": 100,
                    "rows_accepted": 99,
                    "rows_quarantined": 1,
                    "schema_version": 1,
                    "lake_path": f"clicks/_batch=b_{i:06d}/data.parquet",
                    "stats": {},
                    "warnings": [],
                    "origin": {"kind": "file"},
                    "owner": "host|1|1",
                    "started_at": start + timedelta(minutes=i),
                    "committed_at": start + timedelta(minutes=i),
                }
                for i in range(n)
            ],
        )
        conn.execute(
            t.quarantine.insert(),
            [
                {
                    "id": f"q_{i:06d}",
                    "batch_id": f"b_{i:06d}",
                    "source": "clicks",
                    "kind": "rows",
                    "status": "held",
                    "rows": 1,
                    "reasons": [{"code": "unparseable", "column": "x", "count": 1}],
                    "path": f"_quarantine/clicks/b_{i:06d}/rows.parquet",
                    "created_at": start + timedelta(minutes=i),
                }
                for i in range(n)
            ],
        )
    with client_for(empty_root) as c:
        for url, kind, shown in (
            ("/ui/data", "batch", 20),
            ("/ui/data/sources/clicks", "batch", 50),
            ("/ui/data/quarantine", "entry", 50),
        ):
            c.get(url)  # the project opens on the first request
            began = time.perf_counter()
            r = c.get(url)
            took = time.perf_counter() - began
            assert r.status_code == 200
            assert len(ids_in(r.text, kind)) == shown, url
            assert took < 1.0, f"{url}: {took:.2f} s"
        overview = text_of(c.get("/ui/data").text)
        assert "990,000" in overview and "10,000" in overview
        last = c.get("/ui/data/quarantine?before=" + "2026-01-01T00:30:00%2B00:00|q_000030").text
        assert ids_in(last, "entry") == [f"q_{i:06d}" for i in range(29, -1, -1)]


def test_an_entry_whose_rows_are_gone_is_shown_with_the_loss_named(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    with Project.open(ui_copy) as p:
        entry = next(e for e in p.data.quarantine.list(status="held") if e.kind == "rows")
        p.lake_files.delete(entry.path)
    with client_for(ui_copy) as c:
        r = c.get(f"/ui/data/quarantine/{entry.id}")
        assert r.status_code == 200  # the entry's record is whole: only its rows are gone
        assert "missing from the lake" in r.text and entry.path in r.text
