"""The monitoring report as one self-contained HTML page.

The page draws the typed report :meth:`Monitoring.report` returns (:class:`MonitoringReport`),
reading its records' attributes: plotly.js is embedded once, so the file opens offline and can
be mailed or archived as it is, and every table is plain HTML, readable without JavaScript. A
report read back from JSON (stored, older or partial) is turned into the typed report once, at
the door, by :meth:`MonitoringReport.salvage`: what can be read of it is kept and any field may
then be None, so the sections test what they read and show a missing part as missing. Every
string from the report is escaped.

>>> page = render_html({"model": "m", "rows": 0, "message": "no predictions logged yet"})
>>> "no predictions logged yet" in page and '<script src="http' not in page
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from loopml import _htmlkit as kit
from loopml.evaluation import higher_is_better
from loopml.monitoring._alerts import Alert
from loopml.monitoring._profile import LABEL, PREDICTION
from loopml.monitoring._report import (
    ColumnDriftRecord,
    Distribution,
    MonitoringReport,
    TimelineItem,
    WindowRecord,
)

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
    read back from JSON is drawn as it comes: what can be read of it is kept
    (:meth:`MonitoringReport.salvage`), parts missing or malformed are shown as missing."""
    r = _read(report)
    builders = (_summary, _labels, _drift, _drift_time, _distributions, _performance, _ops, _alerts)
    body = [_header(r)]
    for (key, title), build in zip(SECTIONS, builders, strict=True):
        body.append(f'<section id="{key}"><h2>{kit.e(title)}</h2>{build(r)}</section>')
    model = kit.e(r.model if r.model is not None else "model")
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


def _read(report: MonitoringReport | Mapping[str, Any]) -> MonitoringReport:
    """The typed report; one read back from JSON salvaged, so that any of its fields may be
    None (the sections below test what they read)."""
    if isinstance(report, MonitoringReport):
        return report
    # not a mapping (typed as one, but read from anywhere): drawn as a report of nothing
    salvaged = MonitoringReport.salvage(report if isinstance(report, Mapping) else {})
    assert salvaged is not None  # a mapping always salvages
    return salvaged


# ----------------------------------------------------------------------------------- values


def _finite(x: Any) -> Any:
    """A value as the report's JSON has it: a float that is not finite is null there."""
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _fmt(x: Any, digits: int = 4) -> str:
    return kit.fmt(_finite(x), digits)


def _name(name: Any) -> str:
    return {PREDICTION: "prediction (model output)", LABEL: "label"}.get(str(name), str(name))


def _score(col: ColumnDriftRecord | None) -> float:
    return (kit.num(col.score) if col is not None else None) or 0.0


def _columns(window: WindowRecord | None) -> list[ColumnDriftRecord]:
    if window is None or window.features is None:
        return []
    return list(window.features.columns or [])


def _drifted_names(window: WindowRecord | None) -> list[str]:
    if window is None:
        return []
    features = window.features
    names = [str(n) for n in (features.drifted or [])] if features is not None else []
    for c in _columns(window):
        if c.drifted is True and str(c.name) not in names:
            names.append(str(c.name))
    return names


def _windows(r: MonitoringReport) -> dict[str, WindowRecord | None]:
    current = r.current
    return {k: getattr(current, k) if current is not None else None for k in WINDOWS}


def _timeline(r: MonitoringReport) -> list[TimelineItem]:
    return list(r.timeline or [])


def _metric(r: MonitoringReport) -> str | None:
    """The metric performance is judged on: the decay verdict's, else the configured one."""
    windows = [_windows(r)["current"], *_timeline(r)]
    found: list[str | None] = [
        w.decay.metric for w in windows if w is not None and w.decay is not None
    ]
    perf = r.settings.performance if r.settings is not None else None
    found.append(perf.metric if perf is not None else None)
    return next((m for m in found if isinstance(m, str) and m), None)


def _min_labels(r: MonitoringReport) -> int | None:
    perf = r.settings.performance if r.settings is not None else None
    return perf.min_labels if perf is not None else None


def _get(values: Mapping[str, Any] | None, key: str | None) -> Any:
    """A value of a metric map, None when the map or the key is missing."""
    return values.get(key) if values is not None and key is not None else None


# ----------------------------------------------------------------------------------- markup


