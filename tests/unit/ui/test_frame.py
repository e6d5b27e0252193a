"""The dashboard's frame: assets, errors as pages, actions behind the token and recorded, the
pages mounted on the serving app, the store's time indexes, the command."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, inspect, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from loopml import Project
from loopml.errors import ConflictError
from loopml.storage import tables as t
from loopml.ui import mount_ui
from loopml.ui._app import build_ui
from loopml.ui._context import UiContext
from loopml.ui._pages._common import form_of
from tests.unit.ui.conftest import TOKEN

pytestmark = pytest.mark.xdist_group("ui")


def test_assets_come_from_the_package(empty_root: Path, client_for: Callable[..., Any]) -> None:
    with client_for(empty_root) as c:
        css = c.get("/ui/static/ui.css")
        assert css.status_code == 200 and "ol.timeline" in css.text and "font:" in css.text
        assert c.get("/ui/static/htmx.min.js").headers["content-type"].startswith("text/javascript")
        plotly = c.get("/ui/static/plotly.min.js")
        assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
        assert c.get("/ui/static/../loopml.yaml").status_code == 404
        page = c.get("/ui/no-such-page")
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        assert "back to the timeline" in page.text


def _acting_app(ctx: UiContext, fail: bool = False) -> FastAPI:
    """A page with one action, as the pages write theirs."""
    app = build_ui(ctx)

    @app.post("/test-action")
    async def act(request: Request) -> Response:
        form = await form_of(request)

        def do(by: str, reason: str) -> dict[str, Any]:
            if fail:
                raise ConflictError("the thing changed meanwhile")
            return {"changed": 1}

        ctx.act(request, form, action="test", target="thing:1", do=do)
        return ctx.render(request, "done.html", message="done", back=None)

    return app


def _actions(root: Path) -> list[dict[str, Any]]:
    with Project.open(root) as p, p.store.read() as conn:
        return [dict(r) for r in conn.execute(select(t.actions)).mappings()]


@pytest.mark.parametrize("fail", [False, True])
def test_an_action_needs_the_token_who_and_why_and_is_recorded(
    empty_root: Path, monkeypatch: pytest.MonkeyPatch, fail: bool
) -> None:
    ctx = UiContext(empty_root)
    form = {"by": "ana", "reason": "the canary looked wrong"}
    with TestClient(_acting_app(ctx, fail), raise_server_exceptions=False) as c:
        monkeypatch.delenv("LOOPML_TOKEN", raising=False)
        r = c.post("/test-action", data={**form, "token": "x"})
        assert r.status_code == 403 and "set LOOPML_TOKEN" in r.text
        monkeypatch.setenv("LOOPML_TOKEN", TOKEN)
        assert c.post("/test-action", data=form).status_code == 401
        assert c.post("/test-action", data={**form, "token": "wrong"}).status_code == 401
        assert _actions(empty_root) == []  # refused requests change nothing
        r = c.post("/test-action", data={"reason": "r", "token": TOKEN})
        assert r.status_code == 422 and "who you are" in r.text
        r = c.post("/test-action", data={"by": "ana", "token": TOKEN})
        assert r.status_code == 422 and "give a reason" in r.text
        r = c.post(
            "/test-action",
            data=form,
            headers={"Authorization": f"Bearer {TOKEN}", "HX-Request": "true"},
        )
        assert r.status_code == (409 if fail else 200)
        assert "<html" not in r.text  # htmx gets the fragment
    ctx.close()
    (row,) = _actions(empty_root)
    assert (row["by"], row["reason"], row["action"], row["target"]) == (
        "ana",
        "the canary looked wrong",
        "test",
        "thing:1",
    )
    assert row["ok"] is (not fail)
    assert row["outcome"] == ({"error": "the thing changed meanwhile"} if fail else {"changed": 1})


def test_the_pages_are_mounted_on_the_serving_app(ui_copy: Path) -> None:
    from loopml.serving import create_app

    app = mount_ui(create_app(ui_copy), ui_copy)
    with TestClient(app) as c:
        assert c.get("/readyz").status_code == 200
        page = c.get("/ui/")
        assert page.status_code == 200 and "What happened" in page.text
        assert c.get("/ui/static/ui.css").status_code == 200
        assert c.get("/healthz").json() == {"status": "ok"}


def test_an_older_store_gets_the_timeline_indexes(tmp_path: Path) -> None:
    root = tmp_path / "p"
    Project.init(root, name="old").close()
    db = next(root.rglob("*.db"))
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_alerts_first_at")
    assert "ix_alerts_first_at" not in {i["name"] for i in inspect(engine).get_indexes("alerts")}
    Project.open(root).close()
    assert "ix_alerts_first_at" in {i["name"] for i in inspect(engine).get_indexes("alerts")}
    engine.dispose()


def test_the_command_is_listed_and_documents_itself(capsys: pytest.CaptureFixture[str]) -> None:
    from loopml.cli import main

    assert main(["--help"]) == 0
    assert "ui" in capsys.readouterr().out
    assert main(["ui", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--port" in text and "token" in text


def test_a_copy_of_the_history_keeps_its_timeline(ui_base: Path, tmp_path: Path) -> None:
    # The fixtures' contract: tests that act work on copies that read the same history.
    root = tmp_path / "copy"
    shutil.copytree(ui_base, root)
    with Project.open(root) as p, p.store.read() as conn:
        assert conn.execute(select(t.loop_events)).first() is not None


def test_a_chart_gives_plotly_times_without_offsets() -> None:
    """plotly.js reads no time-zone offsets: an aware time sent as ``...+00:00`` is not a date to
    it (a time axis of such strings becomes one of categories)."""
    import html
    import json
    import re
    from datetime import UTC, datetime, timedelta, timezone

    import plotly.graph_objects as go

    from loopml.ui._format import chart

    at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    east = at.astimezone(timezone(timedelta(hours=2)))
    fig = go.Figure(go.Scatter(x=[at, east], y=[1, 2]))
    fig.add_vrect(x0=at, x1=east)
    drawn = re.search(r'data-figure="([^"]*)"', chart(fig, "c"))
    assert drawn is not None
    figure = json.loads(html.unescape(drawn.group(1)))
    assert figure["data"][0]["x"] == ["2024-01-02T03:04:05", "2024-01-02T03:04:05"]
    assert figure["layout"]["shapes"][0]["x0"] == "2024-01-02T03:04:05"
