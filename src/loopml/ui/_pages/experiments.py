"""Serving & experiments (being built: this module is replaced by the page itself)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse

from loopml.ui._pages._common import ui

router = APIRouter()


@router.get("/serving", response_class=HTMLResponse)
def page(request: Request) -> HTMLResponse:
    return ui(request).render(
        request, "placeholder.html", page_name="experiments", title="Serving & experiments"
    )
