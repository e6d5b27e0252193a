"""The model holder when a version fails to load: the failure is retried (with backoff, and at
once on an explicit check such as ``/admin/reload``) so a restored artifact is served; a worker
whose champion cannot be loaded serves the last good champion it can load and says exactly why;
with nothing loadable it says which version, which file and which check failed."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loopml import Project
from loopml.registry import ModelVersion
from loopml.serving import ModelHolder, Runtime, create_app
from tests.unit.serving.conftest import champion_project, requests_of


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose champion is version 1, with a second good version registered."""
    root = tmp_path_factory.mktemp("holder") / "p"
    p = champion_project(root)
    assert p.models.train(note="second").version is not None
    p.close()
    return root


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Iterator[Project]:
    """A private copy of the template (the tests move aliases and change artifacts)."""
    shutil.copytree(template, tmp_path / "p")
    p = Project.open(tmp_path / "p")
    yield p
    p.close()


def tamper(project: Project, mv: ModelVersion, name: str = "model.txt") -> Callable[[], None]:
    """Change one byte of a stored file of ``mv``; returns the function that restores it."""
    digest = mv.files[name]
    blob = Path(project.artifacts.files.path(f"sha256/{digest[:2]}/{digest}"))
    original = blob.read_bytes()
    blob.write_bytes(original.replace(b"tree", b"TREE", 1))
    assert blob.read_bytes() != original
    return lambda: blob.write_bytes(original)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def holder_of(project: Project, clock: Clock | None = None, **options: Any) -> ModelHolder:
    return ModelHolder(
        project.models, lambda: None, interval=2.0, clock=clock or Clock(), **options
    )


def test_a_failed_version_is_retried_with_backoff_and_at_once_on_reload(
    project: Project,
) -> None:
    clock = Clock()
    holder = holder_of(project, clock)
    assert holder.check() and holder.current is not None and holder.current.number == 1
    v2 = project.models.get(2)
    project.models.promote(2, force=True, reason="hotfix")
    restore = tamper(project, v2)  # changed after its promotion: the worker finds out on load
    assert not holder.check()
    assert holder.current.number == 1  # the previous version keeps answering
    status = holder.status()
    failure = status["failure"]
    assert failure["version"] == 2 and failure["file"] == "model.txt"
    assert failure["check"] == "sha256" and failure["attempts"] == 1
    assert status["alias_version"] == 2 and status["version"] == 1 and status["fallback"]
    assert "flights_delay:2" in status["last_error"] and "'model.txt'" in status["last_error"]
    assert "serving flights_delay:1" in status["last_error"]
    # The watch waits for the backoff before loading the same bytes again ...
    assert not holder.poll() and holder.status()["failure"]["attempts"] == 1
    clock.now += 2.0
    assert not holder.poll() and holder.status()["failure"]["attempts"] == 2
    clock.now += 2.0
    assert not holder.poll() and holder.status()["failure"]["attempts"] == 2  # now 4 s
    assert holder.status()["failure"]["retry_in_s"] == pytest.approx(2.0)
    clock.now += 2.0
    assert not holder.poll() and holder.status()["failure"]["attempts"] == 3
    # ... and once the artifact is restored, the next retry serves it.
    restore()
    assert not holder.poll()  # still inside its backoff
    clock.now += 8.0
    assert holder.poll() and holder.current.number == 2
    status = holder.status()
    assert status["failure"] is None and status["last_error"] is None and not status["fallback"]
    # An explicit check (what /admin/reload does) retries at once, backoff or not.
    project.models.rollback(reason="back")
    v1 = project.models.get(1)
    restore = tamper(project, v1)
    assert not holder.check() and holder.status()["failure"]["version"] == 1
    restore()
    assert holder.check() and holder.current.number == 1


def test_the_backoff_is_capped(project: Project) -> None:
    clock = Clock()
    holder = holder_of(project, clock, max_backoff=5.0)
    holder.check()
    project.models.promote(2, force=True, reason="hotfix")
    tamper(project, project.models.get(2))
    holder.check()
    for attempts in range(2, 7):
        clock.now += 5.0
        holder.poll()
        assert holder.status()["failure"]["attempts"] == attempts


