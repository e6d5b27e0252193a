"""The dashboard's pages, one module each (its routes and what they read)."""

from fastapi import APIRouter

from loopml.ui._pages import actions, data, experiments, loop, models, monitoring, served, timeline

ROUTERS: list[APIRouter] = [
    timeline.router,
    served.router,
    data.router,
    models.router,
    monitoring.router,
    experiments.router,
    loop.router,
    actions.router,
]
