"""``/docs``: Swagger UI served by this server from local assets, so that the page works offline
(FastAPI's default loads its script and style from a CDN).

The assets are Swagger UI 5's bundle as packaged by ``fastapi-offline`` (MIT; Swagger UI is
Apache-2.0), a dependency of loopml; only its files are used, not its app factory.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import Response

from loopml.serving._errors import HttpError

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}
PREFIX = "/docs/assets"


def _asset(name: str) -> bytes:
    try:
        return (resources.files("fastapi_offline") / "static" / name).read_bytes()
    except ModuleNotFoundError:
        raise HttpError(
            404,
            "no_docs_assets",
            "the docs' assets are not installed: pip install fastapi-offline",
        ) from None


def add_docs_routes(app: FastAPI) -> None:
    cache: dict[str, bytes] = {}

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Any:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: API",
            swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{PREFIX}/favicon.png",
        )

    @app.get(PREFIX + "/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        kind = ASSETS.get(name)
        if kind is None:
            raise HttpError(404, "not_found", f"no docs asset {name!r}")
        if name not in cache:
            cache[name] = _asset(name)
        return Response(
            cache[name], media_type=kind, headers={"cache-control": "public, max-age=86400"}
        )
