"""The demo's last line: how to open its project in the dashboard."""

from __future__ import annotations

import inspect
from pathlib import Path

from loopml.cli.ui import ui
from loopml.demo._run import dashboard_hint


def test_the_hint_names_the_command_and_the_address_loopml_ui_listens_at() -> None:
    hint = dashboard_hint(Path("build/demo"))
    assert "`loopml ui --project build/demo`" in hint
    params = inspect.signature(ui).parameters
    host, port = params["host"].default, params["port"].default
    assert f"http://{host}:{port}/ui/" in hint
