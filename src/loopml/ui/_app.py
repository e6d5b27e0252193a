"""The dashboard's app: server-rendered pages (Jinja2), htmx for interaction, Plotly for charts,
every asset served from the package (no CDN, no front-end build).

The pages live under ``/ui`` both ways the dashboard runs: ``loopml ui`` serves them alone (``/``
redirects there), and ``loopml serve`` mounts them beside ``/predict``
(:func:`serving_with_ui_from_env`). This module is a composition root: it opens the project.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from loopml import _htmlkit as kit
from loopml.errors import LoopmlError
from loopml.ui._context import PREFIX, ActionRefused, UiContext
from loopml.ui._pages import ROUTERS

if TYPE_CHECKING:
    from loopml._project import Project

STATIC = {
    "ui.js": ("loopml.ui", "static/ui.js", "text/javascript"),
    "htmx.min.js": ("loopml.ui", "static/htmx.min.js", "text/javascript"),
    # Plotly's cartesian bundle (scatter, bar, heatmap...: every chart the pages draw), the same
    # plotly.js release as the plotly package's full one but a third of its size: the browser
    # parses 1.5 MB instead of 4.8 MB before a page with a chart has loaded. MIT, from npm's
    # plotly.js-cartesian-dist-min (static/plotly-cartesian.LICENSE).
    "plotly.min.js": ("loopml.ui", "static/plotly-cartesian.min.js", "text/javascript"),
}
CACHE = {"Cache-Control": "public, max-age=3600"}


def build_ui(ctx: UiContext) -> FastAPI:
    """The dashboard's pages, to mount at ``/ui``."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, title="loopml dashboard")
    app.state.ui = ctx

    async def error_page(request: Request, exc: Exception) -> Response:
        status, message = _status(exc)
        return ctx.render(request, "error.html", status=status, status_code=status, message=message)

    for kind in (LoopmlError, HTTPException, Exception):
        app.add_exception_handler(kind, error_page)

    css = kit.CSS + importlib.resources.files("loopml.ui").joinpath("static/ui.css").read_text()

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name == "ui.css":  # the reports' stylesheet, then the dashboard's own rules
            return Response(css, media_type="text/css", headers=CACHE)
        found = STATIC.get(name)
        if found is None:
            raise HTTPException(404, f"no asset {name!r}")
        package, path, media = found
        file = importlib.resources.files(package).joinpath(path)
        return FileResponse(str(file), media_type=media, headers=CACHE)

    for router in ROUTERS:
        app.include_router(router)
    return app


def _status(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, ActionRefused):
        return exc.status, exc.message
    if isinstance(exc, HTTPException):
        return exc.status_code, str(exc.detail)
    from loopml.serving import classify

    answer = classify(exc)
    return answer.status, answer.message


def create_ui_server(
    project: str | Path | None = None, *, opened: Project | None = None
) -> FastAPI:
    """``loopml ui``: the dashboard alone, for the project at ``project`` (or
    ``$LOOPML_PROJECT``), or around a project the caller opened (and closes)."""
    ctx = UiContext(project, project=opened)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ctx.close()

    root = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    root.state.ui = ctx

    @root.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    root.mount(PREFIX, build_ui(ctx))
    return root


def mount_ui(app: Any, project: str | Path | None = None) -> Any:
    """Mount the dashboard at ``/ui`` on the serving app ``app`` (the ASGI app
    :func:`loopml.serving.create_app` returns); its project closes when the app stops."""
    inner = getattr(app, "app", app)  # serving's fast path wraps the FastAPI app
    ctx = UiContext(project)
    ctx.live = _runtime_reader(inner)
    inner.mount(PREFIX, build_ui(ctx))
    serving_lifespan = inner.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        try:
            async with serving_lifespan(a) as state:
                yield state
        finally:
            ctx.close()

    inner.router.lifespan_context = lifespan
    return app


def _runtime_reader(app: Any) -> Callable[[], tuple[bytes, dict[str, Any]]]:
    """The serving runtime's metrics text and status, read in process (the serving page's live
    numbers); the runtime is the app's once its lifespan has started it."""

    def live() -> tuple[bytes, dict[str, Any]]:
        rt = getattr(app.state, "rt", None)
        if rt is None:
            raise RuntimeError("the serving runtime has not started")
        rt.refresh_gauges()
        return rt.metrics.exposition(), rt.status()

    return live


def serving_with_ui_from_env() -> Any:
    """The factory ``loopml serve`` gives uvicorn: the serving app with the dashboard at
    ``/ui`` (``LOOPML_PROJECT`` names the project)."""
    from loopml.serving import create_app

    root = os.environ.get("LOOPML_PROJECT", ".")
    return mount_ui(create_app(root), root)


def ui_from_env() -> FastAPI:
    """The factory ``loopml ui`` gives uvicorn."""
    return create_ui_server()
