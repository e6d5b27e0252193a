"""Serving and experiments: the serving page (the spec, a running server's live numbers read in
process on ``loopml serve``, over HTTP with ``loopml ui --serving``, or none), the list of
rollouts and experiments (filters, keyset pages), a canary's page (steps, decisions with their
numbers and reasons), and the experiments' pages: an A/B test's always-valid interval as it
narrowed, a bandit's shares and P(best), an interleaving's wins."""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from starlette.testclient import TestClient

from loopml import Project
from loopml.errors import UsageError
from loopml.rollout import Experiments, Rollout
from loopml.serving import Runtime, create_app
from loopml.serving._metrics import ServingMetrics
from loopml.ui._app import mount_ui
from loopml.ui._pages import _live
from tests.unit.ui.conftest import no_raw_floats, shown

pytestmark = pytest.mark.xdist_group("ui")


# ------------------------------------------------------------------------------ the serving page


ADVICE = {
    "model": "stream_model",
    "version": 4,
    "key": ["c"],
    "source": "the prediction log",
    "requests": 2000,
    "peakedness": {
        "requests": 2000,
        "keys": 4,
        "unkeyed": 0,
        "unique_share": 0.002,
        "top_share": {"1": 0.2612345678, "10": 1.0, "100": 1.0, "1000": 1.0},
        "gini": 0.0412345678,
        "keys_for": {"50%": 2, "90%": 4, "99%": 4},
    },
    "universe": {"keys": 4, "recent_keys": 4, "coverage": 1.0, "counted": "the lake"},
    "storage": {
        "keys_precomputed": 4,
        "bytes_precomputed": 2345,
        "seconds": 0.0123456,
        "bytes_per_key": 586.25,
        "universe_bytes": 2345,
        "universe_seconds": 0.0123456,
        "extrapolated": False,
    },
    "compute": {
        "sample": 200,
        "median_us": 812.3456789,
        "p99_us": 2456.789123,
        "cpu_seconds_per_1000": 0.8123456,
    },
    "latency": {
        "dynamic": {
            "mode": "dynamic",
            "requests": 2000,
            "median_us": 812.3456789,
            "p99_us": 2456.789123,
            "mean_us": 901.2345678,
            "static_share": 0.0,
            "fallbacks": 0,
        },
        "static": {
            "mode": "static",
            "requests": 2000,
            "median_us": 95.4321987,
            "p99_us": 301.2345678,
            "mean_us": 110.9876543,
            "static_share": 1.0,
            "fallbacks": 0,
        },
    },
    "static_coverage": 1.0,
    "divergence": 0.3123456,
    "static_vs_dynamic": {
        "compared": 2000,
        "mean_abs": 0.3123456,
        "max_abs": 0.8123456,
        "spread": 0.3523456,
        "relative": 0.8864123,
        "decisions_changed": 0.4123456,
    },
    "hybrid_vs_dynamic": None,
    "dynamic_flags": {},
    "hybrid": {
        "head": 4,
        "chosen_by": "the rule",
        "head_needed": 2,
        "head_share": 1.0,
        "head_share_of_sample": 1.0,
        "hit_rate": 0.9987654,
    },
    "recommendation": {
        "mode": "dynamic",
        "reasons": ["a table's answers are 89% of the way off the model's"],
        "notes": [],
        "rule": {},
    },
    "feature_cache_s": 0.0,
    "seconds": 3.21,
}


