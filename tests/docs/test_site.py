"""The documentation site builds with `mkdocs build --strict` (no broken link, anchor or page),
offline, and its generated references cover every command and every spec section."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail("the docs need MkDocs: pip install -e '.[docs]' (make test installs it)")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    seconds = time.perf_counter() - started
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-6000:]}"
    print(f"mkdocs build --strict: {seconds:.1f} s")
    return out


def test_the_site_builds_strict_and_fast(site: Path) -> None:
    assert (site / "index.html").exists()
    assert (site / "tutorial" / "index.html").exists()


def test_the_pages_load_nothing_from_the_network(site: Path) -> None:
    remote = re.compile(r"""<(?:link|script|img)[^>]+(?:href|src)=["']https?://""")
    for page in site.rglob("*.html"):
        match = remote.search(page.read_text())
        assert match is None, f"{page.relative_to(site)} loads {match.group(0)!r}"


def _command_paths() -> list[str]:
    import typer

    from loopml.cli import app

    root = typer.main.get_command(app)
    paths: list[str] = []

    def walk(group: object, ctx: object, path: str) -> None:
        for name in group.list_commands(ctx):  # type: ignore[attr-defined]
            command = group.get_command(ctx, name)  # type: ignore[attr-defined]
            if command is None or command.hidden:
                continue
            paths.append(f"{path} {name}")
            if hasattr(command, "list_commands"):
                walk(
                    command,
                    command.context_class(command, info_name=name, parent=ctx),
                    f"{path} {name}",
                )

    walk(root, root.context_class(root, info_name="loopml"), "loopml")
    return paths


def test_the_cli_reference_has_every_command_and_option(site: Path) -> None:
    html = (site / "reference" / "cli" / "index.html").read_text()
    paths = _command_paths()
    assert len(paths) > 40
    for path in paths:
        anchor = 'id="' + path.replace(" ", "-") + '"'
        assert anchor in html, f"the CLI reference has no section for `{path}`"
    for option in ("--as-of", "--warm-start", "--report", "--strategy", "--fixed"):
        assert option in html


def test_the_spec_reference_has_every_section(site: Path) -> None:
    from loopml.spec import ProjectSpec

    html = (site / "reference" / "spec" / "index.html").read_text()
    for name in ("sources", "checks", "not_before", "row_count_ratio", "backtest", "triggers"):
        assert f"<code>{name}</code>" in html, name
    assert 'id="projectspec"' in html
    # A number's type shows its range, as the spec's errors say it.
    assert "auto, 0 or number from 1 to 1,000,000" in html  # checks.row_count_ratio
    assert "duration greater than 0s and at most 36525d" in html
    for field in ProjectSpec.model_fields:
        assert f"<code>{field}</code>" in html


def test_the_python_reference_documents_the_public_api(site: Path) -> None:
    html = (site / "reference" / "python" / "project" / "index.html").read_text()
    assert "loopml.Project" in html
    data = (site / "reference" / "python" / "data" / "index.html").read_text()
    assert 'id="loopml.data.Data"' in data
