"""Crash safety: an ingest killed with SIGKILL at any point leaves the lake and the metadata
consistent, and running the ingest again lands every row exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from loopml import Project
from tests.conftest import flights_lines

SPEC = """\
project: crash
sources:
  flights:
    format: csv
    timestamp: time_hour
    primary_key: [time_hour, carrier, flight]
    schema:
      columns:
        distance: {min: 1, max: 6000}
"""
FILES = 8
ROWS = 3000
RUNNER = """
import sys
from loopml import Project
project = Project.open(sys.argv[1])
print("ready", flush=True)
project.data.ingest("flights", sys.argv[2:])
print("done", flush=True)
"""


def make_files(folder: Path) -> list[Path]:
    """Weekly-sized files of real flights, each with a few bad rows (so quarantine is written)."""
    head, body = flights_lines()[0], flights_lines()[1:]
    paths = []
    for i in range(FILES):
        rows = list(body[i * ROWS : (i + 1) * ROWS])
        for j in (7, 70, 700):
            f = rows[j].split(",")
            f[15] = "-1"  # distance below the declared minimum
            rows[j] = ",".join(f)
        path = folder / f"part-{i}.csv"
        path.write_text("\n".join([head, *rows]) + "\n")
        paths.append(path)
    return paths


def new_project(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "loopml.yaml").write_text(SPEC)
    return root


def check_consistent(root: Path) -> None:
    """What must hold after any crash, once recovery has run."""
    with Project.open(root) as p:
        p.data.recover()
        assert not p.data.batches("flights", status="pending")
        committed = p.data.batches("flights")
        lake = Path(p.lake_files.base)
        folders = {d.name.removeprefix("_batch=") for d in (lake / "flights").glob("_batch=*")}
        assert folders == {b.id for b in committed if b.lake_path}, "orphan or missing lake files"
        quarantined = {d.name for d in (lake / "_quarantine" / "flights").glob("b_*")}
        assert quarantined == {b.id for b in committed if b.rows_quarantined}
        assert not [f for f in lake.rglob("*") if f.name.startswith(".tmp-")], (
            "temporary files left"
        )
        for b in committed:
            assert b.rows_read == b.rows_accepted + b.rows_quarantined  # type: ignore[operator]
            if b.lake_path:
                assert pq.read_metadata(lake / b.lake_path).num_rows == b.rows_accepted
        hashes = [b.content_hash for b in committed]
        assert len(hashes) == len(set(hashes))


def check_exactly_once(root: Path, files: list[Path]) -> None:
    with Project.open(root) as p:
        p.data.ingest("flights", files)  # finish whatever the crash interrupted
        committed = p.data.batches("flights")
        assert len(committed) == FILES
        totals = p.data.query(
            "SELECT count(*) AS n, count(DISTINCT (time_hour, carrier, flight)) AS keys "
            "FROM flights"
        ).to_pylist()[0]
        entries = p.data.quarantine.list(source="flights")
        q_rows = sum(pq.read_metadata(Path(p.lake_files.base) / e.path).num_rows for e in entries)
    assert totals["n"] == totals["keys"] == FILES * (ROWS - 3)
    assert q_rows == FILES * 3
    assert sum(b.rows_accepted for b in committed) + q_rows == FILES * ROWS  # type: ignore[misc]


def spawn(
    root: Path, files: list[Path], env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(root), *map(str, files)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parents[3],
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_files(tmp_path_factory.mktemp("crash-files"))


@pytest.mark.parametrize(
    "point",
    [
        "ingest.claimed",
        "ingest.locked",
        "ingest.lake_written",
        "ingest.quarantine_written",
        "ingest.before_commit",
        "ingest.committed",
    ],
)
def test_killed_at_each_step(tmp_path: Path, files: list[Path], point: str) -> None:
    root = new_project(tmp_path / "p")
    proc = spawn(root, files, env={"LOOPML_FAULT": point})
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    check_consistent(root)
    check_exactly_once(root, files)


@pytest.mark.slow
def test_killed_at_random_points(tmp_path: Path, files: list[Path]) -> None:
    rng = random.Random(20261123)
    # How long the ingest itself takes here, once the interpreter has started.
    probe = new_project(tmp_path / "probe")
    proc = spawn(probe, files)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    proc.wait(timeout=120)
    duration = time.perf_counter() - start
    killed = trials = 0
    while killed < 24 and trials < 60:
        root = new_project(tmp_path / f"t{trials}")
        trials += 1
        proc = spawn(root, files)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, duration))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        if proc.returncode == -signal.SIGKILL:
            killed += 1
        else:  # it finished first: the machine is faster now than when probed
            duration *= 0.8
        check_consistent(root)
        check_exactly_once(root, files)
    assert killed >= 24, f"only {killed} of {trials} runs were killed before finishing"
