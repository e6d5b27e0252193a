"""The monitoring report as one self-contained HTML page.

The page draws the numbers :meth:`Monitoring.report` returns as JSON: plotly.js is embedded once,
so the file opens offline and can be mailed or archived as it is, and every table is plain HTML,
readable without JavaScript. The report is taken as it comes: any key may be missing or null (a
model with no labels yet, a log with no predictions) and every string from it is escaped.

>>> page = render_html({"model": "m", "rows": 0, "message": "no predictions logged yet"})
>>> "no predictions logged yet" in page and '<script src="http' not in page
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from loopml import _htmlkit as kit
from loopml.evaluation import higher_is_better
from loopml.monitoring._profile import LABEL, PREDICTION
from loopml.monitoring._report import MonitoringReport

WINDOWS = {"current": "Current window", "sliding": "Sliding window", "cumulative": "All windows"}
TOP_DISTRIBUTIONS = 12
# Scores are effect / threshold: 1 is the line, and one score in the hundreds would flatten the rest.
SCORE_CAP = 5.0
HEAT_CAP = 2.0
HEAT_SCALE = [[0, "#f3f6fb"], [0.3, "#c6dbef"], [0.5, "#fdd49e"], [0.75, "#f46d43"], [1, "#a50026"]]
HEAT = {"zmin": 0, "zmax": HEAT_CAP, "colorscale": HEAT_SCALE, "hoverongaps": False}
OPEN_ROWS = 20  # per-window tables longer than this start folded

DRIFTED, STABLE, REFERENCE, GREY = "#d62728", "#4c78a8", "#9aa5b1", "#52606d"
NO_LABELS = "No labels yet: only covariate shift and prediction drift can be seen."

SECTIONS = (
    ("summary", "Current window"),
    ("labels", "Label accounting"),
    ("drift", "Drift per feature"),
    ("drift-time", "Drift over time"),
    ("distributions", "Reference vs current"),
    ("performance", "Performance over time"),
    ("ops", "Operational metrics"),
    ("alerts", "Alerts"),
)

SHIFT_WORDS = {
    "covariate": ("Covariate shift", "the inputs changed: features drifted from the reference"),
    "label": ("Label shift", "the mix of outcomes changed, the features within each class did not"),
    "concept": ("Concept drift", "P(y | x) changed: the predicted probabilities miss the outcomes"),
    "prediction": ("Prediction drift", "the model's outputs are spread unlike the reference's"),
    "decay": ("Performance decay", "the realized metric is worse than the reference allows"),
}

LABEL_ROWS = (
    ("received", "Labels received", "feedback rows read from the log"),
    ("matched", "Matched", "labels joined to a prediction of this report (duplicates too)"),
    ("duplicates", "Duplicates", "a further label for a prediction already labelled"),
    ("conflicting", "Conflicting", "duplicates that disagree with the first label received"),
    ("unknown", "Unknown", "labels for no logged prediction (label_reasons says why)"),
    ("out_of_order", "Out of order", "labels for an older prediction than one labelled before"),
    ("labelled", "Labelled predictions", "predictions of this version with a label"),
    ("pending", "Pending", "predictions still waiting for a label"),
    ("delay_p50_s", "Delay, median", "from prediction to label"),
    ("delay_p95_s", "Delay, 95th percentile", "from prediction to label"),
)


def render_html(report: MonitoringReport | Mapping[str, Any]) -> str:
    """The report as one HTML page with plotly.js inside, viewable without a network. A report
    read back from JSON is drawn as it comes (parts missing or malformed are shown as such)."""
    r = kit.as_dict(report.to_dict() if isinstance(report, MonitoringReport) else report)
    builders = (_summary, _labels, _drift, _drift_time, _distributions, _performance, _ops, _alerts)
    body = [_header(r)]
    for (key, title), build in zip(SECTIONS, builders, strict=True):
        body.append(f'<section id="{key}"><h2>{kit.e(title)}</h2>{build(r)}</section>')
    model = kit.e(r.get("model") if r.get("model") is not None else "model")
    page = "\n".join(body)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>loopml monitoring: {model}</title>\n<style>{kit.CSS}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n<main>\n'
        f"{kit.NOSCRIPT}\n{page}\n</main>\n<script>{kit.RESIZE}</script>\n</body>\n</html>\n"
    )


def write_html(report: MonitoringReport | Mapping[str, Any], path: str | Path) -> Path:
    """Render the report and write it to ``path`` atomically."""
    return kit.write_page(render_html(report), path)


# ----------------------------------------------------------------------------------- values


def _name(name: Any) -> str:
    return {PREDICTION: "prediction (model output)", LABEL: "label"}.get(str(name), str(name))


def _score(col: Mapping[str, Any]) -> float:
    return kit.num(col.get("score")) or 0.0


def _columns(window: Mapping[str, Any]) -> list[dict[str, Any]]:
    cols = kit.as_list(kit.as_dict(window.get("features")).get("columns"))
    return [kit.as_dict(c) for c in cols if isinstance(c, Mapping)]


def _drifted_names(window: Mapping[str, Any]) -> list[str]:
    names = [str(n) for n in kit.as_list(kit.as_dict(window.get("features")).get("drifted"))]
    for c in _columns(window):
        if c.get("drifted") is True and str(c.get("name")) not in names:
            names.append(str(c.get("name")))
    return names


def _windows(r: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    current = kit.as_dict(r.get("current"))
    return {k: kit.as_dict(current.get(k)) for k in WINDOWS}


def _timeline(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [kit.as_dict(t) for t in kit.as_list(r.get("timeline")) if isinstance(t, Mapping)]


def _metric(r: Mapping[str, Any]) -> str | None:
    """The metric performance is judged on: the decay verdict's, else the configured one."""
    found = [
        kit.as_dict(t.get("decay")).get("metric") for t in [_windows(r)["current"], *_timeline(r)]
    ]
    found.append(kit.as_dict(kit.as_dict(r.get("settings")).get("performance")).get("metric"))
    return next((m for m in found if isinstance(m, str) and m), None)