def _per_window(timeline: list[Any], head: str, rows: list[list[str]], text: kit.Words = 1) -> str:
    table = kit.table(head, rows, text=text)
    return kit.fold(f"Every window ({len(timeline)})", table, open_=len(timeline) <= OPEN_ROWS)


# ----------------------------------------------------------------------------------- header


def _header(r: MonitoringReport) -> str:
    period, settings = r.period, r.settings
    title = kit.e(r.model if r.model is not None else "unknown model")
    facts = [
        f"version {_fmt(r.version)}" if r.version is not None else "",
        f"{_fmt(r.rows)} predictions" if r.rows is not None else "",
        f"{kit.when(period.start)} to {kit.when(period.end)}" if period is not None else "",
        f"generated {kit.when(r.generated_at)} (times in UTC)" if r.generated_at else "",
    ]
    meta = " · ".join(f for f in facts if f)
    out = [f'<header><h1>Monitoring report: {title}</h1><p class="meta">{meta}</p>']
    if settings is not None:
        drift, perf = settings.drift, settings.performance
        alpha, correction, min_rows = (
            (drift.alpha, drift.correction, drift.min_rows) if drift is not None else (None,) * 3
        )
        max_drop, relative, min_labels = (
            (perf.max_drop, perf.relative, perf.min_labels) if perf is not None else (None,) * 3
        )
        drop = _fmt(max_drop) + (" (relative)" if relative else "")
        out.append(
            f'<p class="meta">window {_fmt(settings.window)}, '
            f"sliding {_fmt(settings.sliding)} · drift: alpha {_fmt(alpha)}, "
            f"correction {_fmt(correction)}, at least {_fmt(min_rows)} "
            f"rows · performance: {_fmt(_metric(r))}, max drop {drop}, at least "
            f"{_fmt(min_labels)} labels</p>"
        )
    current = _windows(r)["current"]
    if r.message is not None:
        out.append(f'<p class="message">{kit.e(r.message)}</p>')
    elif current is None and not _timeline(r):
        out.append('<p class="message">This report holds no evaluated window.</p>')
    if current is not None:
        out.append(_verdict(current))
    first = r.first_detected
    if first is not None:
        never = '<span class="na">not seen</span>'
        rows = [
            [kit.e(SHIFT_WORDS[k][0]), kit.when(getattr(first, k)) if getattr(first, k) else never]
            for k in SHIFT_WORDS
        ]
        out.append("<h3>First detected (window start)</h3>")
        out.append(kit.table("Kind|First window", rows, text=2))
    links = "".join(f'<a href="#{k}">{kit.e(t)}</a>' for k, t in SECTIONS)
    out.append(f"<nav>{links}</nav></header>")
    return "".join(out)


def _flagged(window: WindowRecord | TimelineItem) -> list[str]:
    shift, decay = window.shift, window.decay
    kinds = [
        k
        for k in ("covariate", "label", "concept", "prediction")
        if shift is not None and getattr(shift, k) is True
    ]
    return kinds + (["decay"] if decay is not None and decay.decayed is True else [])


def _verdict(cur: WindowRecord) -> str:
    """The current window's shift, in words."""
    shift = cur.shift
    flagged = _flagged(cur)
    summary = shift.summary if shift is not None else None
    if not isinstance(summary, str):
        summary = " + ".join(SHIFT_WORDS[k][0].lower() for k in flagged) or "no shift"
    known = shift.labels_known if shift is not None else None
    items = []
    for k in flagged:
        title, words = SHIFT_WORDS[k]
        names = _drifted_names(cur) if k == "covariate" else []
        extra = f" ({kit.e(', '.join(names))})" if names else ""
        items.append(f"<li><strong>{kit.e(title)}</strong>: {kit.e(words)}{extra}.</li>")
    if known is False:
        items.append(f"<li>{NO_LABELS}</li>")
    elif not flagged and shift is not None:
        items.append("<li>Inputs, predictions, labels and performance match the reference.</li>")
    cls = "shifted" if flagged else ("unknown" if known is False else "ok")
    span = f"{kit.when(cur.start)} to {kit.when(cur.end)}"
    head = f"Current window ({span}): {kit.e(summary)}"
    return f'<div class="verdict {cls}"><strong>{head}</strong><ul>{"".join(items)}</ul></div>'


