"""The dashboard's fixtures: a project with a history (tests/ui_project.py), built once per
worker, copied for tests that act; an empty project; a client over either."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from loopml import Project
from loopml.ui import create_ui_server
from tests.ui_project import build_ui_project

TOKEN = "ui-test-token"


@pytest.fixture(scope="session")
def ui_history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("ui") / "history"
    return root, build_ui_project(root)


@pytest.fixture(scope="session")
def ui_base(ui_history: tuple[Path, dict[str, Any]]) -> Path:
    """The built project's folder: read it, never change it (copy it with ``ui_copy``)."""
    return ui_history[0]


@pytest.fixture
def ui_copy(ui_base: Path, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(ui_base, root)
    return root


@pytest.fixture
def empty_root(tmp_path: Path) -> Path:
    root = tmp_path / "empty"
    Project.init(root, name="empty").close()
    return root


@contextmanager
def _client(root: Path) -> Iterator[TestClient]:
    with TestClient(create_ui_server(root), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def client_for(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``with client_for(root) as c``: a client of the dashboard of the project at ``root``;
    the server's token is :data:`TOKEN` unless ``token=None``."""

    def make(root: Path, *, token: str | None = TOKEN) -> Any:
        if token is None:
            monkeypatch.delenv("LOOPML_TOKEN", raising=False)
        else:
            monkeypatch.setenv("LOOPML_TOKEN", token)
        return _client(root)

    return make


def figure(page: str, div_id: str) -> dict[str, Any]:
    """The Plotly figure a page draws in ``div#div_id`` (a ``div.chart`` holding its JSON)."""
    import html
    import json
    import re

    found = re.search(rf'<div class="chart" id="{re.escape(div_id)}" data-figure="([^"]*)"', page)
    assert found, f"no chart {div_id!r} on the page"
    drawn: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return drawn


def shown(page: str) -> str:
    """What a person reads on a page: the text outside tags and scripts (a chart's data lives
    in an attribute), whitespace collapsed."""
    import html
    import re

    text = re.sub(r"<script.*?</script>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", text)))


RAW_FLOAT = r"\d\.\d{6,}"


def no_raw_floats(page: str) -> None:
    """No number reaches a person unformatted (``2.4236900000147443``)."""
    import re

    found = re.search(RAW_FLOAT, shown(page))
    assert found is None, f"a raw float reached the page: {found.group(0) if found else ''}"


def links(page: str, start: str) -> list[str]:
    """The page's links that start with ``start``, as a browser follows them."""
    import html
    import re

    return [html.unescape(h) for h in re.findall(rf'href="({re.escape(start)}[^"]*)"', page)]