# ----------------------------------------------------------------------------------- markup


def _per_window(timeline: list[Any], head: str, rows: list[list[str]], text: kit.Words = 1) -> str:
    table = kit.table(head, rows, text=text)
    return kit.fold(f"Every window ({len(timeline)})", table, open_=len(timeline) <= OPEN_ROWS)


# ----------------------------------------------------------------------------------- header


def _header(r: Mapping[str, Any]) -> str:
    period, settings = kit.as_dict(r.get("period")), kit.as_dict(r.get("settings"))
    drift, perf = kit.as_dict(settings.get("drift")), kit.as_dict(settings.get("performance"))
    title = kit.e(r.get("model") if r.get("model") is not None else "unknown model")
    facts = [
        f"version {kit.fmt(r.get('version'))}" if r.get("version") is not None else "",
        f"{kit.fmt(r.get('rows'))} predictions" if r.get("rows") is not None else "",
        f"{kit.when(period.get('start'))} to {kit.when(period.get('end'))}" if period else "",
        f"generated {kit.when(r.get('generated_at'))} (times in UTC)"
        if r.get("generated_at")
        else "",
    ]
    meta = " · ".join(f for f in facts if f)
    out = [f'<header><h1>Monitoring report: {title}</h1><p class="meta">{meta}</p>']
    if settings:
        drop = kit.fmt(perf.get("max_drop")) + (" (relative)" if perf.get("relative") else "")
        out.append(
            f'<p class="meta">window {kit.fmt(settings.get("window"))}, '
            f"sliding {kit.fmt(settings.get('sliding'))} · drift: alpha {kit.fmt(drift.get('alpha'))}, "
            f"correction {kit.fmt(drift.get('correction'))}, at least {kit.fmt(drift.get('min_rows'))} "
            f"rows · performance: {kit.fmt(_metric(r))}, max drop {drop}, at least "
            f"{kit.fmt(perf.get('min_labels'))} labels</p>"
        )
    if r.get("message") is not None:
        out.append(f'<p class="message">{kit.e(r.get("message"))}</p>')
    elif not _windows(r)["current"] and not _timeline(r):
        out.append('<p class="message">This report holds no evaluated window.</p>')
    if _windows(r)["current"]:
        out.append(_verdict(_windows(r)["current"]))
    first = kit.as_dict(r.get("first_detected"))
    if first:
        never = '<span class="na">not seen</span>'
        rows = [
            [kit.e(SHIFT_WORDS[k][0]), kit.when(first[k]) if first.get(k) else never]
            for k in SHIFT_WORDS
        ]
        out.append("<h3>First detected (window start)</h3>")
        out.append(kit.table("Kind|First window", rows, text=2))
    links = "".join(f'<a href="#{k}">{kit.e(t)}</a>' for k, t in SECTIONS)
    out.append(f"<nav>{links}</nav></header>")
    return "".join(out)