def test_a_restarted_worker_serves_the_last_good_champion(project: Project) -> None:
    project.models.promote(2, force=True, reason="hotfix")
    tamper(project, project.models.get(2))
    holder = holder_of(project)  # a new worker: it never loaded anything
    assert holder.check()
    assert holder.current is not None and holder.current.number == 1
    status = holder.status()
    assert status["fallback"] and status["alias_version"] == 2 and status["version"] == 1
    assert status["failure"]["file"] == "model.txt" and status["failure"]["check"] == "sha256"
    assert "serving flights_delay:1, the champion before it" in status["last_error"]


def test_a_challenger_never_falls_back(project: Project) -> None:
    project.models.promote(2, "challenger", reason="canary")
    project.models.promote(1, "challenger", reason="canary")
    tamper(project, project.models.get(1))
    holder = holder_of(project, alias="challenger", fallback=False)
    assert not holder.check() and holder.current is None
    assert holder.status()["failure"]["version"] == 1


def test_nothing_loadable_says_which_version_file_and_check(project: Project) -> None:
    v1 = project.models.get(1)
    Path(
        project.artifacts.files.path(
            f"sha256/{v1.files['model.json'][:2]}/{v1.files['model.json']}"
        )
    ).unlink()
    holder = holder_of(project)
    assert not holder.check() and holder.current is None
    failure = holder.status()["failure"]
    assert (failure["version"], failure["file"], failure["check"]) == (1, "model.json", "exists")
    reason = holder.unavailable()
    assert "flights_delay:1" in reason and "'model.json'" in reason and "missing" in reason
    assert "no other version of flights_delay held 'champion'" in reason


def test_a_worker_with_a_tampered_champion_over_http(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's case: a champion tampered after its promotion, then the worker restarts."""
    monkeypatch.setenv("LOOPML_TOKEN", "s3cret")
    body = requests_of(project, 1, start=20_000)[0]
    project.models.promote(2, force=True, reason="hotfix")
    restore = tamper(project, project.models.get(2))
    with TestClient(create_app(runtime=Runtime(project))) as c:
        assert c.get("/readyz").status_code == 200
        r = c.post("/predict", json=body)
        assert r.status_code == 200 and r.json()["version"] == 1
        serving = c.get("/status").json()["serving"]
        assert serving["fallback"] and serving["failure"]["file"] == "model.txt"
        assert "loopml_model_fallback 1.0" in c.get("/metrics").text
        restore()
        auth = {"authorization": "Bearer s3cret"}
        r = c.post("/admin/reload", headers=auth)
        assert r.status_code == 200 and r.json()["swapped"] and r.json()["version"] == 2
        assert c.post("/predict", json=body).json()["version"] == 2
        serving = c.get("/status").json()["serving"]
        assert not serving["fallback"] and serving["failure"] is None
        assert "loopml_model_fallback 0.0" in c.get("/metrics").text


def test_every_route_answers_why_nothing_is_served(project: Project) -> None:
    """With nothing loadable, /predict, /rank and the Open Inference Protocol answer 503 with the
    holder's reason (which version, which file, which check), not "no version holds the alias"."""
    v1 = project.models.get(1)
    blob = v1.files["model.json"]
    Path(project.artifacts.files.path(f"sha256/{blob[:2]}/{blob}")).unlink()
    body = requests_of(project, 1, start=20_000)[0]
    with TestClient(create_app(runtime=Runtime(project))) as c:
        answers = [
            c.post("/predict", json=body),
            c.post("/rank", json={"context": {}, "candidates": [body]}),
            c.post(
                "/v2/models/flights_delay/infer",
                json={"inputs": [{"name": k, "shape": [1], "datatype": "BYTES", "data": [v]}
                                 for k, v in body.items() if isinstance(v, str)]},
            ),
        ]  # fmt: skip
    for r in answers:
        assert r.status_code == 503, r.text
        text = r.text
        assert "flights_delay:1" in text and "model.json" in text, text
        assert "holds the alias" not in text
