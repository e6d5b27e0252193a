"""The demo's loop report: numbers a person reads, every string escaped, one self-contained page."""

from __future__ import annotations

from pathlib import Path

from loopml.demo._loop import VARIANTS, write_loop_html


def test_the_loop_report_formats_every_number(tmp_path: Path) -> None:
    months = {"2013-03": {"pr_auc": 0.51234567, "log_loss": 0.4}}
    results = {
        v: {
            "months": months,
            "timeline": [
                {"at": "2013-04-01T00:00:00+00:00", "cycle": 1, "kind": "rolled_back",
                 "reasons": ["<b>errors</b>"], "version": 2},
            ],
        }
        for v in VARIANTS
    }  # fmt: skip
    summary = {
        "static": {"pr_auc": 0.49876543, "log_loss": 0.41},
        **{v: {"pr_auc": 0.5, "log_loss": 0.4, "promotions": 1234, "rollbacks": 0, "trainings": 3}
           for v in VARIANTS},
    }  # fmt: skip
    serving = {"modes": {"static": {"p99_ms": 2.4236900000147443, "requests": 120000}}}
    page = write_loop_html(tmp_path / "loop.html", months, results, summary, serving).read_text()
    assert "2.4236900000147443" not in page and "2.424" in page
    assert "120,000" in page and "1,234" in page
    assert "<b>errors</b>" not in page and "&lt;b&gt;errors&lt;/b&gt;" in page
    assert '<script src="http' not in page