def _flagged(window: Mapping[str, Any]) -> list[str]:
    shift = kit.as_dict(window.get("shift"))
    kinds = [k for k in ("covariate", "label", "concept", "prediction") if shift.get(k) is True]
    return kinds + (["decay"] if kit.as_dict(window.get("decay")).get("decayed") is True else [])


def _verdict(cur: Mapping[str, Any]) -> str:
    """The current window's shift, in words."""
    shift = kit.as_dict(cur.get("shift"))
    flagged = _flagged(cur)
    summary = shift.get("summary")
    if not isinstance(summary, str):
        summary = " + ".join(SHIFT_WORDS[k][0].lower() for k in flagged) or "no shift"
    known = shift.get("labels_known")
    items = []
    for k in flagged:
        title, words = SHIFT_WORDS[k]
        names = _drifted_names(cur) if k == "covariate" else []
        extra = f" ({kit.e(', '.join(names))})" if names else ""
        items.append(f"<li><strong>{kit.e(title)}</strong>: {kit.e(words)}{extra}.</li>")
    if known is False:
        items.append(f"<li>{NO_LABELS}</li>")
    elif not flagged and shift:
        items.append("<li>Inputs, predictions, labels and performance match the reference.</li>")
    cls = "shifted" if flagged else ("unknown" if known is False else "ok")
    span = f"{kit.when(cur.get('start'))} to {kit.when(cur.get('end'))}"
    head = f"Current window ({span}): {kit.e(summary)}"
    return f'<div class="verdict {cls}"><strong>{head}</strong><ul>{"".join(items)}</ul></div>'


# ---------------------------------------------------------------------------------- summary


def _drift_cell(col: Any, *, missing: str = "–") -> str:
    c = kit.as_dict(col)
    if not c:
        return f'<span class="na">{kit.e(missing)}</span>'
    drifted = c.get("drifted") is True
    flag = '<span class="bad">drifted</span>' if drifted else '<span class="good">stable</span>'
    return f"score {kit.fmt(c.get('score'), 3)}, {flag} (p adj. {kit.fmt(c.get('p_adjusted'), 3)})"


def _verdict_cell(decayed: Any, min_labels: Any = None) -> str:
    if decayed is True:
        return '<span class="bad">decayed</span>'
    if decayed is False:
        return '<span class="good">within limit</span>'
    why = f" (fewer than {kit.fmt(min_labels)} labels)" if min_labels is not None else ""
    return f'<span class="na">not judged{why}</span>'


def _decay_cell(w: Mapping[str, Any], metric: str | None, min_labels: Any) -> str:
    dec = kit.as_dict(w.get("decay"))
    value = kit.as_dict(w.get("performance")).get(metric) if metric else None
    value = dec.get("value") if value is None else value
    if value is None and not dec:
        return kit.NA
    ref, drop, limit = dec.get("reference"), kit.fmt(dec.get("drop"), 3), kit.fmt(dec.get("limit"))
    verdict = _verdict_cell(dec.get("decayed"), min_labels)
    return f"{kit.fmt(value)} vs reference {kit.fmt(ref)} (drop {drop}, allowed {limit}): {verdict}"


