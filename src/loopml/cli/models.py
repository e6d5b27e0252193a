"""`loopml train`, `loopml evaluate` and `loopml models list | show | promote | rollback | history`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from loopml.cli._common import JsonOpt, ProjectOpt, open_project, out, print_json, table, when
from loopml.errors import UsageError

app = typer.Typer(help="Model versions, aliases and their history.", no_args_is_help=True)
RefArg = Annotated[
    str, typer.Argument(help="A version number, an alias (champion, ...) or latest.")
]
ByOpt = Annotated[
    str | None, typer.Option("--by", help="Who does it (default: LOOPML_USER or the login).")
]


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not an ISO date or datetime") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _backtest(text: str | None) -> timedelta | Literal["auto", "off"] | None:
    from loopml.spec import parse_duration

    if text is None:
        return None
    if text == "auto":
        return "auto"
    if text == "off":
        return "off"
    try:
        return parse_duration(text)
    except ValueError:
        raise UsageError(
            f"--backtest: {text!r} is not auto, off or a period such as 30d",
            details={"field": "backtest"},
        ) from None


def _ref(text: str) -> str | int:
    return int(text) if text.isdigit() else text.split(":", 1)[-1] if ":" in text else text


def _fmt(metrics: dict[str, Any], keys: tuple[str, ...]) -> str:
    parts = []
    for k in keys:
        v = metrics.get(k)
        if isinstance(v, float):
            parts.append(f"{k} {v:.4f}")
    return ", ".join(parts)


def train(
    snapshot: Annotated[
        str | None, typer.Option(help="Train on this snapshot (default: take one now).")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Only events before this time, labels known by then."),
    ] = None,
    warm_start: Annotated[
        str | None,
        typer.Option("--warm-start", help="Continue this version (e.g. champion) on newer data."),
    ] = None,
    note: Annotated[str, typer.Option(help="A note recorded on the version.")] = "",
    refit: Annotated[
        bool | None,
        typer.Option(
            "--refit/--no-refit",
            help="After evaluating on the held-out rows, fit again on every row up to the "
            "cut-off and register that model; the metrics stay the held-out model's "
            "(default: model.refit, off).",
            show_default=False,
        ),
    ] = None,
    compare_imbalance: Annotated[
        bool,
        typer.Option(
            "--compare-imbalance",
            help="Compare plain, class weights and resampling; register nothing.",
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Train the model in loopml.yaml, evaluate it beside its baselines, and register it."""
    if compare_imbalance:
        with open_project(project) as p:
            comparison = p.models.compare_imbalance(
                snapshot=snapshot, as_of=_when(as_of, "--as-of")
            )
        if json:
            print_json(comparison)
        else:
            table(
                f"class imbalance, {comparison['test_rows']:,} test rows",
                ["strategy", "PR AUC", "F1", "precision", "recall", "threshold"],
                [
                    [
                        r["strategy"],
                        f"{r['pr_auc']:.4f}",
                        f"{r['f1']:.4f}",
                        f"{r['precision']:.4f}",
                        f"{r['recall']:.4f}",
                        f"{r['threshold']:.3f}",
                    ]
                    for r in comparison["rows"]
                ],
            )
            out.print(comparison["summary"])
        return 0
    with open_project(project) as p:
        result = p.models.train(
            snapshot=snapshot,
            as_of=_when(as_of, "--as-of"),
            warm_start=warm_start,
            note=note,
            refit=refit,
        )
    summary = result.to_dict()
    if json:
        print_json({**summary, "report": result.trained.report})
        return 0
    keys = (
        "pr_auc",
        "roc_auc",
        "log_loss",
        "f1",
        "ece",
        "macro_f1",
        "accuracy",
        "rmse",
        "mae",
        "r2",
        "ndcg@10",
        "map",
    )
    out.print(
        f"trained {summary['model']} version {summary['version']} in {summary['seconds']:.1f} s "
        f"on {summary['rows']['train']:,} rows (valid {summary['rows']['valid']:,}, test {summary['rows']['test']:,})"
        + (f", warm-started from {summary['parent']}" if summary["parent"] else "")
    )
    out.print(_learned_line(summary))
    rows = [["model", _fmt(summary["metrics"], keys)]]
    rows += [[name, _fmt(m, keys)] for name, m in summary["baselines"].items()]
    table(
        f"test set: {summary['rows']['test']:,} held-out rows"
        + (", the held-out model (before the refit)" if summary["refit"] else ""),
        ["", "metrics"],
        rows,
    )
    report = result.trained.report
    for s in report.get("worst_slices", [])[:5]:
        out.print(
            f"  worst slice {s['column']}={s['slice']} ({s['rows']} rows): {report['primary_metric']} {s.get(report['primary_metric'], float('nan')):.4f}, gap {s['gap']:+.4f}"
        )
    gain = report.get("importance", {}).get("gain")
    if gain:
        out.print(
            "  top features by gain: "
            + ", ".join(f"{k} {v:.1%}" for k, v in list(gain.items())[:6])
        )
    out.print(f"next: loopml evaluate {summary['version']} --against champion")
    return 0


