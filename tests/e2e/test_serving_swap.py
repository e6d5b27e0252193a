"""A real server under load while the champion moves: no request fails, the new version takes
over within the watch interval, and a tampered version never gets the alias."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopml.errors import IntegrityError
from tests.e2e._server import served
from tests.unit.serving.conftest import SPEC, champion_project, requests_of

pytestmark = pytest.mark.slow


def test_swap_under_load_loses_no_request(tmp_path: Path) -> None:
    spec = SPEC.replace("  mode: dynamic\n", "  mode: dynamic\n  watch_interval: 200ms\n")
    project = champion_project(tmp_path / "p", spec=spec)
    second = project.models.train(note="second").version
    assert second is not None
    bodies = requests_of(project, 200, start=15_000)
    with served(tmp_path / "p") as (base, _):
        statuses: Counter[int] = Counter()
        versions: Counter[Any] = Counter()
        stop = threading.Event()

        def load(i: int) -> None:
            with httpx.Client(base_url=base, timeout=10) as c:
                n = i
                while not stop.is_set():
                    r = c.post("/predict", json=bodies[n % len(bodies)])
                    statuses[r.status_code] += 1
                    if r.status_code == 200:
                        versions[r.json()["version"]] += 1
                    n += 8

        threads = [threading.Thread(target=load, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        project.models.promote(second.version, force=True, reason="swap under load")
        time.sleep(3.0)
        # A version whose artifact was changed after registration never gets the alias, forced
        # or not (the workers' own refusal of one changed after its promotion is in
        # tests/unit/serving/test_holder.py).
        third = project.models.train(note="third").version
        assert third is not None
        digest = third.files["model.txt"]
        blob = Path(project.artifacts.files.path(f"sha256/{digest[:2]}/{digest}"))
        blob.write_bytes(blob.read_bytes().replace(b"tree", b"TREE", 1))
        with pytest.raises(IntegrityError, match=r"model\.txt"):
            project.models.promote(third.version, force=True, reason="tampered on purpose")
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        status = httpx.get(f"{base}/status").json()
    total = sum(statuses.values())
    assert statuses == Counter({200: total}), statuses  # zero failed requests
    assert total > 1000
    assert versions[1] > 0 and versions[second.version] > 0 and versions.get(third.version, 0) == 0
    assert status["serving"]["version"] == second.version
    assert status["serving"]["failure"] is None and not status["serving"]["fallback"]