def _summary(r: Mapping[str, Any]) -> str:
    wins = _windows(r)
    kinds = [k for k in WINDOWS if wins[k]]
    if not kinds:
        return kit.none("No window has been evaluated yet.")
    metric = _metric(r)
    name = metric or "metric"
    min_labels = kit.as_dict(kit.as_dict(r.get("settings")).get("performance")).get("min_labels")

    def drifted(w: dict[str, Any]) -> str:
        names, total = _drifted_names(w), len(_columns(w))
        head = f"{len(names)} of {total}" if total else str(len(names))
        return head + (f': <span class="bad">{kit.e(", ".join(names))}</span>' if names else "")

    def ops(w: dict[str, Any], key: str) -> Any:
        return kit.as_dict(w.get("ops")).get(key)

    def latency(w: dict[str, Any]) -> str:
        return f"{kit.fmt(ops(w, 'latency.p50_ms'), 3)} / {kit.fmt(ops(w, 'latency.p99_ms'), 3)}"

    def calibration(w: dict[str, Any]) -> str:
        c = kit.as_dict(w.get("calibration"))
        return f"{kit.fmt(c.get('gap'), 3)} (p {kit.fmt(c.get('p_value'), 3)})" if c else kit.NA

    cells: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("Period", lambda w: f"{kit.when(w.get('start'))} to {kit.when(w.get('end'))}"),
        ("Predictions", lambda w: kit.fmt(w.get("rows"))),
        ("Labelled", lambda w: kit.fmt(w.get("labelled"))),
        ("Labelled share", lambda w: kit.pct(kit.share(w.get("labelled"), w.get("rows")))),
        ("Drifted features", drifted),
        ("Prediction drift", lambda w: _drift_cell(w.get("prediction"))),
        ("Label drift", lambda w: _drift_cell(w.get("label"), missing="not enough labels")),
        ("Features drifting within a class", lambda w: kit.fmt(w.get("conditional_drifted"))),
        (f"Performance ({name}) vs reference", lambda w: _decay_cell(w, metric, min_labels)),
        (
            f"Label-free estimate ({name})",
            lambda w: kit.fmt(kit.as_dict(w.get("estimated")).get(name)),
        ),
        ("Calibration gap (observed - predicted)", calibration),
        ("Latency p50 / p99 (ms)", latency),
        ("Fallback rate", lambda w: kit.pct(ops(w, "fallback_rate"))),
        ("Error rate", lambda w: kit.pct(ops(w, "error_rate"))),
        ("Quarantine rate", lambda w: kit.pct(w.get("quarantine_rate"))),
        ("Shift", lambda w: kit.e(kit.as_dict(w.get("shift")).get("summary") or "–")),
    ]
    rows = [[kit.e(label), *(cell(wins[k]) for k in kinds)] for label, cell in cells]
    return kit.table("|".join(["", *(WINDOWS[k] for k in kinds)]), rows, text=len(kinds) + 1)


def _labels(r: Mapping[str, Any]) -> str:
    stats = kit.as_dict(r.get("labels"))
    if not stats:
        return kit.none("No label accounting yet: no feedback has been joined to the log.")
    rows = [
        [
            f"{kit.e(t)} {kit.none(w, 'span')}",
            (kit.duration if k.endswith("_s") else kit.fmt)(stats.get(k)),
        ]
        for k, t, w in LABEL_ROWS
    ]
    known = {k for k, _, _ in LABEL_ROWS}
    return kit.table(
        "|Count", rows + [[kit.e(k), kit.fmt(v)] for k, v in stats.items() if k not in known]
    )


# ------------------------------------------------------------------------------------ drift

DRIFT_HEAD = (
    "Feature|Kind|Test|Statistic|p|p adj.|Effect|Value|Threshold|Score|PSI|JS|Missing ref|"
    "Missing cur|Mean ref|Mean cur|Drifted"
)
TEST_KEYS = ("kind", "test", "statistic", "p_value", "p_adjusted")
EFFECT_KEYS = ("effect", "value", "threshold", "score", "psi", "js")
DRIFT_KEYS = (*TEST_KEYS, *EFFECT_KEYS, "missing_ref", "missing_cur", "mean_ref", "mean_cur")
SHORT = {"p_value", "p_adjusted", "score"}  # three significant digits are enough for these


def _drift_row(c: Mapping[str, Any], drifted: bool) -> list[str]:
    cells = [
        kit.pct(c.get(k)) if k.startswith("missing") else kit.fmt(c.get(k), 3 if k in SHORT else 4)
        for k in DRIFT_KEYS
    ]
    return [
        kit.e(_name(c.get("name"))),
        *cells,
        '<span class="bad">yes</span>' if drifted else "no",
    ]


