"""The dashboard in a real browser (Debian's chromium through Playwright) against a real
`loopml ui`: every page of the nav renders its heading, with no error page and no script error,
and loads in under a second, on the history project (tests/ui_project.py) and on an empty one;
the timeline's filters work through htmx; an action needs the token and is recorded; every page
is kept as a screenshot under build/test-artifacts/dashboard/.

Skips without chromium, unless LOOPML_REQUIRE_SERVICES=1 (then it fails).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from loopml import Project
from loopml.storage import tables as t
from loopml.ui._context import NAV
from tests.e2e._browser import ARTIFACTS, Problems, chromium, dashboard, load_ms
from tests.ui_project import build_ui_project

pytestmark = [pytest.mark.xdist_group("ui_browser"), pytest.mark.browser, pytest.mark.slow]

TOKEN = "browser-test-token"
LOAD_LIMIT_MS = 1000.0


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Path:
    """The project with a history, built once for the module: read it, never change it."""
    root = tmp_path_factory.mktemp("ui_browser") / "history"
    build_ui_project(root)
    return root


@pytest.fixture(scope="module")
def history_url(history: Path) -> Iterator[str]:
    with dashboard(history, token=TOKEN) as base:
        yield base


@pytest.fixture(scope="module")
def empty_url(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[str]:
    root = tmp_path_factory.mktemp("ui_browser") / "empty"
    Project.init(root, name="empty").close()
    with dashboard(root, token=TOKEN) as base:
        yield base


@pytest.fixture
def copy(history: Path, tmp_path: Path) -> Path:
    """A copy of the history project, for a test that acts on it."""
    root = tmp_path / "project"
    shutil.copytree(history, root)
    return root


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    p = context.new_page()
    p.set_default_timeout(15_000)
    yield p
    context.close()


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_no_error_page(page: Any, where: str) -> None:
    assert page.locator("section.error").count() == 0, (
        f"{where} shows an error page: {page.locator('main').inner_text()[:300]}"
    )


def open_page(page: Any, url: str) -> Any:
    response = page.goto(url, wait_until="load")
    assert response is not None
    return response


# ------------------------------------------------------------------ (a) every page renders


@pytest.mark.parametrize("which", ["history", "empty"])
def test_every_page_of_the_nav_renders_in_under_a_second(
    which: str, page: Any, request: pytest.FixtureRequest
) -> None:
    base = request.getfixturevalue(f"{which}_url")
    problems = Problems(page)
    open_page(page, f"{base}/ui/")
    # The nav the browser shows is the one the frame declares, in order.
    shown = page.eval_on_selector_all(
        "header.top nav a", "links => links.map(a => a.getAttribute('href'))"
    )
    assert shown == [href for _, _, href in NAV]
    timings = {}
    fragments: list[str] = []
    for key, label, href in NAV:
        response = open_page(page, f"{base}{href}")
        assert response.status == 200, f"{href} answered {response.status}"
        assert_no_error_page(page, href)
        heading = page.locator("main h1").first
        assert heading.is_visible() and heading.inner_text().strip(), f"{href} has no heading"
        here = page.locator("header.top nav a.here")
        if not page.get_by_text("This page is being built.").count():  # placeholders aside
            assert here.count() == 1 and here.inner_text().strip() == label, href
        timings[href] = load_ms(page)
        shot(page, f"{which}-{key}")
        assert problems.take() == [], f"{href}: the browser saw problems"
        if href == "/ui/loop" and which == "history":  # its next step is loaded after it
            fragments.append(f"{base}{urlsplit(page.url).path}/next")
    # A fragment the browser gave up on when the test left its page (the loop page's next
    # step, loaded after the page) must still answer when asked for; the loop's, always.
    for url in dict.fromkeys([*fragments, *problems.take_aborted()]):
        answer = httpx.get(url, headers={"HX-Request": "true"}, timeout=10)
        assert answer.status_code == 200, (
            f"{url} (aborted by the browser) answered {answer.status_code}"
        )
    slow = {href: ms for href, ms in timings.items() if ms >= LOAD_LIMIT_MS}
    assert not slow, f"load event over {LOAD_LIMIT_MS:.0f} ms: {slow} (all: {timings})"


def test_the_timeline_lines_up_its_columns(history_url: str, page: Any) -> None:
    """Every entry's title starts in the same column, whether or not it names a model (an entry
    of the data has none), and reads on one line at 1280 px."""
    open_page(page, f"{history_url}/ui/?limit=500")
    boxes = page.eval_on_selector_all(
        "ol.timeline li.entry",
        """items => items.map(li => {
            const a = li.querySelector('a.title').getBoundingClientRect();
            return [li.querySelector('.model') !== null, Math.round(a.left), Math.round(a.width)];
        })""",
    )
    assert {has for has, _, _ in boxes} == {True, False}, "entries with and without a model"
    lefts = {left for _, left, _ in boxes}
    assert len(lefts) == 1, f"titles start at {sorted(lefts)} px"
    assert min(width for _, _, width in boxes) > 0


def test_the_timeline_at_the_readme_size(history_url: str, page: Any) -> None:
    """The timeline as the README shows it (1280×800, the first screen): the loop's story."""
    open_page(page, f"{history_url}/ui/?kind=loop&kind=monitoring")
    assert page.locator("ol.timeline li.entry").count() > 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "timeline-1280x800.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000


