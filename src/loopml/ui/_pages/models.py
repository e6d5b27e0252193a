"""Models: every model, its versions a page at a time (keyset on the version number), a
version's lineage, metrics beside baselines, slices, calibration, the gate's verdicts (anchors
``#gate-{evaluation id}``) and files, and two versions side by side."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse

from loopml import _htmlkit as kit
from loopml import registry as registry_sql
from loopml.errors import LoopmlError
from loopml.registry import ModelVersion
from loopml.training import higher_is_better
from loopml.ui._context import UiContext
from loopml.ui._format import chart
from loopml.ui._pages import _models_queries as mq
from loopml.ui._pages._common import parse_int, ui

router = APIRouter()

# Counts and rates that describe the rows, not the model's quality: a change is neither better
# nor worse.
NEUTRAL = frozenset({"n", "positive_rate", "predicted_positive_rate", "rows", "threshold"})
# Lineage keys shown first, in this order; the rest follow as they are.
LINEAGE_ORDER = (
    "snapshot",
    "features_hash",
    "as_of",
    "data_start",
    "data_end",
    "trained_until",
    "rows",
    "learned",
    "holdout",
    "parent",
    "stateful",
    "refit",
    "metrics_from",
    "estimator",
    "params",
    "split",
    "imbalance",
    "code_version",
    "trained_at",
    "training_seconds",
)


@router.get("/models", response_class=HTMLResponse)
def models(request: Request) -> HTMLResponse:
    ctx = ui(request)
    listing = ctx.project.registry.models()
    return ctx.render(request, "models/list.html", page_name="models", models=listing)


@router.get("/models/{model}", response_class=HTMLResponse)
def model_page(request: Request, model: str) -> HTMLResponse:
    ctx = ui(request)
    q = request.query_params
    before = parse_int(q.get("before"), "before", default=0, low=0, high=2**62) or None
    limit = parse_int(q.get("limit"), "limit", default=50, low=1, high=500)
    with ctx.project.store.read() as conn:
        task = mq.require_model(conn, model)
        count, lowest, highest = mq.version_numbers(conn, model)
        rows, older = mq.versions_page(conn, model, before=before, limit=limit)
        held = registry_sql.alias_map(conn, model)
    return ctx.render(
        request,
        "models/model.html",
        page_name="models",
        model=model,
        task=task,
        count=count,
        lowest=lowest,
        highest=highest,
        rows=rows,
        older=older,
        limit=limit,
        aliases=held,
        keys=mq.headline(task),
    )


@router.get("/models/{model}/versions/{version}", response_class=HTMLResponse)
def version_page(request: Request, model: str, version: int) -> HTMLResponse:
    ctx = ui(request)
    mv = _version(ctx, model, version)
    with ctx.project.store.read() as conn:
        evaluations = mq.evaluations_of(conn, model, version)
        held = mq.aliases_by_version(conn, model).get(version, [])
        count, lowest, highest = mq.version_numbers(conn, model)
    report = mv.report or {}
    return ctx.render(
        request,
        "models/version.html",
        page_name="models",
        mv=mv,
        model=model,
        held=held,
        lineage=_lineage(mv.lineage),
        metrics=_beside_baselines(mv, report),
        slices=_slices(report),
        calibration=report.get("calibration") or [],
        calibration_chart=_calibration_chart(
            report.get("calibration") or [], f"calibration-{version}"
        ),
        importance=_importance(report),
        evaluations=evaluations,
        files=_files(ctx, mv),
        neighbours=(
            version - 1 if version > lowest else None,
            version + 1 if version < highest else None,
        ),
        count=count,
    )


@router.get("/models/{model}/compare", response_class=HTMLResponse)
def compare(request: Request, model: str) -> HTMLResponse:
    ctx = ui(request)
    q = request.query_params
    with ctx.project.store.read() as conn:
        mq.require_model(conn, model)
        count, lowest, highest = mq.version_numbers(conn, model)
    a = parse_int(q.get("a"), "a", default=max(lowest, highest - 1), low=0, high=2**31)
    b = parse_int(q.get("b"), "b", default=highest, low=0, high=2**31)
    va, vb = _version(ctx, model, a), _version(ctx, model, b)
    return ctx.render(
        request,
        "models/compare.html",
        page_name="models",
        model=model,
        a=va,
        b=vb,
        count=count,
        metrics=_metric_deltas(va.metrics, vb.metrics),
        params=_differences(va.lineage.get("params") or {}, vb.lineage.get("params") or {}),
        lineage=_differences(
            {k: v for k, v in va.lineage.items() if k != "params"},
            {k: v for k, v in vb.lineage.items() if k != "params"},
        ),
    )


# --------------------------------------------------------------------------------- reading


def _version(ctx: UiContext, model: str, version: int) -> ModelVersion:
    """The version (the registry's NotFoundError is the 404 page naming the versions there are)."""
    return ctx.project.registry.get(model, version)


def _lineage(lineage: dict[str, Any]) -> list[tuple[str, Any]]:
    keys = [k for k in LINEAGE_ORDER if k in lineage]
    keys += [k for k in lineage if k not in LINEAGE_ORDER and k != "packages"]
    out = [(k, lineage[k]) for k in keys]
    if "packages" in lineage:
        out.append(("packages", lineage["packages"]))
    return out


def _beside_baselines(mv: ModelVersion, report: dict[str, Any]) -> dict[str, Any]:
    """The version's test metrics and each baseline's, metric by metric."""
    baselines = {
        name: (b.get("metrics") or {}, b.get("description") or "")
        for name, b in (report.get("baselines") or {}).items()
        if isinstance(b, dict)
    }
    metrics = dict(report.get("metrics") or mv.metrics)
    names = [k for k, v in metrics.items() if isinstance(v, int | float) and k != "n"]
    return {
        "names": names,
        "model": metrics,
        "baselines": baselines,
        "primary": report.get("primary_metric"),
        "rows": report.get("rows") or {},
        "threshold": report.get("threshold"),
    }


def _slices(report: dict[str, Any]) -> dict[str, Any]:
    """The slices, the worst (largest gap) first; the worst-slice keys of those that fall short
    of the whole test set."""
    slices = [s for s in report.get("slices") or [] if isinstance(s, dict)]
    slices.sort(key=_gap, reverse=True)
    worst = [s for s in report.get("worst_slices") or [] if isinstance(s, dict)]
    metric = report.get("primary_metric") or (slices[0].get("metric") if slices else None)
    key = {
        (s.get("column"), s.get("slice"))
        for s in worst
        if isinstance(s.get("gap"), int | float) and s["gap"] > 0
    }
    return {"metric": metric, "rows": slices, "worst": key}


def _gap(s: dict[str, Any]) -> float:
    gap = s.get("gap")
    return float(gap) if isinstance(gap, int | float) else float("-inf")


def _calibration_chart(bins: list[Any], div_id: str) -> str:
    """Mean predicted against the share positive per bin, beside the diagonal."""
    points = [
        b
        for b in bins
        if isinstance(b, dict)
        and isinstance(b.get("mean_predicted"), int | float)
        and isinstance(b.get("fraction_positive"), int | float)
    ]
    if not points:
        return ""
    import plotly.graph_objects as go

    fig = go.Figure(
        [
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                name="perfectly calibrated",
                line={"color": "#cbd2d9", "dash": "dash"},
                hoverinfo="skip",
            ),
            go.Scatter(
                x=[b["mean_predicted"] for b in points],
                y=[b["fraction_positive"] for b in points],
                mode="lines+markers",
                name="this version",
                line={"color": "#2563eb"},
                customdata=[b.get("count") for b in points],
                hovertemplate="predicted %{x:.1%}, positive %{y:.1%} (%{customdata:,} rows)"
                "<extra></extra>",
            ),
        ]
    )
    fig.update_layout(
        **kit.layout(
            "",
            300,
            xaxis={"title": {"text": "mean predicted"}, "tickformat": ".0%", "range": [0, 1]},
            yaxis={"title": {"text": "share positive"}, "tickformat": ".0%", "range": [0, 1]},
            width=460,
        )
    )
    return chart(fig, div_id)