def _learned_line(summary: dict[str, Any]) -> str:
    """Which rows the registered artifact learned from, and what it left out."""
    learned, held = summary["learned"], summary["holdout"]
    span = _span(learned)
    if summary["refit"]:
        return (
            f"refitted on all {learned['rows']:,} rows{span} with the same parameters: that is "
            f"the model registered; the metrics below are the held-out model's (trained on "
            f"{held['rows']:,} rows{_span(held)}), before the refit"
        )
    rows = summary["rows"]
    left = rows["valid"] + rows["test"]
    if not left:
        return f"the model learned from {learned['rows']:,} rows{span}"
    return (
        f"the model learned from {learned['rows']:,} rows{span}; the newest {left:,} rows "
        f"(validation and test) were held out to evaluate it and are not in it: --refit (or "
        f"model.refit) learns them too once evaluated"
    )


def _span(rows: dict[str, Any]) -> str:
    start, end = rows.get("start"), rows.get("end")
    return f", {start[:10]} to {end[:10]}" if start and end else ""


def evaluate(
    ref: RefArg,
    against: Annotated[
        str, typer.Option(help="The alias (or version) to compare with; 'none' for none.")
    ] = "champion",
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="The time of the backtest's end.")
    ] = None,
    backtest: Annotated[
        str | None,
        typer.Option(
            help="The backtest: auto (the latest gate.backtest_min_rows labelled rows neither "
            "model learned from), a period such as 30d, or off (default: gate.backtest).",
            show_default=False,
        ),
    ] = None,
    by: ByOpt = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """The gate: compare a version with the champion on the same test set and a recent backtest.
    Every check is shown with the rows it judged, or why it was skipped. Exit code 1 when the
    version does not pass."""
    with open_project(project) as p:
        verdict = p.models.evaluate(
            _ref(ref),
            against=None if against == "none" else against,
            as_of=_when(as_of, "--as-of"),
            by=by,
            backtest=_backtest(backtest),
        )
    if json:
        print_json(verdict.to_dict())
    else:
        against_text = f"version {verdict.against}" if verdict.against else "no champion"
        out.print(
            f"{verdict.model} version {verdict.version} against {against_text}: {verdict.summary()}"
        )
        show_verdict(verdict.to_dict())
        if verdict.passed:
            out.print(f"promote with: loopml models promote {verdict.version}")
    return 0 if verdict.passed else 1


_MARK = {"passed": "ok  ", "failed": "NO  ", "skipped": "skip"}


def show_verdict(verdict: dict[str, Any]) -> None:
    """The rows each set of the gate held and why, then every check with its rows."""
    for name in ("test", "backtest"):
        info = (verdict.get("numbers") or {}).get(name)
        if info:
            out.print(f"  {name}: {info.get('rows', 0):,} rows{_span(info)}: {info.get('why', '')}")
    for c in verdict.get("checks") or []:
        rows = f" ({c['rows']:,} rows)" if c.get("rows") is not None else ""
        out.print(f"  {_MARK.get(c.get('status', ''), '    ')} {c['name']}{rows}: {c['detail']}")