def test_every_link_of_the_timeline_leads_to_a_page(history_url: str, page: Any) -> None:
    """Each entry's evidence link, followed in the browser: a page, not an error."""
    open_page(page, f"{history_url}/ui/?limit=500")
    links = page.eval_on_selector_all(
        "ol.timeline a.title", "links => links.map(a => a.getAttribute('href'))"
    )
    assert links
    broken = []
    for path in sorted({link.split("#")[0] for link in links}):
        response = open_page(page, f"{history_url}{path}")
        if response.status != 200 or page.locator("section.error").count():
            broken.append(f"{path} ({response.status})")
    assert not broken, f"the timeline links to error pages: {broken}"


# ------------------------------------------------------------------- (b) the timeline's filters


def entry_kinds(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        "ol.timeline li.entry", "items => items.map(li => li.className)"
    )


def test_ticking_a_kind_filters_the_timeline_through_htmx(history_url: str, page: Any) -> None:
    open_page(page, f"{history_url}/ui/")
    before = entry_kinds(page)
    assert any("group-loop" not in c for c in before), "the history holds more than the loop"
    # A marker on the window: a full page load would drop it, an htmx swap keeps it.
    page.evaluate("() => { window.__stillHere = true }")
    page.locator("label.chip input[value='loop']").check()
    with page.expect_response(lambda r: "kind=loop" in r.url) as answer:
        page.locator("form.filters button[type=submit]").click()
    assert answer.value.request.headers.get("hx-request") == "true"
    page.wait_for_function(
        "() => [...document.querySelectorAll('ol.timeline li.entry')]"
        ".every(li => li.classList.contains('group-loop'))"
    )
    after = entry_kinds(page)
    assert after and after != before
    assert all("group-loop" in c for c in after)
    assert page.evaluate("() => window.__stillHere === true"), "the page was reloaded, not swapped"
    # The address carries the filter: reloading it shows the same list.
    assert parse_qs(urlsplit(page.url).query).get("kind") == ["loop"]
    open_page(page, page.url)
    assert entry_kinds(page) == after
    assert page.locator("label.chip input[value='loop']").is_checked()