def _importance(report: dict[str, Any]) -> tuple[str, list[tuple[str, Any]]]:
    imp = report.get("importance") or {}
    for name, label in (
        ("gain", "share of the gain"),
        ("mean_abs_contribution", "mean |SHAP|"),
        ("permutation", "permutation"),
    ):
        values = imp.get(name)
        if isinstance(values, dict) and values:
            return label, list(values.items())[:20]
    return "", []


def _files(ctx: UiContext, mv: ModelVersion) -> list[dict[str, Any]]:
    out = []
    for name, digest in mv.files.items():
        try:
            size: int | None = ctx.project.artifacts.size(digest)
        except (LoopmlError, OSError):
            size = None  # missing: the registry refuses to load it, the page says so
        out.append({"name": name, "sha256": digest, "size": size})
    return out


def _metric_deltas(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for k in dict.fromkeys([*a, *b]):
        va, vb = a.get(k), b.get(k)
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (va, vb))
        delta = vb - va if numeric else None  # type: ignore[operator]
        better = None
        if delta and k not in NEUTRAL:
            better = (delta > 0) == higher_is_better(k)
        out.append({"name": k, "a": va, "b": vb, "delta": delta, "better": better})
    return out


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": k, "a": a.get(k), "b": b.get(k), "same": a.get(k) == b.get(k)}
        for k in dict.fromkeys([*a, *b])
    ]