@app.command("list")
def list_(project: ProjectOpt = Path("."), json: JsonOpt = False) -> int:
    """Every version of the project's model with its aliases and test metrics."""
    with open_project(project) as p:
        versions = p.models.versions()
        aliases = p.registry.aliases(p.models.name)
    by_version: dict[int, list[str]] = {}
    for alias, v in aliases.items():
        by_version.setdefault(v, []).append(alias)
    if json:
        print_json(
            [{**_version_dict(v), "aliases": by_version.get(v.version, [])} for v in versions]
        )
        return 0
    table(
        None,
        ["version", "aliases", "created", "by", "parent", "metrics"],
        [
            [
                v.version,
                ", ".join(by_version.get(v.version, [])),
                when(v.created_at),
                v.created_by,
                v.lineage.get("parent") or "",
                _fmt(v.metrics, ("pr_auc", "log_loss", "macro_f1", "rmse", "ndcg@10")),
            ]
            for v in versions
        ],
    )
    return 0


def _version_dict(v: Any) -> dict[str, Any]:
    return {
        "model": v.model,
        "version": v.version,
        "created_at": v.created_at,
        "created_by": v.created_by,
        "format": v.format,
        "files": v.files,
        "lineage": v.lineage,
        "metrics": v.metrics,
        "note": v.note,
    }


@app.command("show")
def show(ref: RefArg, project: ProjectOpt = Path("."), json: JsonOpt = False) -> int:
    """A version's lineage, metrics, files and evaluations."""
    with open_project(project) as p:
        v = p.models.get(_ref(ref))
        evaluations = p.registry.evaluations(v.model, v.version)
    if json:
        print_json({**_version_dict(v), "report": v.report, "evaluations": evaluations})
        return 0
    out.print(f"{v.ref}: {v.format}, created {when(v.created_at)} by {v.created_by}")
    for k in (
        "snapshot",
        "features_hash",
        "code_version",
        "parent",
        "data_start",
        "data_end",
        "rows",
        "training_seconds",
    ):
        out.print(f"  {k}: {v.lineage.get(k)}")
    learned, held = v.lineage.get("learned"), v.lineage.get("holdout")
    if learned:
        out.print(
            f"  learned: {learned['rows']:,} rows{_span(learned)}"
            + (" (refit on every row up to the cut-off)" if learned.get("refit") else "")
        )
    if held:
        out.print(f"  held-out model: {held['rows']:,} rows{_span(held)}")
    source = v.lineage.get("metrics_from")
    out.print(
        "  metrics" + (f" ({source})" if source else "") + ": " + _fmt(v.metrics, tuple(v.metrics))
    )
    for name, digest in v.files.items():
        out.print(f"  file {name}: sha256 {digest}")
    for e in evaluations:
        out.print(
            f"  evaluation {e.id} against {e.against_version}: {'passed' if e.passed else 'refused'} ({when(e.created_at)} by {e.created_by})"
        )
    return 0


@app.command("promote")
def promote(
    ref: RefArg,
    alias: Annotated[str, typer.Option(help="The alias to move.")] = "champion",
    force: Annotated[bool, typer.Option(help="Skip the gate (recorded as forced).")] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    by: ByOpt = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Move an alias (champion by default) to a version; the champion only through the gate."""
    with open_project(project) as p:
        move = p.models.promote(_ref(ref), alias, force=force, by=by, reason=reason)
    if json:
        print_json(move)
    else:
        out.print(
            f"{alias}: version {move.from_version} -> {move.to_version} ({move.action}, by {move.by})"
        )
    return 0


@app.command("rollback")
def rollback(
    alias: Annotated[str, typer.Option(help="The alias to roll back.")] = "champion",
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    by: ByOpt = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Return an alias to the version that held it before."""
    with open_project(project) as p:
        move = p.models.rollback(alias, by=by, reason=reason)
    if json:
        print_json(move)
    else:
        out.print(f"{alias}: rolled back from version {move.from_version} to {move.to_version}")
    return 0


@app.command("history")
def history(
    alias: Annotated[str | None, typer.Option(help="Only this alias.")] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Every alias move: who, when, why, from which version to which."""
    with open_project(project) as p:
        moves = p.models.history(alias)
    if json:
        print_json(moves)
        return 0
    table(
        None,
        ["when", "alias", "action", "from", "to", "by", "reason"],
        [
            [when(m.at), m.alias, m.action, m.from_version, m.to_version, m.by, m.reason]
            for m in moves
        ],
    )
    return 0