@pytest.mark.parametrize(
    ("query", "per_page"),
    [
        ("", 50),
        ("kind=loop&limit=5", 5),
    ],
)
def test_older_pages_go_to_the_oldest_entry_once_each(
    history_url: str, page: Any, query: str, per_page: int
) -> None:
    open_page(page, f"{history_url}/ui/?{query}")
    kinds = parse_qs(query).get("kind", [])
    counts = page.eval_on_selector_all(
        "label.chip .count", "cs => cs.map(c => [c.dataset.group, c.textContent])"
    )
    total = sum(int(n.replace(",", "")) for g, n in counts if not kinds or g in kinds)
    assert total > per_page, "the history fills more than a page"
    seen: list[str] = []
    times: list[str] = []
    sizes: list[int] = []
    while True:
        links = page.eval_on_selector_all(
            "ol.timeline a.title", "links => links.map(a => a.getAttribute('href'))"
        )
        sizes.append(len(links))
        seen += links
        times += page.eval_on_selector_all(
            "ol.timeline time", "ts => ts.map(t => t.getAttribute('datetime'))"
        )
        if kinds:
            assert all(f"group-{kinds[0]}" in c for c in entry_kinds(page))
        older = page.locator(".pager a[rel=next]")
        if older.count() == 0:
            assert "the oldest" in page.locator(".pager").inner_text()
            break
        older.click()
        page.wait_for_load_state("load")
        carried = parse_qs(urlsplit(page.url).query)
        assert carried.get("cursor"), page.url
        assert all(carried.get(k) == v for k, v in parse_qs(query).items()), page.url
        assert len(sizes) < 50
    # Full pages of per_page, then the rest; every entry once, newest first.
    assert sizes[:-1] == [per_page] * (len(sizes) - 1) and 0 < sizes[-1] <= per_page, sizes
    assert len(times) == total
    assert times == sorted(times, reverse=True)
    assert len(seen) == total  # (links repeat: alerts and rollouts link twice to one page)
    page.locator(".pager a", has_text="newest").click()
    page.wait_for_load_state("load")
    assert "cursor" not in page.url


def test_a_refused_htmx_request_shows_why(history_url: str, page: Any) -> None:
    """A request htmx sends and the server refuses (4xx) shows the refusal where the answer
    would have gone: htmx 2 swaps nothing on an error status unless configured to."""
    open_page(page, f"{history_url}/ui/")
    page.evaluate("() => htmx.ajax('GET', '/ui/?since=yesterday', '#timeline')")
    flash = page.locator("#timeline .flash.bad")
    flash.wait_for()
    assert "422" in flash.inner_text() and "is not a time" in flash.inner_text()


# --------------------------------------------------------------------------- (c) actions


def actions_rows(root: Path) -> list[dict[str, Any]]:
    with Project.open(root) as p, p.store.read() as conn:
        query = select(t.actions).order_by(t.actions.c.id)
        return [dict(r) for r in conn.execute(query).mappings()]


def submit_action(page: Any, form: Any, *, by: str, reason: str, token: str | None) -> str:
    """Fill the action form's who/why (and token), submit it, and return what the page shows
    in the form's result."""
    form.locator("input[name=by]").fill(by)
    form.locator("input[name=reason]").fill(reason)
    form.locator("input[name=token]").fill(token or "")
    result = form.locator("xpath=following-sibling::div[contains(@class,'result')][1]")
    result.evaluate("el => { el.innerHTML = '' }")  # what an earlier submit showed
    with page.expect_response(lambda r: r.request.method == "POST"):
        form.locator("button[type=submit]").click()
    result.locator("*").first.wait_for()
    return str(result.inner_text())


def test_an_action_appears_on_the_actions_page_and_the_timeline(copy: Path, page: Any) -> None:
    """What the dashboard records of an action (here through its context, as every action
    route does) is on the actions page at its anchor, and on the timeline linked to it."""
    from starlette.requests import Request

    from loopml.ui._context import UiContext

    ctx = UiContext(copy, token_env="BROWSER_TEST_TOKEN")
    scope = {"type": "http", "headers": [(b"authorization", f"Bearer {TOKEN}".encode())]}
    mp = pytest.MonkeyPatch()
    mp.setenv("BROWSER_TEST_TOKEN", TOKEN)
    try:
        record = ctx.act(
            Request(scope),
            {"by": "ana", "reason": "checking the audit trail"},
            action="note",
            target="project",
            do=lambda by, reason: {"rows": 1234567},
        )
    finally:
        mp.undo()
        ctx.close()
    with dashboard(copy, token=TOKEN) as base:
        open_page(page, f"{base}/ui/?kind=actions")
        link = page.locator("ol.timeline a.title").first
        assert "ana: note project: checking the audit trail" in link.inner_text()
        link.click()
        page.wait_for_load_state("load")
        assert page.url.endswith(f"/ui/actions#action-{record['id']}")
        row = page.locator(f"tr#action-{record['id']}")
        assert (
            row.is_visible()
            and page.evaluate("() => document.querySelector(':target')?.id")
            == f"action-{record['id']}"
        )
        assert "1,234,567" in row.inner_text() and "ana" in row.inner_text()
        shot(page, "actions-recorded")


