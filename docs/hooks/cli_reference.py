"""MkDocs hook: the CLI reference page, generated at build time from the `loopml` command tree.

The page is written from the commands themselves (their help, arguments and options), so it
cannot fall behind the code: a new command or option appears on the next build. It walks the
click command tree that typer builds, through click's own `list_commands`/`get_command`, which
also works for groups that load their commands lazily.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

PAGE = "reference/cli.md"

INTRO = """\
# Command line

Generated from the `loopml` command itself at every build of this site: each command, its
arguments and its options, with their help as `loopml COMMAND --help` prints it.

Every command takes `--project DIR` (`-p`, default: the current folder) and `--json` (a
machine-readable summary on stdout). Exit codes: `0` success, `2` bad usage or spec (including
a name or file that does not exist), `3` data rejected (something was quarantined), `1` other
failures.
"""


def _clean(text: str | None) -> str:
    """Help text as Markdown: click's `\\b` no-rewrap markers dropped, paragraphs kept."""
    if not text:
        return ""
    lines = [line for line in text.strip().splitlines() if line.strip() != "\b"]
    return "\n".join(lines).strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _command_markdown(command: Any, ctx: Any, path: str, level: int) -> list[str]:
    heading = "#" * min(level, 6)
    out = [f"{heading} `{path}`", ""]
    help_text = _clean(command.help)
    if getattr(command, "deprecated", False):
        out += ["!!! warning", "    Deprecated.", ""]
    if help_text:
        out += [help_text, ""]
    pieces = " ".join(command.collect_usage_pieces(ctx))
    out += ["```", f"{path} {pieces}".rstrip(), "```", ""]
    rows = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if param.param_type_name == "argument":
            name = (param.name or "").upper()
            if getattr(param, "nargs", 1) != 1:
                name += "..."
            text = record[1] if record else ""
            if param.required and "[required]" not in text:
                text = f"{text}  [required]".strip()
            rows.append((f"`{name}`", text))
        elif record is not None and param.name != "help":
            rows.append((f"`{record[0]}`", record[1]))
    if rows:
        out += ["| argument or option | meaning |", "|---|---|"]
        out += [f"| {_cell(name)} | {_cell(text)} |" for name, text in rows]
        out.append("")
    return out


def _walk(group: Any, ctx: Any, path: str) -> list[str]:
    out: list[str] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or getattr(command, "hidden", False):
            continue
        sub_path = f"{path} {name}"
        sub_ctx = command.context_class(command, info_name=name, parent=ctx)
        out += _command_markdown(command, sub_ctx, sub_path, sub_path.count(" ") + 1)
        if hasattr(command, "list_commands"):
            out += _walk(command, sub_ctx, sub_path)
    return out


def cli_markdown() -> str:
    """The whole reference page for the `loopml` command."""
    import typer

    from loopml.cli import app

    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="loopml")
    return INTRO + "\n" + "\n".join(_walk(root, ctx, "loopml")) + "\n"


def _use_checkout(config: Any) -> None:
    # Document the checkout being built, not some other installed copy of loopml.
    src = Path(config.config_file_path).resolve().parent / "src"
    if (src / "loopml").is_dir() and "loopml" not in sys.modules:
        sys.path.insert(0, str(src))


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    _use_checkout(config)
    files.append(File.generated(config, PAGE, content=cli_markdown()))
    return files