# ---------------------------------------------------------------------------------- summary


def _drift_cell(col: ColumnDriftRecord | None, *, missing: str = "–") -> str:
    if col is None:
        return f'<span class="na">{kit.e(missing)}</span>'
    drifted = col.drifted is True
    flag = '<span class="bad">drifted</span>' if drifted else '<span class="good">stable</span>'
    return f"score {_fmt(col.score, 3)}, {flag} (p adj. {_fmt(col.p_adjusted, 3)})"


def _verdict_cell(decayed: bool | None, min_labels: int | None = None) -> str:
    if decayed is True:
        return '<span class="bad">decayed</span>'
    if decayed is False:
        return '<span class="good">within limit</span>'
    why = f" (fewer than {_fmt(min_labels)} labels)" if min_labels is not None else ""
    return f'<span class="na">not judged{why}</span>'


def _decay_cell(w: WindowRecord, metric: str | None, min_labels: int | None) -> str:
    dec = w.decay
    value = _get(w.performance, metric)
    value = (dec.value if dec is not None else None) if value is None else value
    if value is None and dec is None:
        return kit.NA
    ref, drop, limit, decayed = (
        (dec.reference, dec.drop, dec.limit, dec.decayed) if dec is not None else (None,) * 4
    )
    verdict = _verdict_cell(decayed, min_labels)
    return (
        f"{_fmt(value)} vs reference {_fmt(ref)} (drop {_fmt(drop, 3)}, allowed {_fmt(limit)}): "
        f"{verdict}"
    )


def _summary(r: MonitoringReport) -> str:
    wins = {k: w for k, w in _windows(r).items() if w is not None}
    if not wins:
        return kit.none("No window has been evaluated yet.")
    metric = _metric(r)
    name = metric or "metric"
    min_labels = _min_labels(r)

    def drifted(w: WindowRecord) -> str:
        names, total = _drifted_names(w), len(_columns(w))
        head = f"{len(names)} of {total}" if total else str(len(names))
        return head + (f': <span class="bad">{kit.e(", ".join(names))}</span>' if names else "")

    def latency(w: WindowRecord) -> str:
        p50, p99 = _get(w.ops, "latency.p50_ms"), _get(w.ops, "latency.p99_ms")
        return f"{_fmt(p50, 3)} / {_fmt(p99, 3)}"

    def calibration(w: WindowRecord) -> str:
        c = w.calibration
        return f"{_fmt(c.get('gap'), 3)} (p {_fmt(c.get('p_value'), 3)})" if c else kit.NA

    def shift(w: WindowRecord) -> str:
        return kit.e((w.shift.summary if w.shift is not None else None) or "–")

    cells: list[tuple[str, Callable[[WindowRecord], str]]] = [
        ("Period", lambda w: f"{kit.when(w.start)} to {kit.when(w.end)}"),
        ("Predictions", lambda w: _fmt(w.rows)),
        ("Labelled", lambda w: _fmt(w.labelled)),
        ("Labelled share", lambda w: kit.pct(kit.share(w.labelled, w.rows))),
        ("Drifted features", drifted),
        ("Prediction drift", lambda w: _drift_cell(w.prediction)),
        ("Label drift", lambda w: _drift_cell(w.label, missing="not enough labels")),
        ("Features drifting within a class", lambda w: _fmt(w.conditional_drifted)),
        (f"Performance ({name}) vs reference", lambda w: _decay_cell(w, metric, min_labels)),
        (f"Label-free estimate ({name})", lambda w: _fmt(_get(w.estimated, name))),
        ("Calibration gap (observed - predicted)", calibration),
        ("Latency p50 / p99 (ms)", latency),
        ("Fallback rate", lambda w: kit.pct(_get(w.ops, "fallback_rate"))),
        ("Error rate", lambda w: kit.pct(_get(w.ops, "error_rate"))),
        ("Quarantine rate", lambda w: kit.pct(w.quarantine_rate)),
        ("Shift", shift),
    ]
    rows = [[kit.e(label), *(cell(w) for w in wins.values())] for label, cell in cells]
    return kit.table("|".join(["", *(WINDOWS[k] for k in wins)]), rows, text=len(wins) + 1)