def champion(root: Path, model: str) -> int | None:
    with Project.open(root) as p:
        return p.registry.aliases(model).get("champion")


def test_a_rollback_through_the_served_page_needs_the_token(copy: Path, page: Any) -> None:
    with Project.open(copy) as p:
        model = p.models.name
        was = p.registry.aliases(model)["champion"]
        newer = max(v.version for v in p.registry.versions(model))
        # So there is something to roll back to: a newer version arrives as champion.
        p.registry.promote(model, newer, by="test", reason="a champion to roll back", force=True)
    with dashboard(copy, token=TOKEN) as base:
        open_page(page, f"{base}/ui/served/{model}")
        assert_no_error_page(page, f"/ui/served/{model}")
        form = page.locator("form.action[action*='rollback']").first
        shown = submit_action(page, form, by="ana", reason="the new one is worse", token=None)
        assert "401" in shown or "token" in shown.lower()
        assert champion(copy, model) == newer and actions_rows(copy) == []
        shown = submit_action(page, form, by="ana", reason="the new one is worse", token=TOKEN)
        assert "401" not in shown
        assert champion(copy, model) == was
        [row] = actions_rows(copy)
        assert (row["by"], row["reason"], row["ok"]) == ("ana", "the new one is worse", True)
        with Project.open(copy) as p:
            last = p.registry.history(model, "champion")[-1]
        assert (last.action, last.by, last.to_version) == ("rollback", "ana", was)
        # The timeline says so, linked to the move on the served page.
        open_page(page, f"{base}/ui/?kind=models")
        entry = page.locator("ol.timeline li[data-kind='rollback'] a.title").first
        assert f"/ui/served/{model}#move-" in str(entry.get_attribute("href"))
        shot(page, "served-rolled-back")


def test_a_quarantine_release_and_drop_through_the_data_page_need_the_token(
    copy: Path, page: Any
) -> None:
    with Project.open(copy) as p:
        held = [e for e in p.data.quarantine.list(status="held") if e.kind == "rows"]
    assert held, "the history holds quarantined rows"
    entry = held[0]

    def status() -> str:
        with Project.open(copy) as p:
            return str(p.data.quarantine.show(entry.id).entry.status)

    with dashboard(copy, token=TOKEN) as base:
        open_page(page, f"{base}/ui/data/quarantine/{entry.id}")
        assert_no_error_page(page, f"/ui/data/quarantine/{entry.id}")
        release = page.locator("form.action[action*='release']").first
        drop = page.locator("form.action[action*='drop']").first
        shown = submit_action(page, release, by="bo", reason="the rows are fine", token="wrong")
        assert "401" in shown or "token" in shown.lower()
        shown = submit_action(page, drop, by="bo", reason="bad rows", token=None)
        assert "401" in shown or "token" in shown.lower()
        assert status() == "held" and actions_rows(copy) == []
        # Released with the token: validated again (this row still fails, so it stays held,
        # as the page says); recorded either way.
        submit_action(page, release, by="bo", reason="the rows are fine", token=TOKEN)
        [row] = actions_rows(copy)
        assert (row["by"], row["reason"]) == ("bo", "the rows are fine")
        assert entry.id in row["target"]
        # Dropped with the token: gone from the held rows, recorded.
        shown = submit_action(page, drop, by="bo", reason="bad rows", token=TOKEN)
        assert "401" not in shown
        assert status() == "dropped"
        rows = actions_rows(copy)
        assert len(rows) == 2 and (rows[1]["by"], rows[1]["reason"], rows[1]["ok"]) == (
            "bo",
            "bad rows",
            True,
        )
        open_page(page, f"{base}/ui/actions")
        assert "bad rows" in page.locator(f"tr#action-{rows[1]['id']}").inner_text()
        open_page(page, f"{base}/ui/?kind=data")
        dropped = page.locator("ol.timeline li[data-kind='quarantine_dropped'] a.title").first
        assert dropped.get_attribute("href") == f"/ui/data/quarantine/{entry.id}"
        shot(page, "data-quarantine-dropped")


