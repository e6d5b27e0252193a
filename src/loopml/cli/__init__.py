"""The `loopml` command: one module per noun, each thin over the Python API."""

from __future__ import annotations

import sys

import click
import typer

from loopml.cli import (
    data,
    events,
    features,
    loop,
    models,
    quarantine,
    replay,
    rollout,
    schema,
    serve,
    spec,
)
from loopml.cli._common import EXIT_FAILURE, EXIT_USAGE, err, exit_code_for, print_json
from loopml.cli.advise import advise_serving
from loopml.cli.demo import demo
from loopml.cli.ingest import ingest
from loopml.cli.init import init
from loopml.cli.monitor import alerts_app, feedback, monitor
from loopml.cli.predict import predict
from loopml.errors import LoopmlError

app = typer.Typer(
    name="loopml",
    help="Keep a machine-learning model useful after it ships.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(init)
app.command()(ingest)
app.command()(demo)
app.command()(models.train)
app.command()(models.evaluate)
app.command()(serve.serve)
app.command()(serve.precompute)
app.command("advise-serving")(advise_serving)
app.command()(predict)
app.command()(monitor)
app.command()(feedback)
app.command()(replay.replay)
app.add_typer(alerts_app, name="alerts")
app.add_typer(schema.app, name="schema")
app.add_typer(quarantine.app, name="quarantine")
app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.add_typer(models.app, name="models")
app.add_typer(events.app, name="events")
app.add_typer(spec.app, name="spec")
app.add_typer(loop.app, name="loop")
app.add_typer(rollout.app, name="rollout")


# Typer may vendor its own copy of click; accept the exceptions of either.
_EXIT = (click.exceptions.Exit, typer.Exit)
_ABORT = (click.exceptions.Abort, typer.Abort)
_USAGE = (click.ClickException, typer.exceptions.TyperException)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and, as a script, exits with) the exit code."""
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="loopml", standalone_mode=False)
    except _EXIT as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except _ABORT:
        err.print("aborted")
        return EXIT_FAILURE
    except _USAGE as exc:
        exc.show(file=sys.stderr)  # type: ignore[union-attr]
        return int(getattr(exc, "exit_code", EXIT_USAGE) or EXIT_USAGE)
    except LoopmlError as exc:
        if "--json" in args:
            print_json({"error": exc.to_dict()})
        err.print(f"error: {exc.message}", style="bold red")
        return exit_code_for(exc)
    return int(result or 0)


def run() -> None:
    sys.exit(main())


__all__ = ["app", "main", "run"]