def _drift(r: Mapping[str, Any]) -> str:
    cur = _windows(r)["current"]
    cols = sorted(_columns(cur), key=_score, reverse=True)
    extra = [kit.as_dict(cur.get(k)) for k in ("prediction", "label") if kit.as_dict(cur.get(k))]
    if not cols and not extra:
        return kit.none("No feature has been compared with the reference yet.")
    drifted = set(_drifted_names(cur))
    out = [
        f'<p class="note">Current window, {kit.when(cur.get("start"))} to {kit.when(cur.get("end"))}. '
        "Score = effect size / its threshold: above 1 the change is large enough to matter; a "
        "feature drifts when its adjusted p-value is below alpha as well.</p>"
    ]
    if cols:
        scores = [kit.num(c.get("score")) for c in cols]
        flags = [str(c.get("name")) in drifted for c in cols]
        hover = [[s, kit.num(c.get("p_adjusted"))] for s, c in zip(scores, cols, strict=True)]
        bar = go.Bar(
            x=[kit.e(c.get("name")) for c in cols],
            y=[None if s is None else min(s, SCORE_CAP) for s in scores],
            marker_color=[DRIFTED if f else STABLE for f in flags],
            customdata=hover,
            hovertemplate="%{x}<br>score %{customdata[0]:.3g}<br>p adj. %{customdata[1]:.3g}"
            "<extra></extra>",
        )
        yaxis = {"title": {"text": f"score (capped at {SCORE_CAP:g})"}}
        layout = kit.layout("", 380, showlegend=False, yaxis=yaxis, xaxis={"tickangle": -45})
        fig = go.Figure(bar, layout)
        fig.add_hline(y=1, line_dash="dash", line_color=GREY, annotation_text="threshold")
        out.append(kit.plot(fig, "fig-drift-features"))
    rows = [_drift_row(c, str(c.get("name")) in drifted) for c in cols]
    classes = ["drifted" if str(c.get("name")) in drifted else "" for c in cols]
    for i, c in enumerate(extra):
        rows.append(_drift_row(c, c.get("drifted") is True))
        sep = "sep" if i == 0 and cols else ""
        classes.append(f"{sep} drifted".strip() if c.get("drifted") is True else sep)
    out.append(kit.table(DRIFT_HEAD, rows, cls=classes, text=(0, 1, 2, 6)))
    return "".join(out)