def test_the_evidence_chain_from_an_alert_to_the_promotion_it_led_to_and_its_rollback(
    copy: Path, page: Any
) -> None:
    """Alert 1 links to the batches it was computed over and to the loop cycle it triggered
    (cycle 4); the cycle to the version it promoted (version 4, the champion); the version to
    who served what, where the champion is rolled back with the token (4 back to 1); the
    timeline then shows the rollback, linked to its move on the served page."""
    with Project.open(copy) as p:
        model = p.models.name
        assert p.registry.aliases(model)["champion"] == 4
    with dashboard(copy, token=TOKEN) as base:
        open_page(page, f"{base}/ui/monitoring/alerts/1")
        assert_no_error_page(page, "/ui/monitoring/alerts/1")
        shot(page, "monitoring-alert-1")
        # a batch that fed the alert
        batches = page.locator("main a[href^='/ui/data/batches/']")
        assert batches.count() >= 1
        batch_href = batches.first.get_attribute("href")
        batches.first.click()
        page.wait_for_load_state("load")
        assert urlsplit(page.url).path == batch_href
        assert_no_error_page(page, str(batch_href))
        page.go_back()
        page.wait_for_load_state("load")
        # the cycle it triggered: cycle 4, which promoted version 4
        cycles = page.locator(f"main a[href^='/ui/loop/{model}/cycles/']")
        assert cycles.count() >= 1
        cycle_href = f"/ui/loop/{model}/cycles/4"
        assert {cycles.nth(i).get_attribute("href") for i in range(cycles.count())} == {cycle_href}
        cycles.first.click()
        page.wait_for_load_state("load")
        assert urlsplit(page.url).path == cycle_href
        assert_no_error_page(page, cycle_href)
        main = page.locator("main").inner_text()
        assert "promoted version 4" in main and "alert decay" in main
        shot(page, "loop-cycle-4")
        version_href = f"/ui/models/{model}/versions/4"
        page.locator(f"main a[href='{version_href}']").first.click()
        page.wait_for_load_state("load")
        assert urlsplit(page.url).path == version_href
        assert_no_error_page(page, version_href)
        assert "champion" in page.locator("main").inner_text()
        # who served what, and the rollback there
        served_href = f"/ui/served/{model}"
        page.locator(f"main a[href='{served_href}']").first.click()
        page.wait_for_load_state("load")
        assert urlsplit(page.url).path == served_href
        assert_no_error_page(page, served_href)
        form = page.locator("form.action[action*='rollback']").first
        alias = form.locator("select[name=alias]")
        alias.select_option("champion")
        assert "champion (v4 → v1)" in alias.locator("option:checked").inner_text()
        shown = submit_action(page, form, by="ana", reason="version 4 misbehaves", token=TOKEN)
        assert "401" not in shown and "version 4" in shown and "version 1" in shown, shown
        assert champion(copy, model) == 1
        [row] = actions_rows(copy)
        assert (row["action"], row["by"], row["reason"], row["ok"]) == (
            "rollback",
            "ana",
            "version 4 misbehaves",
            True,
        )
        with Project.open(copy) as p:
            last = p.registry.history(model, "champion")[-1]
        assert (last.action, last.by, last.from_version, last.to_version) == (
            "rollback",
            "ana",
            4,
            1,
        )
        # the timeline shows the rollback, linked to its move on the served page
        open_page(page, f"{base}/ui/?kind=models")
        entry = page.locator("ol.timeline li[data-kind='rollback'] a.title").first
        move_href = f"/ui/served/{model}#move-{last.id}"
        assert entry.get_attribute("href") == move_href
        entry.click()
        page.wait_for_load_state("load")
        assert urlsplit(page.url).path == served_href
        assert urlsplit(page.url).fragment == f"move-{last.id}"
        row_text = page.locator(f"tr#move-{last.id}").inner_text()
        assert "rollback" in row_text and "ana" in row_text, row_text
        shot(page, "served-rolled-back-from-the-alert")


# ------------------------------------------------------------------- without a browser


def test_without_chromium_the_tests_skip_unless_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.e2e import _browser

    monkeypatch.setattr(_browser, "chromium_path", lambda: None)
    monkeypatch.delenv("LOOPML_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium is not installed"):  # noqa: SIM117
        with _browser.chromium():
            pass
    monkeypatch.setenv("LOOPML_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="LOOPML_REQUIRE_SERVICES=1 requires it"):  # noqa: SIM117
        with _browser.chromium():
            pass
