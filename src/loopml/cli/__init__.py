"""The `loopml` command: one module per noun, each thin over the Python API.

Command modules are imported only when their command runs or shows its own help: `loopml --help`
imports none of them, and a command imports only its own module (each keeps its heavy imports
inside its functions). Start-up time is measured by ``benchmarks/startup.py``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, NamedTuple

import typer
from typer.core import TyperCommand, TyperGroup

try:  # Typer 0.2x vendors its own click; earlier versions use click itself.
    from typer import _click as typer_click
except ImportError:  # pragma: no cover - depends on the installed Typer
    import click as typer_click  # type: ignore[no-redef]

from loopml.cli._common import EXIT_FAILURE, EXIT_USAGE, err, exit_code_for, print_json
from loopml.errors import LoopmlError


class Command(NamedTuple):
    """Where a command lives (``module:attribute``: a function, or a Typer app for a group) and
    the one line `loopml --help` shows for it without importing it."""

    target: str
    summary: str


# One line per command, in the order `loopml --help` lists them.
COMMANDS: dict[str, Command] = {
    "init": Command("loopml.cli.init:init", "Create a project: a commented loopml.yaml, or one drafted from your data file."),
    "ingest": Command("loopml.cli.ingest:ingest", "Ingest CSV, Parquet or JSON Lines files as batches of a source."),
    "demo": Command("loopml.cli.demo:demo", "Run the end-to-end demo (needs `pip install 'loopml\\[demo]'`)."),
    "train": Command("loopml.cli.models:train", "Train the model in loopml.yaml, evaluate it beside its baselines, register it."),
    "evaluate": Command("loopml.cli.models:evaluate", "The gate: compare a version with the champion on the same rows."),
    "serve": Command("loopml.cli.serve:serve", "Serve the champion over HTTP."),
    "ui": Command("loopml.cli.ui:ui", "The dashboard: the incident timeline and the whole loop in a browser."),
    "precompute": Command("loopml.cli.serve:precompute", "Write the static table of predictions into the online store."),
    "advise-serving": Command("loopml.cli.advise:advise_serving", "Measure static, dynamic and hybrid serving on real requests; recommend one."),
    "predict": Command("loopml.cli.predict:predict", "Predict every row of a file with a registered version."),
    "monitor": Command("loopml.cli.monitor:monitor", "Judge every window: drift, performance, kinds of shift, alerts; report."),
    "feedback": Command("loopml.cli.monitor:feedback", "Send labels to the monitor, by prediction id or by the event's keys and event_time."),
    "replay": Command("loopml.cli.replay:replay", "Answer a file of past events as traffic, each logged at its own time."),
    "alerts": Command("loopml.cli.monitor:alerts_app", "Alerts raised by the monitor: list them, resolve one by hand."),
    "schema": Command("loopml.cli.schema:app", "Show a source's schema and accept proposed changes."),
    "quarantine": Command("loopml.cli.quarantine:app", "Inspect, fix, release or drop quarantined rows and batches."),
    "data": Command("loopml.cli.data:app", "The lake: sources, batches, snapshots, SQL over them, reset."),
    "features": Command("loopml.cli.features:app", "Feature definitions, training sets and the online store."),
    "models": Command("loopml.cli.models:app", "Model versions, aliases and their history."),
    "events": Command("loopml.cli.events:app", "Send events to a source's stream and consume them into the lake."),
    "spec": Command("loopml.cli.spec:app", "Check the project spec or export its JSON Schema."),
    "loop": Command("loopml.cli.loop:app", "The continual-learning loop: triggers, retraining, the gate, rollout."),
    "rollout": Command("loopml.cli.rollout:app", "Rollouts and experiments: shadow, canary, A/B tests, bandits."),
}  # fmt: skip


def load_command(name: str) -> typer_click.Command:
    """Import one command's module and build its click command."""
    module_name, attribute = COMMANDS[name].target.split(":")
    target = getattr(importlib.import_module(module_name), attribute)
    if isinstance(target, typer.Typer):
        command = typer.main.get_command(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class _LazyGroup(TyperGroup):
    """The top-level group: commands from :data:`COMMANDS`, each built on first use."""

    _listing = False

    def list_commands(self, ctx: typer_click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: typer_click.Context, cmd_name: str) -> typer_click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if self._listing:
            # The overview needs only the one-line summary: no import.
            summary = COMMANDS[cmd_name].summary
            return TyperCommand(name=cmd_name, help=summary, short_help=summary)
        if cmd_name not in self.commands:
            self.commands[cmd_name] = load_command(cmd_name)
        return self.commands[cmd_name]

    def format_help(self, ctx: typer_click.Context, formatter: typer_click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="loopml",
    cls=_LazyGroup,
    help="Keep a machine-learning model useful after it ships.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Keep a machine-learning model useful after it ships."""


# With click itself (older Typer), Exit and Abort are click's; Typer re-exports them.
_EXIT = (typer.Exit, getattr(typer_click.exceptions, "Exit", typer.Exit))
_ABORT = (typer.Abort, getattr(typer_click.exceptions, "Abort", typer.Abort))
_USAGE = (typer_click.ClickException, typer.exceptions.TyperException)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and, as a script, exits with) the exit code."""
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)
    try:
        result: Any = command.main(args=args, prog_name="loopml", standalone_mode=False)
    except _EXIT as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except _ABORT:
        err.print("aborted")
        return EXIT_FAILURE
    except _USAGE as exc:
        exc.show(file=sys.stderr)  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", EXIT_USAGE) or EXIT_USAGE)
    except LoopmlError as exc:
        if "--json" in args:
            print_json({"error": exc.to_dict()})
        err.print(f"error: {exc.message}", style="bold red")
        return exit_code_for(exc)
    return int(result or 0)


def run() -> None:
    sys.exit(main())


__all__ = ["COMMANDS", "Command", "app", "load_command", "main", "run"]
