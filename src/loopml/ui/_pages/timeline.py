"""The home page: the incident timeline, filtered by kind, model and time range, a page at a
time (newest first, an "older" link carries the cursor)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse

from loopml.ui._pages._common import parse_int, parse_time, ui
from loopml.ui._timeline import GROUPS

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def timeline(request: Request) -> HTMLResponse:
    ctx = ui(request)
    q = request.query_params
    kinds = [k for k in q.getlist("kind") if k]
    since = parse_time(q.get("since"), "since")
    until = parse_time(q.get("until"), "until")
    limit = parse_int(q.get("limit"), "limit", default=50, low=1, high=500)
    model = q.get("model") or None
    page = ctx.timeline.page(
        groups=kinds, model=model, since=since, until=until, cursor=q.get("cursor"), limit=limit
    )
    models = [m.name for m in ctx.project.registry.models()]
    return ctx.render(
        request,
        "timeline.html",
        page_name="timeline",
        groups=list(GROUPS),
        kinds=kinds,
        model=model,
        models=models,
        since=since,
        until=until,
        limit=limit,
        result=page,
    )