def _drift_time(r: Mapping[str, Any]) -> str:
    timeline = _timeline(r)
    if not timeline:
        return kit.none("No window in the timeline yet.")
    x = [kit.axis_time(t.get("start"), i) for i, t in enumerate(timeline)]
    feats = [kit.as_dict(t.get("features")) for t in timeline]
    names = [str(n) for n in kit.as_list(kit.as_dict(r.get("reference")).get("features"))]
    names = list(
        dict.fromkeys(names + [str(n) for f in feats for n in kit.as_dict(f.get("scores"))])
    )
    out = []
    if names:
        scores = [{str(k): v for k, v in kit.as_dict(f.get("scores")).items()} for f in feats]
        raw = [[kit.num(s.get(n)) for s in scores] for n in names]
        heat = go.Heatmap(
            x=x,
            y=[kit.e(n) for n in names],
            z=[[None if v is None else min(v, HEAT_CAP) for v in row] for row in raw],
            customdata=raw,
            colorbar={"title": {"text": "score"}},
            hovertemplate="%{y}<br>%{x}<br>score %{customdata:.3g}<extra></extra>",
            **HEAT,
        )
        hits = [
            (x[i], kit.e(n))
            for i, f in enumerate(feats)
            for n in map(str, kit.as_list(f.get("drifted")))
        ]
        hx, hy = zip(*hits, strict=True) if hits else ((), ())
        marks = go.Scatter(x=hx, y=hy, mode="markers", marker=kit.X_MARK, hoverinfo="skip")
        title = "Score per feature and window (1 = threshold; x = drifted)"
        yaxis = {"autorange": "reversed", "gridcolor": "rgba(0,0,0,0)"}
        layout = kit.layout(title, max(320, 22 * len(names) + 140), showlegend=False, yaxis=yaxis)
        fig = go.Figure([heat, marks], layout)
        out.append(kit.plot(fig, "fig-drift-heatmap"))

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35])
    share = [kit.num(f.get("share")) for f in feats]
    fig.add_trace(kit.line(x, share, "share of features drifted", STABLE), row=1, col=1)
    symbols = ("circle", "square", "diamond", "triangle-up", "x")
    for k, symbol in zip(SHIFT_WORDS, symbols, strict=True):
        hit = [x[i] for i, t in enumerate(timeline) if k in _flagged(t)]
        marker = {"symbol": symbol, "size": 11, "color": DRIFTED}
        label = SHIFT_WORDS[k][0]
        fig.add_scatter(x=hit, y=[label] * len(hit), mode="markers", marker=marker, row=2, col=1)
    title = "Share of features drifted, and the windows where a shift was flagged"
    kinds = [w[0] for w in reversed(SHIFT_WORDS.values())]
    yaxis2: dict[str, Any] = {"type": "category", "categoryorder": "array", "categoryarray": kinds}
    yaxis2["range"] = [-0.5, len(kinds) - 0.5]
    share_axis = {"tickformat": ".0%", "rangemode": "tozero"}
    fig.update_layout(kit.layout(title, 420, showlegend=False, yaxis=share_axis, yaxis2=yaxis2))
    out.append(kit.plot(fig, "fig-drift-share"))

    rows = []
    for t, f in zip(timeline, feats, strict=True):
        names_d = kit.as_list(f.get("drifted"))
        drifted = f'<span class="bad">{kit.fmt(names_d)}</span>' if names_d else kit.NA
        label = _drift_cell(t.get("label"), missing="not enough labels")
        shift = kit.e(kit.as_dict(t.get("shift")).get("summary") or "–")
        prediction = _drift_cell(t.get("prediction"))
        cells = [kit.fmt(t.get("rows")), kit.pct(f.get("share")), drifted, prediction, label, shift]
        rows.append([kit.when(t.get("start")), *cells, kit.fmt(kit.as_list(t.get("alerts")))])
    head = "Window start|Predictions|Share drifted|Drifted features|Prediction drift|Label drift|Shift|Alerts"
    out.append(_per_window(timeline, head, rows, text=(0, 3, 4, 5, 6, 7)))
    return "".join(out)


# ---------------------------------------------------------------------------- distributions


def _distributions(r: Mapping[str, Any]) -> str:
    current = kit.as_dict(r.get("current"))
    dists = kit.as_dict(current.get("distributions"))
    cumulative = kit.as_dict(current.get("distributions_cumulative"))
    if not dists:
        return kit.none("No distribution to compare yet.")
    cur = _windows(r)["current"]
    cols = {str(c.get("name")): c for c in _columns(cur)}
    pred = kit.as_dict(cur.get("prediction"))
    cols[PREDICTION] = pred
    drifted = set(_drifted_names(cur)) | ({PREDICTION} if pred.get("drifted") is True else set())
    ranked = sorted(dists, key=lambda n: _score(cols.get(str(n), {})), reverse=True)
    names = [PREDICTION] * (PREDICTION in dists) + [str(n) for n in ranked if n != PREDICTION]
    charts = [
        _distribution(
            i, n, dists[n], cumulative.get(n), kit.num(cols.get(n, {}).get("score")), n in drifted
        )
        for i, n in enumerate(names)
    ]
    top = TOP_DISTRIBUTIONS + (1 if PREDICTION in dists else 0)
    out = [
        '<p class="note">Share of rows per bin: the reference (the training profile) against the '
        "current window; all windows together can be switched on in the legend. The prediction "
        "first, then the features by score.</p>",
        f'<div class="grid">{"".join(charts[:top])}</div>',
    ]
    if len(charts) > top:
        rest = f'<div class="grid">{"".join(charts[top:])}</div>'
        out.append(kit.fold(f"The other {len(charts) - top} features", rest, open_=False))
    return "".join(out)


