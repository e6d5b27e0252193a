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

import contextlib
import html
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from loopml.evaluation import higher_is_better
from loopml.monitoring._profile import LABEL, PREDICTION

WINDOWS = {"current": "Current window", "sliding": "Sliding window", "cumulative": "All windows"}
TOP_DISTRIBUTIONS = 12
# Scores are effect / threshold: 1 is the line, and one score in the hundreds would flatten the rest.
SCORE_CAP = 5.0
HEAT_CAP = 2.0
HEAT_SCALE = [[0, "#f3f6fb"], [0.3, "#c6dbef"], [0.5, "#fdd49e"], [0.75, "#f46d43"], [1, "#a50026"]]
HEAT = {"zmin": 0, "zmax": HEAT_CAP, "colorscale": HEAT_SCALE, "hoverongaps": False}
OPEN_ROWS = 20  # per-window tables longer than this start folded

DRIFTED, STABLE, REFERENCE, GREY = "#d62728", "#4c78a8", "#9aa5b1", "#52606d"
X_MARK = {"symbol": "x", "color": "black", "size": 8}
CONFIG = {"displaylogo": False, "responsive": True}
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"}
LEGEND = {"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0}
AXIS = {"gridcolor": "#eef0f3", "linecolor": "#cbd2d9", "zeroline": False, "automargin": True}
# Plotly's default theme weighs about 10 kB in every figure; this one, a few hundred bytes.
TEMPLATE = go.layout.Template(
    layout={"font": FONT, "paper_bgcolor": "white", "plot_bgcolor": "white", "xaxis": AXIS,
            "yaxis": AXIS, "legend": LEGEND, "hovermode": "closest"}
)  # fmt: skip
NA = '<span class="na">–</span>'
Words = int | tuple[int, ...]  # a table's columns of words: the first n, or these
TD_TEXT = '<td class="text">'
NOSCRIPT = '<noscript><p class="note">No JavaScript: the charts are not drawn.</p></noscript>'
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

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  color: #1f2933; background: #f5f7fa; margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 8px 24px 48px; }
h1 { font-size: 24px; margin: 8px 0 4px; } h2 { font-size: 19px; margin: 0 0 12px; } h3 { font-size: 15px; margin: 16px 0 8px; }
section, header { background: #fff; border: 1px solid #e4e7eb; border-radius: 6px; padding: 16px 20px; margin: 16px 0; }
nav { margin-top: 12px; } nav a { margin-right: 14px; color: #2563eb; text-decoration: none; }
.meta { color: #52606d; margin: 2px 0; } .message { font-size: 16px; color: #52606d; } .note { color: #52606d; font-size: 13px; }
.verdict { border-left: 4px solid #3f9142; background: #f0f9f0; padding: 8px 12px; margin: 12px 0; }
.verdict.shifted { border-color: #d62728; background: #fdf0f0; } .verdict ul { margin: 4px 0; }
.verdict.unknown { border-color: #d69e2e; background: #fdf8ec; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #e4e7eb; padding: 4px 10px; text-align: right; vertical-align: top; }
th { background: #f5f7fa; font-weight: 600; } th.text, td.text { text-align: left; }
td { white-space: nowrap; } td.text { white-space: normal; }
tr.drifted td { background: #fdf0f0; } tr.sep td { border-top: 2px solid #cbd2d9; }
.bad { color: #b91c1c; font-weight: 600; } .good { color: #2f7a32; } .na { color: #9aa5b1; }
.scroll { overflow-x: auto; } details > summary { cursor: pointer; color: #2563eb; margin: 8px 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 8px 16px; }
"""

# Plotly sizes a chart drawn inside a closed <details> to nothing; redraw it when opened.
RESIZE = """document.querySelectorAll("details").forEach(function (d) {
  d.addEventListener("toggle", function () { if (!d.open || !window.Plotly) { return; }
    d.querySelectorAll(".js-plotly-plot").forEach(function (p) { Plotly.Plots.resize(p); }); });
});"""


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one HTML page with plotly.js inside, viewable without a network."""
    r = _d(report)
    builders = (_summary, _labels, _drift, _drift_time, _distributions, _performance, _ops, _alerts)
    body = [_header(r)]
    for (key, title), build in zip(SECTIONS, builders, strict=True):
        body.append(f'<section id="{key}"><h2>{_e(title)}</h2>{build(r)}</section>')
    model = _e(r.get("model") if r.get("model") is not None else "model")
    page = "\n".join(body)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>loopml monitoring: {model}</title>\n<style>{CSS}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n<main>\n'
        f"{NOSCRIPT}\n{page}\n</main>\n<script>{RESIZE}</script>\n</body>\n</html>\n"
    )


def write_html(report: Mapping[str, Any], path: str | Path) -> Path:
    """Render the report and write it to ``path`` atomically: a reader of the file sees the old
    page or the new one, never half of one."""
    target = Path(path)
    text = render_html(report)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the page from a web server
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


# ----------------------------------------------------------------------------------- values


def _d(x: Any) -> dict[str, Any]:
    return dict(x) if isinstance(x, Mapping) else {}


def _l(x: Any) -> list[Any]:
    return list(x) if isinstance(x, list | tuple) else []


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: Any, digits: int = 4) -> str:
    """A value for a table cell, escaped."""
    if x is None:
        return NA
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return _e(x)
        return f"{int(x):,}" if x.is_integer() and abs(x) < 1e15 else f"{x:.{digits}g}"
    if isinstance(x, list | tuple):
        return _e(", ".join(str(v) for v in x)) if x else NA
    return _e(x)


def _pct(x: Any) -> str:
    v = _num(x)
    return NA if v is None else f"{100 * v:.3g}%"


def _share(part: Any, whole: Any) -> float | None:
    n, d = _num(part), _num(whole)
    return n / d if n is not None and d else None


def _time(x: Any) -> datetime | None:
    """An ISO time, moved to UTC when it has an offset (plotly.js reads no offsets)."""
    if isinstance(x, str):
        with contextlib.suppress(ValueError):
            t = datetime.fromisoformat(x)
            return t.astimezone(UTC) if t.tzinfo is not None else t
    return None


def _when(x: Any) -> str:
    """An ISO time as ``2013-04-01 03:59`` in UTC (midnight as the day alone); anything else
    escaped as it is."""
    t = _time(x)
    if t is None:
        return NA if x is None else _e(x)
    return t.strftime("%Y-%m-%d" if t.hour == t.minute == 0 else "%Y-%m-%d %H:%M")


def _axis_time(x: Any, i: int) -> str:
    t = _time(x)
    if t is None:
        return f"window {i + 1}" if x is None else _e(x)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _duration(x: Any) -> str:
    s = _num(x)
    if s is None or s < 120:
        return NA if s is None else f"{s:.3g} s"
    unit, name = (60, "min") if s < 7200 else (3600, "h") if s < 172800 else (86400, "days")
    return f"{s / unit:.3g} {name} ({_fmt(s)} s)"


def _name(name: Any) -> str:
    return {PREDICTION: "prediction (model output)", LABEL: "label"}.get(str(name), str(name))


def _score(col: Mapping[str, Any]) -> float:
    return _num(col.get("score")) or 0.0


def _columns(window: Mapping[str, Any]) -> list[dict[str, Any]]:
    cols = _l(_d(window.get("features")).get("columns"))
    return [_d(c) for c in cols if isinstance(c, Mapping)]


def _drifted_names(window: Mapping[str, Any]) -> list[str]:
    names = [str(n) for n in _l(_d(window.get("features")).get("drifted"))]
    for c in _columns(window):
        if c.get("drifted") is True and str(c.get("name")) not in names:
            names.append(str(c.get("name")))
    return names


def _windows(r: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    current = _d(r.get("current"))
    return {k: _d(current.get(k)) for k in WINDOWS}


def _timeline(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [_d(t) for t in _l(r.get("timeline")) if isinstance(t, Mapping)]


def _metric(r: Mapping[str, Any]) -> str | None:
    """The metric performance is judged on: the decay verdict's, else the configured one."""
    found = [_d(t.get("decay")).get("metric") for t in [_windows(r)["current"], *_timeline(r)]]
    found.append(_d(_d(r.get("settings")).get("performance")).get("metric"))
    return next((m for m in found if isinstance(m, str) and m), None)


def _transpose(*columns: list[str]) -> list[list[str]]:
    return [list(row) for row in zip(*columns, strict=True)]


# ----------------------------------------------------------------------------------- markup


def _table(head: str, rows: list[list[str]], *, cls: Sequence[str] = (), text: Words = 1) -> str:
    """A table: ``head`` is the column titles split on ``|`` (plain text), cells are HTML; the
    columns in ``text`` (for a number, the first ones) hold words and align left."""
    left = set(range(text)) if isinstance(text, int) else set(text)
    tag = ['<th class="text">' if j in left else "<th>" for j in range(len(head.split("|")))]
    th = "".join(f"{t}{_e(h)}</th>" for t, h in zip(tag, head.split("|"), strict=True))
    out = []
    for i, row in enumerate(rows):
        tds = "".join((TD_TEXT if j in left else "<td>") + c + "</td>" for j, c in enumerate(row))
        tr = f'<tr class="{cls[i]}">' if i < len(cls) and cls[i] else "<tr>"
        out.append(f"{tr}{tds}</tr>")
    body = "".join(out)
    return f'<div class="scroll"><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


def _fold(title: str, inner: str, *, open_: bool) -> str:
    return f"<details{' open' if open_ else ''}><summary>{_e(title)}</summary>{inner}</details>"


def _per_window(timeline: list[Any], head: str, rows: list[list[str]], text: Words = 1) -> str:
    table = _table(head, rows, text=text)
    return _fold(f"Every window ({len(timeline)})", table, open_=len(timeline) <= OPEN_ROWS)


def _none(text: str, tag: str = "p") -> str:
    return f'<{tag} class="note">{_e(text)}</{tag}>'


def _plot(fig: go.Figure, div_id: str) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=CONFIG))


def _line(x: list[str], y: list[Any], name: str, color: str, dash: str = "solid") -> go.Scatter:
    line = {"color": color, "dash": dash}
    return go.Scatter(x=x, y=y, mode="lines+markers", name=name, line=line)


def _layout(title: str, height: int, **extra: Any) -> dict[str, Any]:
    """One figure's layout, set in one go: plotly validates every update, and piecemeal
    updates of 30 figures cost seconds."""
    heading = {"text": title, "x": 0, "font": {"size": 14}} if title else None
    margin = {"l": 60, "r": 20, "t": 40 if title else 24, "b": 40}
    return {"template": TEMPLATE, "title": heading, "height": height, "margin": margin, **extra}


# ----------------------------------------------------------------------------------- header


def _header(r: Mapping[str, Any]) -> str:
    period, settings = _d(r.get("period")), _d(r.get("settings"))
    drift, perf = _d(settings.get("drift")), _d(settings.get("performance"))
    title = _e(r.get("model") if r.get("model") is not None else "unknown model")
    facts = [
        f"version {_fmt(r.get('version'))}" if r.get("version") is not None else "",
        f"{_fmt(r.get('rows'))} predictions" if r.get("rows") is not None else "",
        f"{_when(period.get('start'))} to {_when(period.get('end'))}" if period else "",
        f"generated {_when(r.get('generated_at'))} (times in UTC)" if r.get("generated_at") else "",
    ]
    meta = " · ".join(f for f in facts if f)
    out = [f'<header><h1>Monitoring report: {title}</h1><p class="meta">{meta}</p>']
    if settings:
        drop = _fmt(perf.get("max_drop")) + (" (relative)" if perf.get("relative") else "")
        out.append(
            f'<p class="meta">window {_fmt(settings.get("window"))}, '
            f"sliding {_fmt(settings.get('sliding'))} · drift: alpha {_fmt(drift.get('alpha'))}, "
            f"correction {_fmt(drift.get('correction'))}, at least {_fmt(drift.get('min_rows'))} "
            f"rows · performance: {_fmt(_metric(r))}, max drop {drop}, at least "
            f"{_fmt(perf.get('min_labels'))} labels</p>"
        )
    if r.get("message") is not None:
        out.append(f'<p class="message">{_e(r.get("message"))}</p>')
    elif not _windows(r)["current"] and not _timeline(r):
        out.append('<p class="message">This report holds no evaluated window.</p>')
    if _windows(r)["current"]:
        out.append(_verdict(_windows(r)["current"]))
    first = _d(r.get("first_detected"))
    if first:
        never = '<span class="na">not seen</span>'
        rows = [
            [_e(SHIFT_WORDS[k][0]), _when(first[k]) if first.get(k) else never] for k in SHIFT_WORDS
        ]
        out.append("<h3>First detected (window start)</h3>")
        out.append(_table("Kind|First window", rows, text=2))
    links = "".join(f'<a href="#{k}">{_e(t)}</a>' for k, t in SECTIONS)
    out.append(f"<nav>{links}</nav></header>")
    return "".join(out)


def _flagged(window: Mapping[str, Any]) -> list[str]:
    shift = _d(window.get("shift"))
    kinds = [k for k in ("covariate", "label", "concept", "prediction") if shift.get(k) is True]
    return kinds + (["decay"] if _d(window.get("decay")).get("decayed") is True else [])


def _verdict(cur: Mapping[str, Any]) -> str:
    """The current window's shift, in words."""
    shift = _d(cur.get("shift"))
    flagged = _flagged(cur)
    summary = shift.get("summary")
    if not isinstance(summary, str):
        summary = " + ".join(SHIFT_WORDS[k][0].lower() for k in flagged) or "no shift"
    known = shift.get("labels_known")
    items = []
    for k in flagged:
        title, words = SHIFT_WORDS[k]
        names = _drifted_names(cur) if k == "covariate" else []
        extra = f" ({_e(', '.join(names))})" if names else ""
        items.append(f"<li><strong>{_e(title)}</strong>: {_e(words)}{extra}.</li>")
    if known is False:
        items.append(f"<li>{NO_LABELS}</li>")
    elif not flagged and shift:
        items.append("<li>Inputs, predictions, labels and performance match the reference.</li>")
    cls = "shifted" if flagged else ("unknown" if known is False else "ok")
    span = f"{_when(cur.get('start'))} to {_when(cur.get('end'))}"
    head = f"Current window ({span}): {_e(summary)}"
    return f'<div class="verdict {cls}"><strong>{head}</strong><ul>{"".join(items)}</ul></div>'


# ---------------------------------------------------------------------------------- summary


def _drift_cell(col: Any, *, missing: str = "–") -> str:
    c = _d(col)
    if not c:
        return f'<span class="na">{_e(missing)}</span>'
    drifted = c.get("drifted") is True
    flag = '<span class="bad">drifted</span>' if drifted else '<span class="good">stable</span>'
    return f"score {_fmt(c.get('score'), 3)}, {flag} (p adj. {_fmt(c.get('p_adjusted'), 3)})"


def _verdict_cell(decayed: Any, min_labels: Any = None) -> str:
    if decayed is True:
        return '<span class="bad">decayed</span>'
    if decayed is False:
        return '<span class="good">within limit</span>'
    why = f" (fewer than {_fmt(min_labels)} labels)" if min_labels is not None else ""
    return f'<span class="na">not judged{why}</span>'


def _decay_cell(w: Mapping[str, Any], metric: str | None, min_labels: Any) -> str:
    dec = _d(w.get("decay"))
    value = _d(w.get("performance")).get(metric) if metric else None
    value = dec.get("value") if value is None else value
    if value is None and not dec:
        return NA
    ref, drop, limit = dec.get("reference"), _fmt(dec.get("drop"), 3), _fmt(dec.get("limit"))
    verdict = _verdict_cell(dec.get("decayed"), min_labels)
    return f"{_fmt(value)} vs reference {_fmt(ref)} (drop {drop}, allowed {limit}): {verdict}"


def _summary(r: Mapping[str, Any]) -> str:
    wins = _windows(r)
    kinds = [k for k in WINDOWS if wins[k]]
    if not kinds:
        return _none("No window has been evaluated yet.")
    metric = _metric(r)
    name = metric or "metric"
    min_labels = _d(_d(r.get("settings")).get("performance")).get("min_labels")

    def drifted(w: dict[str, Any]) -> str:
        names, total = _drifted_names(w), len(_columns(w))
        head = f"{len(names)} of {total}" if total else str(len(names))
        return head + (f': <span class="bad">{_e(", ".join(names))}</span>' if names else "")

    def ops(w: dict[str, Any], key: str) -> Any:
        return _d(w.get("ops")).get(key)

    def latency(w: dict[str, Any]) -> str:
        return f"{_fmt(ops(w, 'latency.p50_ms'), 3)} / {_fmt(ops(w, 'latency.p99_ms'), 3)}"

    def calibration(w: dict[str, Any]) -> str:
        c = _d(w.get("calibration"))
        return f"{_fmt(c.get('gap'), 3)} (p {_fmt(c.get('p_value'), 3)})" if c else NA

    cells: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("Period", lambda w: f"{_when(w.get('start'))} to {_when(w.get('end'))}"),
        ("Predictions", lambda w: _fmt(w.get("rows"))),
        ("Labelled", lambda w: _fmt(w.get("labelled"))),
        ("Labelled share", lambda w: _pct(_share(w.get("labelled"), w.get("rows")))),
        ("Drifted features", drifted),
        ("Prediction drift", lambda w: _drift_cell(w.get("prediction"))),
        ("Label drift", lambda w: _drift_cell(w.get("label"), missing="not enough labels")),
        ("Features drifting within a class", lambda w: _fmt(w.get("conditional_drifted"))),
        (f"Performance ({name}) vs reference", lambda w: _decay_cell(w, metric, min_labels)),
        (f"Label-free estimate ({name})", lambda w: _fmt(_d(w.get("estimated")).get(name))),
        ("Calibration gap (observed - predicted)", calibration),
        ("Latency p50 / p99 (ms)", latency),
        ("Fallback rate", lambda w: _pct(ops(w, "fallback_rate"))),
        ("Error rate", lambda w: _pct(ops(w, "error_rate"))),
        ("Quarantine rate", lambda w: _pct(w.get("quarantine_rate"))),
        ("Shift", lambda w: _e(_d(w.get("shift")).get("summary") or "–")),
    ]
    rows = [[_e(label), *(cell(wins[k]) for k in kinds)] for label, cell in cells]
    return _table("|".join(["", *(WINDOWS[k] for k in kinds)]), rows, text=len(kinds) + 1)


def _labels(r: Mapping[str, Any]) -> str:
    stats = _d(r.get("labels"))
    if not stats:
        return _none("No label accounting yet: no feedback has been joined to the log.")
    rows = [
        [f"{_e(t)} {_none(w, 'span')}", (_duration if k.endswith("_s") else _fmt)(stats.get(k))]
        for k, t, w in LABEL_ROWS
    ]
    known = {k for k, _, _ in LABEL_ROWS}
    return _table("|Count", rows + [[_e(k), _fmt(v)] for k, v in stats.items() if k not in known])


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
        _pct(c.get(k)) if k.startswith("missing") else _fmt(c.get(k), 3 if k in SHORT else 4)
        for k in DRIFT_KEYS
    ]
    return [_e(_name(c.get("name"))), *cells, '<span class="bad">yes</span>' if drifted else "no"]


def _drift(r: Mapping[str, Any]) -> str:
    cur = _windows(r)["current"]
    cols = sorted(_columns(cur), key=_score, reverse=True)
    extra = [_d(cur.get(k)) for k in ("prediction", "label") if _d(cur.get(k))]
    if not cols and not extra:
        return _none("No feature has been compared with the reference yet.")
    drifted = set(_drifted_names(cur))
    out = [
        f'<p class="note">Current window, {_when(cur.get("start"))} to {_when(cur.get("end"))}. '
        "Score = effect size / its threshold: above 1 the change is large enough to matter; a "
        "feature drifts when its adjusted p-value is below alpha as well.</p>"
    ]
    if cols:
        scores = [_num(c.get("score")) for c in cols]
        flags = [str(c.get("name")) in drifted for c in cols]
        hover = [[s, _num(c.get("p_adjusted"))] for s, c in zip(scores, cols, strict=True)]
        bar = go.Bar(
            x=[_e(c.get("name")) for c in cols],
            y=[None if s is None else min(s, SCORE_CAP) for s in scores],
            marker_color=[DRIFTED if f else STABLE for f in flags],
            customdata=hover,
            hovertemplate="%{x}<br>score %{customdata[0]:.3g}<br>p adj. %{customdata[1]:.3g}"
            "<extra></extra>",
        )
        yaxis = {"title": {"text": f"score (capped at {SCORE_CAP:g})"}}
        layout = _layout("", 380, showlegend=False, yaxis=yaxis, xaxis={"tickangle": -45})
        fig = go.Figure(bar, layout)
        fig.add_hline(y=1, line_dash="dash", line_color=GREY, annotation_text="threshold")
        out.append(_plot(fig, "fig-drift-features"))
    rows = [_drift_row(c, str(c.get("name")) in drifted) for c in cols]
    classes = ["drifted" if str(c.get("name")) in drifted else "" for c in cols]
    for i, c in enumerate(extra):
        rows.append(_drift_row(c, c.get("drifted") is True))
        sep = "sep" if i == 0 and cols else ""
        classes.append(f"{sep} drifted".strip() if c.get("drifted") is True else sep)
    out.append(_table(DRIFT_HEAD, rows, cls=classes, text=(0, 1, 2, 6)))
    return "".join(out)


def _drift_time(r: Mapping[str, Any]) -> str:
    timeline = _timeline(r)
    if not timeline:
        return _none("No window in the timeline yet.")
    x = [_axis_time(t.get("start"), i) for i, t in enumerate(timeline)]
    feats = [_d(t.get("features")) for t in timeline]
    names = [str(n) for n in _l(_d(r.get("reference")).get("features"))]
    names = list(dict.fromkeys(names + [str(n) for f in feats for n in _d(f.get("scores"))]))
    out = []
    if names:
        scores = [{str(k): v for k, v in _d(f.get("scores")).items()} for f in feats]
        raw = [[_num(s.get(n)) for s in scores] for n in names]
        heat = go.Heatmap(
            x=x,
            y=[_e(n) for n in names],
            z=[[None if v is None else min(v, HEAT_CAP) for v in row] for row in raw],
            customdata=raw,
            colorbar={"title": {"text": "score"}},
            hovertemplate="%{y}<br>%{x}<br>score %{customdata:.3g}<extra></extra>",
            **HEAT,
        )
        hits = [(x[i], _e(n)) for i, f in enumerate(feats) for n in map(str, _l(f.get("drifted")))]
        hx, hy = zip(*hits, strict=True) if hits else ((), ())
        marks = go.Scatter(x=hx, y=hy, mode="markers", marker=X_MARK, hoverinfo="skip")
        title = "Score per feature and window (1 = threshold; x = drifted)"
        yaxis = {"autorange": "reversed", "gridcolor": "rgba(0,0,0,0)"}
        layout = _layout(title, max(320, 22 * len(names) + 140), showlegend=False, yaxis=yaxis)
        fig = go.Figure([heat, marks], layout)
        out.append(_plot(fig, "fig-drift-heatmap"))

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35])
    share = [_num(f.get("share")) for f in feats]
    fig.add_trace(_line(x, share, "share of features drifted", STABLE), row=1, col=1)
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
    fig.update_layout(_layout(title, 420, showlegend=False, yaxis=share_axis, yaxis2=yaxis2))
    out.append(_plot(fig, "fig-drift-share"))

    rows = []
    for t, f in zip(timeline, feats, strict=True):
        names_d = _l(f.get("drifted"))
        drifted = f'<span class="bad">{_fmt(names_d)}</span>' if names_d else NA
        label = _drift_cell(t.get("label"), missing="not enough labels")
        shift = _e(_d(t.get("shift")).get("summary") or "–")
        prediction = _drift_cell(t.get("prediction"))
        cells = [_fmt(t.get("rows")), _pct(f.get("share")), drifted, prediction, label, shift]
        rows.append([_when(t.get("start")), *cells, _fmt(_l(t.get("alerts")))])
    head = "Window start|Predictions|Share drifted|Drifted features|Prediction drift|Label drift|Shift|Alerts"
    out.append(_per_window(timeline, head, rows, text=(0, 3, 4, 5, 6, 7)))
    return "".join(out)


# ---------------------------------------------------------------------------- distributions


def _distributions(r: Mapping[str, Any]) -> str:
    current = _d(r.get("current"))
    dists = _d(current.get("distributions"))
    cumulative = _d(current.get("distributions_cumulative"))
    if not dists:
        return _none("No distribution to compare yet.")
    cur = _windows(r)["current"]
    cols = {str(c.get("name")): c for c in _columns(cur)}
    pred = _d(cur.get("prediction"))
    cols[PREDICTION] = pred
    drifted = set(_drifted_names(cur)) | ({PREDICTION} if pred.get("drifted") is True else set())
    ranked = sorted(dists, key=lambda n: _score(cols.get(str(n), {})), reverse=True)
    names = [PREDICTION] * (PREDICTION in dists) + [str(n) for n in ranked if n != PREDICTION]
    charts = [
        _distribution(
            i, n, dists[n], cumulative.get(n), _num(cols.get(n, {}).get("score")), n in drifted
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
        out.append(_fold(f"The other {len(charts) - top} features", rest, open_=False))
    return "".join(out)


def _distribution(i: int, name: str, d: Any, cum: Any, score: float | None, drifted: bool) -> str:
    d, cum = _d(d), _d(cum)
    bins = [_e(b) for b in _l(d.get("bins"))]

    def values(src: dict[str, Any], key: str) -> list[float | None]:
        v = [_num(x) for x in _l(src.get(key))]
        return (v + [None] * len(bins))[: len(bins)]

    color = DRIFTED if drifted else STABLE
    bars = [
        go.Bar(x=bins, y=values(d, "reference"), name="reference", marker_color=REFERENCE),
        go.Bar(x=bins, y=values(d, "current"), name="current window", marker_color=color),
    ]
    if cum and _l(cum.get("bins")) == _l(d.get("bins")):
        hidden = {"marker_color": "#72b7b2", "visible": "legendonly"}
        bars.append(go.Bar(x=bins, y=values(cum, "current"), name="all windows", **hidden))
    title = _e(_name(name))
    title += f" · score {score:.3g}" if score is not None else ""
    title += " · drifted" if drifted else ""
    axes = {"yaxis": {"tickformat": ".0%", "rangemode": "tozero"}, "xaxis": {"type": "category"}}
    layout = _layout(title, 320, barmode="group", bargap=0.2, **axes)
    fig = go.Figure(bars, layout)
    return f"<div>{_plot(fig, f'fig-dist-{i}')}</div>"


# ------------------------------------------------------------------------------ performance


def _performance(r: Mapping[str, Any]) -> str:
    timeline = _timeline(r)
    metric = _metric(r)
    if not timeline:
        return _none("No window in the timeline yet.")
    if metric is None:
        return _none("No labelled window yet: performance cannot be measured.")
    x = [_axis_time(t.get("start"), i) for i, t in enumerate(timeline)]
    realized = [_num(_d(t.get("performance")).get(metric)) for t in timeline]
    final = [_num(_d(t.get("performance_final")).get(metric)) for t in timeline]
    est = [_num(_d(t.get("estimated")).get(metric)) for t in timeline]
    decays = [_d(t.get("decay")) for t in timeline]
    # the verdict's limit is the drop allowed: drawn, it is the worst value allowed
    allowed = [(_num(d.get("reference")), _num(d.get("limit"))) for d in decays]
    sign = -1.0 if higher_is_better(metric) else 1.0
    limit = [b + sign * a if b is not None and a is not None else None for b, a in allowed]
    labelled = [_share(t.get("labelled"), t.get("rows")) for t in timeline]
    ref = _num(_d(_d(r.get("reference")).get("metrics")).get(metric))

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
        fig.add_trace(_line(x, y, name, color, dash), secondary_y=True)
    decayed = [i for i, d in enumerate(decays) if d.get("decayed") is True]
    if decayed:
        dx, dy = [x[i] for i in decayed], [realized[i] for i in decayed]
        mark = {"symbol": "x", "size": 12, "color": DRIFTED}
        fig.add_scatter(x=dx, y=dy, mode="markers", name="decayed", marker=mark, secondary_y=True)
    share_axis = {"title": {"text": "labelled share"}, "tickformat": ".0%", "range": [0, 1]}
    axes = {"yaxis": {**share_axis, "side": "right", "showgrid": False}}
    axes["yaxis2"] = {"title": {"text": _e(metric)}, "side": "left", "tickmode": "auto"}
    fig.update_layout(_layout(f"{_e(metric)} per window", 420, **axes))

    starts = [_when(t.get("start")) for t in timeline]
    counts = [_fmt(t.get("labelled")) for t in timeline]
    numbers = [[_fmt(v) for v in values] for values in (realized, final, est, limit)]
    verdicts = [_verdict_cell(d.get("decayed")) for d in decays]
    rows = _transpose(starts, counts, [_pct(v) for v in labelled], *numbers, verdicts)
    head = "Window start|Labelled|Share|Realized at end|Realized now|Estimate|Worst allowed|Verdict"
    note = (
        f'<p class="note">Reference {_e(metric)}: {_fmt(ref)}. "Realized at end" counts the '
        'labels known when the window closed; "realized now" every label received since.</p>'
    )
    return _plot(fig, "fig-performance") + note + _per_window(timeline, head, rows, text=(0, 7))


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
        return _none("No window in the timeline yet.")
    x = [_axis_time(t.get("start"), i) for i, t in enumerate(timeline)]
    # quarantine_rate sits beside ops (it is the ingestion's, not the server's)
    values = [{**_d(t.get("ops")), "quarantine_rate": t.get("quarantine_rate")} for t in timeline]
    series = {key: [_num(v.get(key)) for v in values] for key, *_ in OPS_SERIES}
    titles = ("Latency (ms)", "Rates")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=titles)
    for key, name, color, row in OPS_SERIES:
        fig.add_trace(_line(x, series[key], name, color), row=row, col=1)
    axes = {
        "yaxis": {"rangemode": "tozero"},
        "yaxis2": {"tickformat": ".1%", "rangemode": "tozero"},
    }
    fig.update_layout(_layout("", 460, **axes))
    cells = [[_fmt(v, 3) if n == 1 else _pct(v) for v in series[k]] for k, _, _, n in OPS_SERIES]
    rows = _transpose([_when(t.get("start")) for t in timeline], *cells)
    head = "Window start|p50 (ms)|p99 (ms)|Fallback|Errors|Quarantined"
    return _plot(fig, "fig-ops") + _per_window(timeline, head, rows)


# ----------------------------------------------------------------------------------- alerts

ALERT_HEAD = "Rule|Status|Severity|Metric|Window|Value|Condition|Window start|First|Last|Occurrences|Notified"


def _alert_row(a: dict[str, Any]) -> list[str]:
    op = _d(a.get("details")).get("op")
    status = a.get("status")
    notified = _when(a.get("notified_at")) if a.get("notified_at") else '<span class="na">no</span>'
    return [
        _fmt(a.get("rule")),
        f'<span class="bad">{_e(status)}</span>' if status == "firing" else _fmt(status),
        *(_fmt(a.get(k)) for k in ("severity", "metric", "window", "value")),
        (f"{_e(op)} " if op else "") + _fmt(a.get("threshold")),
        *(_when(a.get(k)) for k in ("window_start", "first_at", "last_at")),
        _fmt(a.get("occurrences")),
        notified,
    ]


def _alerts(r: Mapping[str, Any]) -> str:
    out = []
    for key, title, empty in (
        ("alerts", "Raised while judging this report's new windows", "No alert was raised."),
        ("active_alerts", "Active now", "No alert is active."),
    ):
        alerts = [_d(a) for a in _l(r.get(key))]
        out.append(f"<h3>{_e(title)}</h3>")
        if alerts:
            classes = ["drifted" if a.get("status") == "firing" else "" for a in alerts]
            rows = [_alert_row(a) for a in alerts]
            out.append(_table(ALERT_HEAD, rows, cls=classes, text=(0, 1, 2, 3, 4, 7, 8, 9, 11)))
        else:
            out.append(_none(empty))
    return "".join(out)


__all__ = ["render_html", "write_html"]
