"""Every action taken through the dashboard: who, what, on what, why, and what came of it."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse

from loopml.storage import tables as t
from loopml.ui._pages._common import parse_int, ui

router = APIRouter()


@router.get("/actions", response_class=HTMLResponse)
def actions(request: Request) -> HTMLResponse:
    ctx = ui(request)
    q = request.query_params
    before = parse_int(q.get("before"), "before", default=0, low=0, high=2**62)
    limit = parse_int(q.get("limit"), "limit", default=50, low=1, high=500)
    query = select(t.actions).order_by(t.actions.c.id.desc()).limit(limit + 1)
    if before:
        query = query.where(t.actions.c.id < before)
    with ctx.project.store.read() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return ctx.render(
        request,
        "actions.html",
        page_name="actions",
        rows=rows,
        older=rows[-1]["id"] if more and rows else None,
    )