def _distribution(i: int, name: str, d: Any, cum: Any, score: float | None, drifted: bool) -> str:
    d, cum = kit.as_dict(d), kit.as_dict(cum)
    bins = [kit.e(b) for b in kit.as_list(d.get("bins"))]

    def values(src: dict[str, Any], key: str) -> list[float | None]:
        v = [kit.num(x) for x in kit.as_list(src.get(key))]
        return (v + [None] * len(bins))[: len(bins)]

    color = DRIFTED if drifted else STABLE
    bars = [
        go.Bar(x=bins, y=values(d, "reference"), name="reference", marker_color=REFERENCE),
        go.Bar(x=bins, y=values(d, "current"), name="current window", marker_color=color),
    ]
    if cum and kit.as_list(cum.get("bins")) == kit.as_list(d.get("bins")):
        hidden = {"marker_color": "#72b7b2", "visible": "legendonly"}
        bars.append(go.Bar(x=bins, y=values(cum, "current"), name="all windows", **hidden))
    title = kit.e(_name(name))
    title += f" · score {score:.3g}" if score is not None else ""
    title += " · drifted" if drifted else ""
    axes = {"yaxis": {"tickformat": ".0%", "rangemode": "tozero"}, "xaxis": {"type": "category"}}
    layout = kit.layout(title, 320, barmode="group", bargap=0.2, **axes)
    fig = go.Figure(bars, layout)
    return f"<div>{kit.plot(fig, f'fig-dist-{i}')}</div>"


# ------------------------------------------------------------------------------ performance


def _performance(r: Mapping[str, Any]) -> str:
    timeline = _timeline(r)
    metric = _metric(r)
    if not timeline:
        return kit.none("No window in the timeline yet.")
    if metric is None:
        return kit.none("No labelled window yet: performance cannot be measured.")
    x = [kit.axis_time(t.get("start"), i) for i, t in enumerate(timeline)]
    realized = [kit.num(kit.as_dict(t.get("performance")).get(metric)) for t in timeline]
    final = [kit.num(kit.as_dict(t.get("performance_final")).get(metric)) for t in timeline]
    est = [kit.num(kit.as_dict(t.get("estimated")).get(metric)) for t in timeline]
    decays = [kit.as_dict(t.get("decay")) for t in timeline]
    # the verdict's limit is the drop allowed: drawn, it is the worst value allowed
    allowed = [(kit.num(d.get("reference")), kit.num(d.get("limit"))) for d in decays]
    sign = -1.0 if higher_is_better(metric) else 1.0
    limit = [b + sign * a if b is not None and a is not None else None for b, a in allowed]
    labelled = [kit.share(t.get("labelled"), t.get("rows")) for t in timeline]
    ref = kit.num(kit.as_dict(kit.as_dict(r.get("reference")).get("metrics")).get(metric))

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    # plotly draws the second y axis over the first: the bars go on the first, under the lines
    fig.add_bar(x=x, y=labelled, name="labelled share", marker_color="#d9e2ec")
    lines: list[tuple[list[Any], str, str, str]] = [
        (realized, "realized at window end", STABLE, "solid"),
        (final, "realized, all labels", "#2f7a32", "dot"),
        (est, "label-free estimate", "#f58518", "dash"),
        ([ref] * len(x), "reference" if ref is None else f"reference {ref:.4g}", GREY, "longdash"),
        (limit, "worst allowed", DRIFTED, "dot"),
    ]
    for y, name, color, dash in lines:
        fig.add_trace(kit.line(x, y, name, color, dash), secondary_y=True)
    decayed = [i for i, d in enumerate(decays) if d.get("decayed") is True]
    if decayed:
        dx, dy = [x[i] for i in decayed], [realized[i] for i in decayed]
        mark = {"symbol": "x", "size": 12, "color": DRIFTED}
        fig.add_scatter(x=dx, y=dy, mode="markers", name="decayed", marker=mark, secondary_y=True)
    share_axis = {"title": {"text": "labelled share"}, "tickformat": ".0%", "range": [0, 1]}
    axes = {"yaxis": {**share_axis, "side": "right", "showgrid": False}}
    axes["yaxis2"] = {"title": {"text": kit.e(metric)}, "side": "left", "tickmode": "auto"}
    fig.update_layout(kit.layout(f"{kit.e(metric)} per window", 420, **axes))

    starts = [kit.when(t.get("start")) for t in timeline]
    counts = [kit.fmt(t.get("labelled")) for t in timeline]
    numbers = [[kit.fmt(v) for v in values] for values in (realized, final, est, limit)]
    verdicts = [_verdict_cell(d.get("decayed")) for d in decays]
    rows = kit.transpose(starts, counts, [kit.pct(v) for v in labelled], *numbers, verdicts)
    head = "Window start|Labelled|Share|Realized at end|Realized now|Estimate|Worst allowed|Verdict"
    note = (
        f'<p class="note">Reference {kit.e(metric)}: {kit.fmt(ref)}. "Realized at end" counts the '
        'labels known when the window closed; "realized now" every label received since.</p>'
    )
    return kit.plot(fig, "fig-performance") + note + _per_window(timeline, head, rows, text=(0, 7))