def _labels(r: MonitoringReport) -> str:
    stats = r.labels
    if stats is None:
        return kit.none("No label accounting yet: no feedback has been joined to the log.")
    rows = [
        [
            f"{kit.e(t)} {kit.none(w, 'span')}",
            (kit.duration if k.endswith("_s") else _fmt)(_finite(getattr(stats, k))),
        ]
        for k, t, w in LABEL_ROWS
    ]
    known = {k for k, _, _ in LABEL_ROWS}
    # the other counts, as the report's JSON has them: one left out while None (or missing
    # from an older report) is not drawn
    others = [
        (k, getattr(stats, k))
        for k in type(stats).model_fields
        if k not in known
        and (getattr(stats, k) is not None or (k in stats.model_fields_set and k not in stats.OMIT))
    ]
    return kit.table("|Count", rows + [[kit.e(k), _fmt(v)] for k, v in others])


# ------------------------------------------------------------------------------------ drift

DRIFT_HEAD = (
    "Feature|Kind|Test|Statistic|p|p adj.|Effect|Value|Threshold|Score|PSI|JS|Missing ref|"
    "Missing cur|Mean ref|Mean cur|Drifted"
)
TEST_KEYS = ("kind", "test", "statistic", "p_value", "p_adjusted")
EFFECT_KEYS = ("effect", "value", "threshold", "score", "psi", "js")
DRIFT_KEYS = (*TEST_KEYS, *EFFECT_KEYS, "missing_ref", "missing_cur", "mean_ref", "mean_cur")
SHORT = {"p_value", "p_adjusted", "score"}  # three significant digits are enough for these


def _drift_row(c: ColumnDriftRecord, drifted: bool) -> list[str]:
    cells = [
        kit.pct(getattr(c, k))
        if k.startswith("missing")
        else _fmt(getattr(c, k), 3 if k in SHORT else 4)
        for k in DRIFT_KEYS
    ]
    return [
        kit.e(_name(c.name)),
        *cells,
        '<span class="bad">yes</span>' if drifted else "no",
    ]


def _drift(r: MonitoringReport) -> str:
    cur = _windows(r)["current"]
    cols = sorted(_columns(cur), key=_score, reverse=True)
    extra = [c for c in (cur.prediction, cur.label) if c is not None] if cur is not None else []
    if cur is None or (not cols and not extra):
        return kit.none("No feature has been compared with the reference yet.")
    drifted = set(_drifted_names(cur))
    out = [
        f'<p class="note">Current window, {kit.when(cur.start)} to {kit.when(cur.end)}. '
        "Score = effect size / its threshold: above 1 the change is large enough to matter; a "
        "feature drifts when its adjusted p-value is below alpha as well.</p>"
    ]
    if cols:
        scores = [kit.num(c.score) for c in cols]
        flags = [str(c.name) in drifted for c in cols]
        hover = [[s, kit.num(c.p_adjusted)] for s, c in zip(scores, cols, strict=True)]
        bar = go.Bar(
            x=[kit.e(c.name) for c in cols],
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
    rows = [_drift_row(c, str(c.name) in drifted) for c in cols]
    classes = ["drifted" if str(c.name) in drifted else "" for c in cols]
    for i, c in enumerate(extra):
        rows.append(_drift_row(c, c.drifted is True))
        sep = "sep" if i == 0 and cols else ""
        classes.append(f"{sep} drifted".strip() if c.drifted is True else sep)
    out.append(kit.table(DRIFT_HEAD, rows, cls=classes, text=(0, 1, 2, 6)))
    return "".join(out)


def _drift_time(r: MonitoringReport) -> str:
    timeline = _timeline(r)
    if not timeline:
        return kit.none("No window in the timeline yet.")
    x = [kit.axis_time(t.start, i) for i, t in enumerate(timeline)]
    feats = [t.features for t in timeline]
    reference = r.reference.features if r.reference is not None else None
    names = [str(n) for n in reference or []]
    scores = [{str(k): v for k, v in (f.scores or {}).items()} if f else {} for f in feats]
    names = list(dict.fromkeys(names + [n for s in scores for n in s]))
    drifted = [[str(n) for n in f.drifted or []] if f is not None else [] for f in feats]
    out = []
    if names:
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
        hits = [(x[i], kit.e(n)) for i, d in enumerate(drifted) for n in d]
        hx, hy = zip(*hits, strict=True) if hits else ((), ())
        marks = go.Scatter(x=hx, y=hy, mode="markers", marker=kit.X_MARK, hoverinfo="skip")
        title = "Score per feature and window (1 = threshold; x = drifted)"
        yaxis = {"autorange": "reversed", "gridcolor": "rgba(0,0,0,0)"}
        layout = kit.layout(title, max(320, 22 * len(names) + 140), showlegend=False, yaxis=yaxis)
        fig = go.Figure([heat, marks], layout)
        out.append(kit.plot(fig, "fig-drift-heatmap"))

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35])
    share = [kit.num(f.share) if f is not None else None for f in feats]
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
    for t, names_d, s in zip(timeline, drifted, share, strict=True):
        cells = [
            _fmt(t.rows),
            kit.pct(s),
            f'<span class="bad">{_fmt(names_d)}</span>' if names_d else kit.NA,
            _drift_cell(t.prediction),
            _drift_cell(t.label, missing="not enough labels"),
            kit.e((t.shift.summary if t.shift is not None else None) or "–"),
        ]
        rows.append([kit.when(t.start), *cells, _fmt(t.alerts or [])])
    head = "Window start|Predictions|Share drifted|Drifted features|Prediction drift|Label drift|Shift|Alerts"
    out.append(_per_window(timeline, head, rows, text=(0, 3, 4, 5, 6, 7)))
    return "".join(out)