def test_the_serving_page_shows_the_latest_advice(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    from datetime import UTC, datetime

    from loopml.serving import Advice, save_advice

    with client_for(ui_copy) as c:
        assert "Not measured yet" in shown(c.get("/ui/serving").text)
    save_advice(Advice.from_dict(ADVICE), ui_copy, at=datetime(2026, 12, 7, 9, 30, tzinfo=UTC))
    with client_for(ui_copy) as c:
        r = c.get("/ui/serving")
        assert r.status_code == 200
        text = shown(r.text)
        assert "Measured 2026-12-07 09:30 UTC on 2,000 requests" in text
        assert "recommends dynamic" in text
        assert "100% of requests on the 10 most requested keys" in text  # peakedness
        assert "Gini 0.0412" in text
        assert "4 keys in the universe (4 recent)" in text  # cardinality
        assert "99.9% static hit rate of a hybrid head of 4 keys" in text
        assert "dynamic 2,000 812 µs 2.46 ms" in text and "static 2,000 95.4 µs 301 µs" in text
        assert "41.2% of decisions differ" in text
        assert "2.35 kB" in text  # sizes with units
        no_raw_floats(r.text)


def test_the_serving_page_without_a_server_says_how_to_connect_one(
    ui_base: Path, empty_root: Path, client_for: Callable[..., Any], monkeypatch: Any
) -> None:
    monkeypatch.delenv("LOOPML_SERVING", raising=False)
    for root in (ui_base, empty_root):
        with client_for(root) as c:
            r = c.get("/ui/serving")
            assert r.status_code == 200
            text = shown(r.text)
            assert "No server is connected" in text and "loopml ui --serving" in text
            assert "loopml advise-serving" in text  # the advisor's numbers: how to get them
            assert 'hx-trigger="every 5s"' in r.text
            no_raw_floats(r.text)
    with client_for(ui_base) as c:
        text = shown(c.get("/ui/serving").text)
        assert "mode dynamic" in text and "LOOPML_TOKEN" in text
        assert "none (the model always answers)" in text  # no latency budget in this spec
        assert "fallback the training prior (the default value)" in text
        assert "ui-test-token" not in text  # the token's name, never its value


def test_the_serving_page_shows_the_budget_and_the_fallback_with_units(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    spec = ui_copy / "loopml.yaml"
    spec.write_text(
        spec.read_text()
        + "serving:\n  latency_budget: 50ms\n  fallback: {kind: default, value: 0.25}\n"
        + "  breaker: {failures: 3, cooldown: 30s}\n  token_env: MY_TOKEN\n"
    )
    with client_for(ui_copy) as c:
        text = shown(c.get("/ui/serving").text)
    assert "latency budget 50 ms: later, the fallback answers" in text
    assert "fallback the value 0.25" in text
    assert "opens after 3 consecutive failures, for 30 s" in text
    assert "MY_TOKEN" in text


def _stop_active(p: Project) -> None:
    active = p.rollouts.active(p.models.name)
    if active is not None:
        p.rollouts.end(active, "stopped", at=datetime.now(UTC), reason="the tests make room")


def _bodies(p: Project, n: int) -> list[dict[str, Any]]:
    request = p.features.feature_set.request
    rows = p.features.build(labelled_only=False).table.slice(0, n).to_pylist()
    return [
        {k: (r[k].isoformat() if isinstance(r[k], datetime) else r[k]) for k in request}
        for r in rows
    ]


def test_live_numbers_are_read_in_process_on_loopml_serve(
    ui_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([100.0, 110.0, 120.0])
    monkeypatch.setattr(_live, "CLOCK", lambda: next(clock))
    with Project.open(ui_copy) as p:
        _stop_active(p)
        bodies = _bodies(p, 30)
        app = mount_ui(create_app(runtime=Runtime(p)), ui_copy)
        with TestClient(app) as c:
            for b in bodies[:10]:
                assert c.post("/predict", json=b).status_code == 200
            first = c.get("/ui/serving")
            assert first.status_code == 200
            text = shown(first.text)
            assert "rate after the next refresh" in text
            assert "10 requests, 0 errors" in text  # since the server started
            assert "version served (alias champion → 4)" in text
            assert re.search(r"median latency .*?\d (µs|ms)", text)
            for b in bodies[10:30]:
                assert c.post("/predict", json=b).status_code == 200
            assert c.post("/predict", json={"nothing": 1}).status_code == 422
            # htmx asks for the live panel alone: the page's frame is not sent again
            again = c.get("/ui/serving/live", headers={"hx-request": "true"})
            assert again.status_code == 200 and "<nav" not in again.text
            text = shown(again.text)
            assert "2/s requests per second, over the last 10 s" in text  # 20 in 10 s
            assert "30 requests, 1 errors" in text
            assert "422 " in text  # the error by status
            no_raw_floats(again.text)


class _FakeServer:
    """A server's /metrics (from a real ServingMetrics) and /status, over HTTP."""

    def __init__(self) -> None:
        self.metrics = ServingMetrics()
        self.status: dict[str, Any] = {
            "ready": True,
            "model": "m",
            "mode": "dynamic",
            "serving": {"alias": "champion", "alias_version": 7, "version": 7},
            "breaker_open": False,
            "log": {"written": 5, "dropped": 0, "queued": 0},
            "uptime_s": 42.0,
        }
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body, kind = fake.metrics.exposition(), "text/plain"
                else:
                    body, kind = json.dumps(fake.status).encode(), "application/json"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def answer(self, n: int, seconds: float, *, fallbacks: int = 0, version: str = "7") -> None:
        m = self.metrics
        m.version.labels("m").set(int(version))
        for i in range(n):
            m.requests.labels("predict", "dynamic", version).inc()
            m.latency.labels("dynamic", version).observe(seconds)
            if i < fallbacks:
                m.fallbacks.labels("budget").inc()


@pytest.fixture
def fake_server() -> Iterator[_FakeServer]:
    server = _FakeServer()
    server.thread.start()
    yield server
    server.http.shutdown()
    server.http.server_close()


def test_live_numbers_are_read_over_http_with_rates_between_readings(
    ui_base: Path,
    client_for: Callable[..., Any],
    fake_server: _FakeServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([50.0, 60.0])
    monkeypatch.setattr(_live, "CLOCK", lambda: next(clock))
    monkeypatch.setenv("LOOPML_SERVING", fake_server.url)
    fake_server.answer(100, 0.0015)
    with client_for(ui_base) as c:
        text = shown(c.get("/ui/serving").text)
        assert f"from {fake_server.url}" in text
        assert "rate after the next refresh" in text and "100 requests" in text
        fake_server.answer(50, 0.03, fallbacks=10)  # 50 more in 10 s, slower, 10 fell back
        fake_server.metrics.errors.labels("503", "unavailable").inc(2)
        fake_server.metrics.breaker_open.set(1)
        r = c.get("/ui/serving/live", headers={"hx-request": "true"})
        text = shown(r.text)
        assert "5/s requests per second, over the last 10 s" in text
        # the readings' difference: the 50 requests between them, all in the 20-50 ms bucket
        median = re.search(r"(\S+) (µs|ms) median latency \(since the last reading\)", text)
        assert median is not None and median.group(2) == "ms"
        assert 20 <= float(median.group(1)) <= 50
        assert "20% answered by the fallback (10 of 50, since the last reading)" in text
        assert "budget: 10" in text and "503 unavailable: 2" in text
        assert "open circuit breaker" in text
        assert "150 requests, 2 errors" in text
        no_raw_floats(r.text)
    fake_server.http.shutdown()
    fake_server.http.server_close()
    with client_for(ui_base) as c:  # a server that does not answer is not zero traffic
        r = c.get("/ui/serving")
        assert r.status_code == 200
        text = shown(r.text)
        assert f"The server at {fake_server.url} does not answer" in text
        assert "unknown, not zero" in text and "requests per second" not in text


def test_the_ui_command_passes_the_serving_address(
    ui_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from loopml.cli import main

    started: list[str | None] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append(_env("LOOPML_SERVING")))
    monkeypatch.setattr("loopml.cli.ui._announce", lambda *a, **k: None)
    for name in ("LOOPML_SERVING", "LOOPML_PROJECT"):  # the command sets them: undone after
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    assert main(["ui", "--serving", "http://127.0.0.1:8000", "-p", str(ui_base)]) == 0
    assert started == ["http://127.0.0.1:8000"]
    assert main(["ui", "--serving", "127.0.0.1:8000", "-p", str(ui_base)]) != 0
    assert started == ["http://127.0.0.1:8000"]  # refused before starting


def _env(name: str) -> str | None:
    import os

    return os.environ.get(name)


# ---------------------------------------------------------------------------------- the list


def test_the_list_pages_filters_and_links(
    ui_base: Path, empty_root: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(empty_root) as c:
        r = c.get("/ui/experiments")
        assert r.status_code == 200 and "No rollout or experiment yet" in r.text
        missing = c.get("/ui/experiments/1")
        assert missing.status_code == 404 and "no rollout or experiment 1" in missing.text
        live = c.get("/ui/serving/live", headers={"hx-request": "true"})
        assert live.status_code == 200 and "No server is connected" in live.text
    with client_for(ui_base) as c:
        r = c.get("/ui/experiments")
        assert r.status_code == 200
        no_raw_floats(r.text)
        ids = re.findall(r'href="/ui/experiments/(\d+)"', r.text)
        assert ids == ["4", "3", "2", "1"]  # newest first
        for i in ids:
            assert c.get(f"/ui/experiments/{i}").status_code == 200
        text = shown(r.text)
        assert "20% (step 1 of 3)" in text  # the active canary's share now
        assert "worse with confidence" in text  # why the first one was rolled back
        # keyset pages: one a page, "older" carries the cursor and the filters
        seen = []
        url: str | None = "/ui/experiments?limit=1"
        while url:
            page = c.get(html.unescape(url))
            assert page.status_code == 200
            seen += re.findall(r'<td><a href="/ui/experiments/(\d+)"', page.text)
            found = re.search(r'<a href="([^"]+)" rel="next"', page.text)
            url = found.group(1) if found else None
        assert seen == ["4", "3", "2", "1"]
        active = c.get("/ui/experiments?status=active")
        assert re.findall(r'<td><a href="/ui/experiments/(\d+)"', active.text) == ["4"]
        rolled = c.get("/ui/experiments?status=rolled_back&limit=1")
        assert re.findall(r'<td><a href="/ui/experiments/(\d+)"', rolled.text) == ["2"]
        nxt = re.search(r'<a href="([^"]+)" rel="next"', rolled.text)
        assert nxt is not None and "status=rolled_back" in html.unescape(nxt.group(1))
        none = c.get("/ui/experiments?strategy=ab")
        assert "No rollout or experiment matches these filters" in none.text


def test_the_timeline_links_to_the_rollout_pages(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(ui_base) as c:
        timeline = c.get("/ui/?kind=experiments&limit=500").text
        links = set(re.findall(r'href="(/ui/experiments/\d+)"', timeline))
        assert links
        for link in links:
            assert c.get(link).status_code == 200


def test_a_canary_page_shows_its_steps_and_the_numbers_of_its_decisions(
    ui_base: Path, client_for: Callable[..., Any]
) -> None:
    with client_for(ui_base) as c:
        r = c.get("/ui/experiments/2")
        assert r.status_code == 200
        no_raw_floats(r.text)
        text = shown(r.text)
        assert "Canary 2 of stream_model: version 3 against 1" in text
        assert "step 2: 50% of requests — rolled back here" in text
        assert "undecided after 4d" in text
        # each decision with its numbers: the means, the difference and its interval
        assert "advance (not worse)" in text and "rollback (undecided)" in text
        assert "−0.024" in text and "−0.052 to +0.00406" in text
        assert 'id="decision-0"' in r.text and 'id="decisions-2"' in r.text  # the chart
        assert "2,986" in text and "59.2%" in text  # the champion's requests and share
        active = shown(c.get("/ui/experiments/4").text)
        assert "step 1: 20% of requests — now" in active
        missing = c.get("/ui/experiments/999")
        assert missing.status_code == 404 and "no rollout or experiment 999" in missing.text
        assert c.get("/ui/experiments/1/analysis").status_code == 200


# ------------------------------------------------------------------------------ experiments


def _log(
    p: Project,
    r: Rollout,
    version: int,
    rows: pa.Table,
    tag: str,
    *,
    of: list[str] | None = None,
    propensity: float | None = None,
) -> tuple[list[str], np.ndarray]:
    """Log ``version``'s answers to ``rows`` as the experiment's; their ids and decisions. The
    rows' event ids are dropped: labels come by prediction id alone, from the feedback sent."""
    model = p.models.load(version)
    scores = np.asarray(model.predict(rows), dtype=float)
    ids = [f"{tag}-{version}-{i}" for i in range(rows.num_rows)]
    p.monitoring.log_scored(
        rows,
        scores,
        version=version,
        ids=ids,
        features=model.encoding.features,
        rollout=r.id,
        of=of,
        propensity=None if propensity is None else [propensity] * rows.num_rows,
    )
    threshold = p.monitoring.profile(p.registry.get(p.models.name, version)).threshold
    return ids, (scores >= (0.5 if threshold is None else threshold)).astype(int)


def _rows(p: Project, n: int) -> pa.Table:
    return p.features.build().table.slice(0, n).drop_columns(["id"])


def _feed(
    p: Project, r: Rollout, accuracy: dict[int, float], *, batches: int, per_batch: int
) -> None:
    """Answers split evenly between the arms, each arm right at its ``accuracy``; the labels
    sent batch by batch, so that they become known one batch after another."""
    rng = np.random.default_rng(7)
    rows = _rows(p, batches * per_batch)
    for b in range(batches):
        part = rows.slice(b * per_batch, per_batch)
        feedback = []
        for k, version in enumerate(r.arms):
            mine = part.filter(pa.array(np.arange(part.num_rows) % len(r.arms) == k))
            ids, decided = _log(p, r, version, mine, f"b{b}", propensity=1 / len(r.arms))
            right = rng.random(len(ids)) < accuracy[version]
            feedback += [
                {"prediction_id": i, "label": int(d if ok else 1 - d)}
                for i, d, ok in zip(ids, decided, right, strict=True)
            ]
        assert p.monitoring.feedback(feedback)["accepted"] == len(feedback)
    p.monitoring.land()


def test_an_ab_test_shows_its_always_valid_interval_narrowing(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    with Project.open(ui_copy) as p:
        _stop_active(p)
        ex = Experiments(p)
        r = ex.start("ab", [1, 3], effect=0.05, by="tests")
        _feed(p, r, {1: 0.6, 3: 0.8}, batches=4, per_batch=300)
        looks = ex.looks(r, points=6)
        now = ex.evaluate(r, record=False, land=False)
        with pytest.raises(UsageError, match="is a canary, not an A/B test"):
            ex.looks(2)
    # the looks are cut-offs of the same outcomes: the last one is the comparison now
    assert [lk["labelled"] for lk in looks] == [200, 400, 600, 800, 1000, 1200]
    last = looks[-1]["arms"][0]
    assert last["low"] == pytest.approx(now["arms"][0]["low"])
    assert last["high"] == pytest.approx(now["arms"][0]["high"])
    widths = [a["high"] - a["low"] for lk in looks for a in lk["arms"] if a["low"] is not None]
    assert len(widths) >= 4 and widths[-1] < widths[0] / 1.5  # it narrows as outcomes come
    with client_for(ui_copy) as c:
        page = c.get(f"/ui/experiments/{r.id}")
        assert page.status_code == 200
        no_raw_floats(page.text)
        text = shown(page.text)
        assert f"A/B test {r.id} of stream_model: versions 1 vs 3" in text
        assert "units needed per arm" in text and "No analysis has been recorded yet" in text
        assert f'hx-get="/ui/experiments/{r.id}/analysis"' in page.text
        panel = c.get(f"/ui/experiments/{r.id}/analysis", headers={"hx-request": "true"})
        assert panel.status_code == 200 and "<nav" not in panel.text
        assert f'id="narrowing-{r.id}"' in panel.text  # the chart
        no_raw_floats(panel.text)
        text = shown(panel.text)
        low = f"{last['low']:+.3g}".replace("-", "−")
        assert low in text  # the interval now, formatted
        assert "1,200" in text and re.search(r"winner\s*: version 3", text)
        # once a look is recorded (the loop, `loopml rollout status`), the page shows it at once
        with Project.open(ui_copy) as p:
            Experiments(p).evaluate(r.id)
        text = shown(c.get(f"/ui/experiments/{r.id}").text)
        assert "Last recorded analysis" in text and re.search(r"winner\s*: version 3", text)
        listed = shown(c.get("/ui/experiments?strategy=ab").text)
        assert "A/B test" in listed and "winner: version 3" in listed


def test_a_bandit_shows_each_arms_share_and_probability_of_being_best(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    with Project.open(ui_copy) as p:
        _stop_active(p)
        ex = Experiments(p)
        r = ex.start("bandit", [1, 3], policy="thompson", by="tests")
        _feed(p, r, {1: 0.3, 3: 0.9}, batches=2, per_batch=200)
        p.rollouts.add_counts(r.id, {(1, "requests"): _count(150), (3, "requests"): _count(250)})
        result = ex.evaluate(r)  # recorded: what the page shows at once
    detail = {a["version"]: a for a in result["arms_detail"]}
    assert detail[3]["probability_best"] > 0.95
    with client_for(ui_copy) as c:
        page = c.get(f"/ui/experiments/{r.id}")
        assert page.status_code == 200
        no_raw_floats(page.text)
        text = shown(page.text)
        assert "thompson" in text and "only its rewards per arm" in text
        assert "37.5%" in text and "62.5%" in text  # the requests each arm answered
        panel = c.get(f"/ui/experiments/{r.id}/analysis")
        assert panel.status_code == 200
        no_raw_floats(panel.text)
        text = shown(panel.text)
        assert "P(best)" in text and "400 labelled" in text
        best = f"{100 * detail[3]['probability_best']:.3g}%"
        worst = f"{100 * detail[1]['probability_best']:.3g}%"
        assert re.search(rf"\b3 \S+% {re.escape(best)} 200 ", text)  # version 3's row
        assert re.search(rf"\b1 \S+% {re.escape(worst)} 200 ", text)


def _count(n: float) -> Any:
    from loopml.storage import Counter

    return Counter(n, n, n)


def test_an_interleaving_shows_the_wins_of_each_ranker(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    with Project.open(ui_copy) as p:
        _stop_active(p)
        ex = Experiments(p)
        r = ex.start("interleave", [1, 3], k=4, by="tests")
        rows = _rows(p, 120)
        clicks = []
        for ranking in range(30):  # 30 rankings of 4 items, 2 from each ranker
            part = rows.slice(ranking * 4, 4)
            of = [f"rank-{ranking}"] * 2
            for k, version in enumerate(r.arms):
                ids, _ = _log(p, r, version, part.slice(2 * k, 2), f"r{ranking}", of=of)
                # users click version 3's items in 24 rankings, version 1's in 6
                wanted = 3 if ranking < 24 else 1
                clicks += [{"prediction_id": i, "label": int(version == wanted)} for i in ids]
        p.monitoring.feedback(clicks)
        p.monitoring.land()
        result = ex.evaluate(r, record=False, land=False)
    assert (result["wins_a"], result["wins_b"]) == (6, 24)
    with client_for(ui_copy) as c:
        assert c.get(f"/ui/experiments/{r.id}").status_code == 200
        panel = c.get(f"/ui/experiments/{r.id}/analysis")
        assert panel.status_code == 200
        no_raw_floats(panel.text)
        text = shown(panel.text)
        assert "version 1 6 20%" in text and "version 3 24 80%" in text
        assert "Sign test" in text


def test_numbers_in_the_libraries_sentences_are_shortened_and_times_kept() -> None:
    from loopml.ui._pages.experiments import prose, shown

    said = prose(
        "difference +0.1233 (interval +0.03763 to +0.209), p = 0.000463 <= 0.05; "
        "extra loss at most -1.1982, at 2024-01-01T00:00:00.123456"
    )
    assert said == (
        "difference +0.123 (interval +0.0376 to +0.209), p = 0.00046 <= 0.05; "
        "extra loss at most -1.2, at 2024-01-01T00:00:00.123456"
    )
    assert shown({"a": [0.004057321, 12345.678], "reasons": ["p = 0.1234567"]}) == {
        "a": [0.00406, 12346.0],
        "reasons": ["p = 0.123"],
    }


# ------------------------------------------------------------------------------------ actions


def _actions(root: Path) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from loopml.storage import tables as t

    with Project.open(root) as p, p.store.read() as conn:
        return [dict(r) for r in conn.execute(select(t.actions)).mappings()]


def test_stopping_a_canary_needs_the_token_and_is_recorded(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    form = {"by": "ana", "reason": "the challenger looks wrong"}
    with client_for(ui_copy) as c:
        page = c.get("/ui/experiments/4")
        assert 'action="/ui/experiments/4/stop"' in page.text
        assert 'action="/ui/experiments/4/promote"' not in page.text  # a canary's judge promotes
        refused = c.post("/ui/experiments/4/stop", data={**form, "token": "wrong"})
        assert refused.status_code == 401
    with client_for(ui_copy, token=None) as c:
        assert c.post("/ui/experiments/4/stop", data={**form, "token": "x"}).status_code == 403
    with Project.open(ui_copy) as p:
        assert p.rollouts.get(4).active  # nothing changed
    assert _actions(ui_copy) == []
    with client_for(ui_copy) as c:
        done = c.post("/ui/experiments/4/stop", data={**form, "token": "ui-test-token"})
        assert done.status_code == 200 and "canary 4 stopped" in done.text
        again = c.post("/ui/experiments/4/stop", data={**form, "token": "ui-test-token"})
        assert again.status_code == 409 and "already ended" in again.text
        page = shown(c.get("/ui/experiments/4").text)
        assert "stopped: the challenger looks wrong (by ana)" in page and "Stop canary" not in page
    with Project.open(ui_copy) as p:
        assert p.rollouts.get(4).status == "stopped"
        assert "challenger" not in p.registry.aliases(p.models.name)
    recorded = _actions(ui_copy)
    assert [(a["action"], a["by"], a["reason"], a["ok"]) for a in recorded] == [
        ("rollout.stop", "ana", "the challenger looks wrong", True),
        ("rollout.stop", "ana", "the challenger looks wrong", False),
    ]


def test_promoting_an_experiments_winner_moves_the_champion(
    ui_copy: Path, client_for: Callable[..., Any]
) -> None:
    with Project.open(ui_copy) as p:
        _stop_active(p)
        r = Experiments(p).start("ab", [1, 3], effect=0.05, by="tests")
        _feed(p, r, {1: 0.6, 3: 0.8}, batches=2, per_batch=400)
    form = {"by": "ana", "reason": "version 3 wins", "version": "winner"}
    with client_for(ui_copy) as c:
        assert c.post(f"/ui/experiments/{r.id}/promote", data=form).status_code == 401
        with Project.open(ui_copy) as p:
            assert p.registry.aliases(p.models.name)["champion"] == 4
        done = c.post(f"/ui/experiments/{r.id}/promote", data={**form, "token": "ui-test-token"})
        assert done.status_code == 200, done.text
        assert "version 3 is the champion (was 4)" in done.text
    with Project.open(ui_copy) as p:
        assert p.registry.aliases(p.models.name)["champion"] == 3
        assert p.rollouts.get(r.id).status == "promoted"
    (action,) = _actions(ui_copy)
    assert action["action"] == "experiment.promote" and action["by"] == "ana"
    assert action["outcome"]["promoted"] == 3 and action["target"] == f"rollout:{r.id}"


def test_percentiles_come_from_the_histogram_and_a_restart_is_not_a_negative_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([0.0, 5.0, 10.0])
    monkeypatch.setattr(_live, "CLOCK", lambda: next(clock))
    metrics = ServingMetrics()
    for seconds in [0.0001] * 60 + [0.0015] * 40:  # 60 under 0.5 ms, 40 in the 1-2 ms bucket
        metrics.requests.labels("predict", "dynamic", "1").inc()
        metrics.latency.labels("dynamic", "1").observe(seconds)
    readings: dict[str, Any] = {}
    live = _live.read(lambda: (metrics.exposition(), {}), None, readings)
    w = live.since_start
    assert w is not None and live.recent is None  # one reading: no rate yet
    assert w.first_bucket_us == 500 and w.p50_us is not None and w.p50_us < 500
    assert w.p95_us == pytest.approx(1000 + 1000 * (95 - 60) / 40)  # interpolated in 1-2 ms
    restarted = ServingMetrics()  # the server restarted: its counters began again
    restarted.requests.labels("predict", "dynamic", "1").inc(3)
    live = _live.read(lambda: (restarted.exposition(), {}), None, readings)
    assert live.recent is None and live.since_start is not None
    assert live.since_start.requests == 3
    restarted.requests.labels("predict", "dynamic", "1").inc(10)
    live = _live.read(lambda: (restarted.exposition(), {}), None, readings)
    assert live.recent is not None and live.recent.rate == pytest.approx(2.0)  # 10 in 5 s