# -------------------------------------------------------------------------------------- ops

OPS_SERIES = (
    ("latency.p50_ms", "latency p50 (ms)", STABLE, 1),
    ("latency.p99_ms", "latency p99 (ms)", "#f58518", 1),
    ("fallback_rate", "fallback rate", "#72b7b2", 2),
    ("error_rate", "error rate", DRIFTED, 2),
    ("quarantine_rate", "quarantine rate", "#b279a2", 2),
)


def _ops(r: Mapping[str, Any]) -> str:
    timeline = _timeline(r)
    if not timeline:
        return kit.none("No window in the timeline yet.")
    x = [kit.axis_time(t.get("start"), i) for i, t in enumerate(timeline)]
    # quarantine_rate sits beside ops (it is the ingestion's, not the server's)
    values = [
        {**kit.as_dict(t.get("ops")), "quarantine_rate": t.get("quarantine_rate")} for t in timeline
    ]
    series = {key: [kit.num(v.get(key)) for v in values] for key, *_ in OPS_SERIES}
    titles = ("Latency (ms)", "Rates")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=titles)
    for key, name, color, row in OPS_SERIES:
        fig.add_trace(kit.line(x, series[key], name, color), row=row, col=1)
    axes = {
        "yaxis": {"rangemode": "tozero"},
        "yaxis2": {"tickformat": ".1%", "rangemode": "tozero"},
    }
    fig.update_layout(kit.layout("", 460, **axes))
    cells = [
        [kit.fmt(v, 3) if n == 1 else kit.pct(v) for v in series[k]] for k, _, _, n in OPS_SERIES
    ]
    rows = kit.transpose([kit.when(t.get("start")) for t in timeline], *cells)
    head = "Window start|p50 (ms)|p99 (ms)|Fallback|Errors|Quarantined"
    return kit.plot(fig, "fig-ops") + _per_window(timeline, head, rows)


# ----------------------------------------------------------------------------------- alerts

ALERT_HEAD = "Rule|Status|Severity|Metric|Window|Value|Condition|Window start|First|Last|Occurrences|Notified"


def _alert_row(a: dict[str, Any]) -> list[str]:
    op = kit.as_dict(a.get("details")).get("op")
    status = a.get("status")
    notified = (
        kit.when(a.get("notified_at")) if a.get("notified_at") else '<span class="na">no</span>'
    )
    return [
        kit.fmt(a.get("rule")),
        f'<span class="bad">{kit.e(status)}</span>' if status == "firing" else kit.fmt(status),
        *(kit.fmt(a.get(k)) for k in ("severity", "metric", "window", "value")),
        (f"{kit.e(op)} " if op else "") + kit.fmt(a.get("threshold")),
        *(kit.when(a.get(k)) for k in ("window_start", "first_at", "last_at")),
        kit.fmt(a.get("occurrences")),
        notified,
    ]


def _alerts(r: Mapping[str, Any]) -> str:
    out = []
    for key, title, empty in (
        ("alerts", "Raised while judging this report's new windows", "No alert was raised."),
        ("active_alerts", "Active now", "No alert is active."),
    ):
        alerts = [kit.as_dict(a) for a in kit.as_list(r.get(key))]
        out.append(f"<h3>{kit.e(title)}</h3>")
        if alerts:
            classes = ["drifted" if a.get("status") == "firing" else "" for a in alerts]
            rows = [_alert_row(a) for a in alerts]
            out.append(kit.table(ALERT_HEAD, rows, cls=classes, text=(0, 1, 2, 3, 4, 7, 8, 9, 11)))
        else:
            out.append(kit.none(empty))
    return "".join(out)


__all__ = ["render_html", "write_html"]
