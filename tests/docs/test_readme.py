"""The README is a front door: short, the two commands first, and links that work in a checkout."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_readme_is_short_and_starts_with_the_two_commands() -> None:
    lines = README.splitlines()
    assert len(lines) < 200
    head = "\n".join(lines[:6])
    assert "make demo" in head
    assert "make test" in head


def test_every_link_of_the_readme_stays_in_the_repository_and_exists() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    assert links
    for link in links:
        assert not link.startswith(("http://", "https://", "/", "..")), link
        target = ROOT / link.split("#", 1)[0]
        assert target.exists(), f"README links to {link}, which does not exist"