# ---------------------------------------------------------------------------- distributions


def _distributions(r: MonitoringReport) -> str:
    current = r.current
    dists = (current.distributions if current is not None else None) or {}
    cumulative = (current.distributions_cumulative if current is not None else None) or {}
    if not dists:
        return kit.none("No distribution to compare yet.")
    cur = _windows(r)["current"]
    cols: dict[str, ColumnDriftRecord | None] = {str(c.name): c for c in _columns(cur)}
    pred = cur.prediction if cur is not None else None
    cols[PREDICTION] = pred
    drifted = set(_drifted_names(cur))
    if pred is not None and pred.drifted is True:
        drifted.add(PREDICTION)
    ranked = sorted(dists, key=lambda n: _score(cols.get(str(n))), reverse=True)
    names = [PREDICTION] * (PREDICTION in dists) + [str(n) for n in ranked if n != PREDICTION]
    charts = [
        _distribution(i, n, dists[n], cumulative.get(n), _score_of(cols.get(n)), n in drifted)
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


def _bins(d: Distribution | None) -> list[str]:
    return list((d.bins if d is not None else None) or [])


def _score_of(col: ColumnDriftRecord | None) -> float | None:
    return kit.num(col.score) if col is not None else None


def _distribution(
    i: int,
    name: str,
    d: Distribution | None,
    cum: Distribution | None,
    score: float | None,
    drifted: bool,
) -> str:
    bins = [kit.e(b) for b in _bins(d)]

    def values(src: Distribution | None, key: str) -> list[float | None]:
        v = [kit.num(x) for x in (getattr(src, key) if src is not None else None) or []]
        return (v + [None] * len(bins))[: len(bins)]

    color = DRIFTED if drifted else STABLE
    bars = [
        go.Bar(x=bins, y=values(d, "reference"), name="reference", marker_color=REFERENCE),
        go.Bar(x=bins, y=values(d, "current"), name="current window", marker_color=color),
    ]
    if cum is not None and _bins(cum) == _bins(d):
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


def _performance(r: MonitoringReport) -> str:
    timeline = _timeline(r)
    metric = _metric(r)
    if not timeline:
        return kit.none("No window in the timeline yet.")
    if metric is None:
        return kit.none("No labelled window yet: performance cannot be measured.")
    x = [kit.axis_time(t.start, i) for i, t in enumerate(timeline)]
    realized = [kit.num(_get(t.performance, metric)) for t in timeline]
    final = [kit.num(_get(t.performance_final, metric)) for t in timeline]
    est = [kit.num(_get(t.estimated, metric)) for t in timeline]
    decays = [t.decay for t in timeline]
    # the verdict's limit is the drop allowed: drawn, it is the worst value allowed
    allowed = [
        (kit.num(d.reference), kit.num(d.limit)) if d is not None else (None, None) for d in decays
    ]
    sign = -1.0 if higher_is_better(metric) else 1.0
    limit = [b + sign * a if b is not None and a is not None else None for b, a in allowed]
    labelled = [kit.share(t.labelled, t.rows) for t in timeline]
    ref = kit.num(_get(r.reference.metrics if r.reference is not None else None, metric))

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
    verdicts = [d.decayed if d is not None else None for d in decays]
    decayed = [i for i, v in enumerate(verdicts) if v is True]
    if decayed:
        dx, dy = [x[i] for i in decayed], [realized[i] for i in decayed]
        mark = {"symbol": "x", "size": 12, "color": DRIFTED}
        fig.add_scatter(x=dx, y=dy, mode="markers", name="decayed", marker=mark, secondary_y=True)
    share_axis = {"title": {"text": "labelled share"}, "tickformat": ".0%", "range": [0, 1]}
    axes = {"yaxis": {**share_axis, "side": "right", "showgrid": False}}
    axes["yaxis2"] = {"title": {"text": kit.e(metric)}, "side": "left", "tickmode": "auto"}
    fig.update_layout(kit.layout(f"{kit.e(metric)} per window", 420, **axes))

    starts = [kit.when(t.start) for t in timeline]
    counts = [_fmt(t.labelled) for t in timeline]
    numbers = [[_fmt(v) for v in values] for values in (realized, final, est, limit)]
    rows = kit.transpose(
        starts,
        counts,
        [kit.pct(v) for v in labelled],
        *numbers,
        [_verdict_cell(v) for v in verdicts],
    )
    head = "Window start|Labelled|Share|Realized at end|Realized now|Estimate|Worst allowed|Verdict"
    note = (
        f'<p class="note">Reference {kit.e(metric)}: {_fmt(ref)}. "Realized at end" counts the '
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


def _ops(r: MonitoringReport) -> str:
    timeline = _timeline(r)
    if not timeline:
        return kit.none("No window in the timeline yet.")
    x = [kit.axis_time(t.start, i) for i, t in enumerate(timeline)]
    # quarantine_rate sits beside ops (it is the ingestion's, not the server's)
    values = [{**(t.ops or {}), "quarantine_rate": t.quarantine_rate} for t in timeline]
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
    cells = [[_fmt(v, 3) if n == 1 else kit.pct(v) for v in series[k]] for k, _, _, n in OPS_SERIES]
    rows = kit.transpose([kit.when(t.start) for t in timeline], *cells)
    head = "Window start|p50 (ms)|p99 (ms)|Fallback|Errors|Quarantined"
    return kit.plot(fig, "fig-ops") + _per_window(timeline, head, rows)


# ----------------------------------------------------------------------------------- alerts

ALERT_HEAD = "Rule|Status|Severity|Metric|Window|Value|Condition|Window start|First|Last|Occurrences|Notified"


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def _alert_row(a: Alert) -> list[str]:
    op = (a.details or {}).get("op")
    notified = kit.when(_iso(a.notified_at)) if a.notified_at else '<span class="na">no</span>'
    return [
        _fmt(a.rule),
        f'<span class="bad">{kit.e(a.status)}</span>' if a.status == "firing" else _fmt(a.status),
        *(_fmt(v) for v in (a.severity, a.metric, a.window, a.value)),
        (f"{kit.e(op)} " if op else "") + _fmt(a.threshold),
        *(kit.when(_iso(t)) for t in (a.window_start, a.first_at, a.last_at)),
        _fmt(a.occurrences),
        notified,
    ]


def _alerts(r: MonitoringReport) -> str:
    out = []
    for alerts, title, empty in (
        (r.alerts, "Raised while judging this report's new windows", "No alert was raised."),
        (r.active_alerts, "Active now", "No alert is active."),
    ):
        out.append(f"<h3>{kit.e(title)}</h3>")
        if alerts:
            classes = ["drifted" if a.status == "firing" else "" for a in alerts]
            rows = [_alert_row(a) for a in alerts]
            out.append(kit.table(ALERT_HEAD, rows, cls=classes, text=(0, 1, 2, 3, 4, 7, 8, 9, 11)))
        else:
            out.append(kit.none(empty))
    return "".join(out)


__all__ = ["render_html", "write_html"]
