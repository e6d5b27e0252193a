"""The toolkit of loopml's HTML pages (the monitoring report, the loop report): one stylesheet,
values formatted for a person (thousands separated, percentages, durations with units, times in
UTC, a dash for nothing), escaped markup for tables and folds, plotly figures in one light theme,
and pages written atomically. Every string a page shows goes through :func:`e` or :func:`fmt`.

>>> fmt(2.4236900000147443), fmt(12345), pct(0.1234), duration(5400.0)
('2.424', '12,345', '12.3%', '90 min (5,400 s)')
"""

from __future__ import annotations

import contextlib
import html
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

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


# ----------------------------------------------------------------------------------- values


def as_dict(x: Any) -> dict[str, Any]:
    return dict(x) if isinstance(x, Mapping) else {}


def as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, list | tuple) else []


def num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt(x: Any, digits: int = 4) -> str:
    """A value for a table cell, escaped."""
    if x is None:
        return NA
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return e(x)
        return f"{int(x):,}" if x.is_integer() and abs(x) < 1e15 else f"{x:.{digits}g}"
    if isinstance(x, list | tuple):
        return e(", ".join(str(v) for v in x)) if x else NA
    return e(x)


def pct(x: Any) -> str:
    v = num(x)
    return NA if v is None else f"{100 * v:.3g}%"


def share(part: Any, whole: Any) -> float | None:
    n, d = num(part), num(whole)
    return n / d if n is not None and d else None


def time(x: Any) -> datetime | None:
    """An ISO time, moved to UTC when it has an offset (plotly.js reads no offsets)."""
    if isinstance(x, str):
        with contextlib.suppress(ValueError):
            t = datetime.fromisoformat(x)
            return t.astimezone(UTC) if t.tzinfo is not None else t
    return None


def when(x: Any) -> str:
    """An ISO time as ``2013-04-01 03:59`` in UTC (midnight as the day alone); anything else
    escaped as it is."""
    t = time(x)
    if t is None:
        return NA if x is None else e(x)
    return t.strftime("%Y-%m-%d" if t.hour == t.minute == 0 else "%Y-%m-%d %H:%M")


def axis_time(x: Any, i: int) -> str:
    t = time(x)
    if t is None:
        return f"window {i + 1}" if x is None else e(x)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def duration(x: Any) -> str:
    s = num(x)
    if s is None or s < 120:
        return NA if s is None else f"{s:.3g} s"
    unit, name = (60, "min") if s < 7200 else (3600, "h") if s < 172800 else (86400, "days")
    return f"{s / unit:.3g} {name} ({fmt(s)} s)"


def transpose(*columns: list[str]) -> list[list[str]]:
    return [list(row) for row in zip(*columns, strict=True)]


def table(head: str, rows: list[list[str]], *, cls: Sequence[str] = (), text: Words = 1) -> str:
    """A table: ``head`` is the column titles split on ``|`` (plain text), cells are HTML; the
    columns in ``text`` (for a number, the first ones) hold words and align left."""
    left = set(range(text)) if isinstance(text, int) else set(text)
    tag = ['<th class="text">' if j in left else "<th>" for j in range(len(head.split("|")))]
    th = "".join(f"{t}{e(h)}</th>" for t, h in zip(tag, head.split("|"), strict=True))
    out = []
    for i, row in enumerate(rows):
        tds = "".join((TD_TEXT if j in left else "<td>") + c + "</td>" for j, c in enumerate(row))
        tr = f'<tr class="{cls[i]}">' if i < len(cls) and cls[i] else "<tr>"
        out.append(f"{tr}{tds}</tr>")
    body = "".join(out)
    return f'<div class="scroll"><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


def fold(title: str, inner: str, *, open_: bool) -> str:
    return f"<details{' open' if open_ else ''}><summary>{e(title)}</summary>{inner}</details>"


def none(text: str, tag: str = "p") -> str:
    return f'<{tag} class="note">{e(text)}</{tag}>'


def plot(fig: go.Figure, div_id: str) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=CONFIG))


def line(x: list[str], y: list[Any], name: str, color: str, dash: str = "solid") -> go.Scatter:
    line = {"color": color, "dash": dash}
    return go.Scatter(x=x, y=y, mode="lines+markers", name=name, line=line)


def layout(title: str, height: int, **extra: Any) -> dict[str, Any]:
    """One figure's layout, set in one go: plotly validates every update, and piecemeal
    updates of 30 figures cost seconds."""
    heading = {"text": title, "x": 0, "font": {"size": 14}} if title else None
    margin = {"l": 60, "r": 20, "t": 40 if title else 24, "b": 40}
    return {"template": TEMPLATE, "title": heading, "height": height, "margin": margin, **extra}


def write_page(text: str, path: str | Path) -> Path:
    """Write a page to ``path`` atomically: a reader of the file sees the old page or the new
    one, never half of one."""
    target = Path(path)
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
