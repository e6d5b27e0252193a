"""Two real serving workers (``loopml serve --workers 2``) answering an A/B test at once: both
add to the same shared counters, in the metadata store (SQLite) or in Redis, and no request goes
uncounted; a unit stays on its arm whichever worker answers it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopml import Project
from loopml.rollout import Experiments
from tests.conftest import require_service
from tests.e2e._server import free_port, wait_ready
from tests.unit.serving.conftest import SPEC, champion_project, requests_of

pytestmark = pytest.mark.slow

REQUESTS = 600


@pytest.mark.parametrize("counters", ["sqlite", "redis"])
def test_two_workers_count_every_request_of_an_ab_test(
    tmp_path: Path, counters: str, request: pytest.FixtureRequest
) -> None:
    spec = SPEC
    if counters == "redis":
        require_service("Redis", "127.0.0.1", 6379)
        url, prefix = request.getfixturevalue("redis_prefix")
        spec += f"storage:\n  counters: {url}?prefix={prefix}\n"
    project = champion_project(tmp_path / "p", spec=spec)
    second = project.models.train(note="arm").version
    assert second is not None
    r = Experiments(project).start("ab", [1, second.version], unit="tailnum", effect=0.05)
    bodies = requests_of(project, 300, start=4_000)
    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    (tmp_path / "prom").mkdir()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "loopml.cli", "serve"),
            *("--port", str(port), "--workers", "2", "-p", str(tmp_path / "p")),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    answers: list[tuple[dict[str, Any], dict[str, Any]]] = []
    lock = threading.Lock()
    try:
        wait_ready(base, server)
        # Both workers answer (on new connections) before the load starts: on a busy machine the
        # second may still be loading when the first is ready, and would then get no connection.
        seen: set[str] = set()
        deadline = time.time() + 90
        while len(seen) < 2 and time.time() < deadline:
            status = httpx.get(f"{base}/status", timeout=5).json()
            if status.get("ready"):
                seen.add(status["worker"])
        assert len(seen) == 2, f"only worker {seen} became ready"
        time.sleep(1.5)  # both workers have read the experiment (they refresh once a second)

        def load(i: int) -> None:
            with httpx.Client(base_url=base, timeout=10) as c:
                for n in range(i, REQUESTS, 8):
                    body = bodies[n % len(bodies)]
                    got = c.post("/predict", json=body)
                    assert got.status_code == 200, got.text
                    with lock:
                        answers.append((body, got.json()))

        threads = [threading.Thread(target=load, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.terminate()  # each worker flushes its counters on the way out
        server.wait(timeout=30)
    assert len(answers) == REQUESTS
    # Both workers answered (a prediction id carries its worker's tag after the time)...
    assert len({a["id"][14:22] for _, a in answers}) == 2
    # ...each unit stayed on its arm whichever worker answered it...
    arms: dict[str, set[int]] = defaultdict(set)
    for body, a in answers:
        arms[str(body["tailnum"])].add(a["version"])
    assert all(len(v) == 1 for v in arms.values())
    # ...and the shared counters hold every request, per arm.
    with Project.open(tmp_path / "p") as p:
        counts = p.rollouts.counts(r.id)
        assert type(p.rollouts.counters).__name__ == (
            "RedisCounters" if counters == "redis" else "SqlCounters"
        )
    served = {v: sum(a["version"] == v for _, a in answers) for v in (1, second.version)}
    assert {v: counts[v]["requests"].n for v in served} == served
    assert sum(served.values()) == REQUESTS and min(served.values()) > 0
