"""`loopml precompute` and `loopml serve --help` on the command line."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from loopml import Project
from loopml.cli import main


def test_precompute(served: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["precompute", "--window", "400d", "-p", str(served.root), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["keys"] > 1000 and summary["table"] == "pred:flights_delay:1"
    code = main(["precompute", "--window", "soon", "-p", str(served.root)])
    assert code == 2
    code = main(["precompute", "--version", "9", "-p", str(served.root)])
    assert code == 2 and "9" in capsys.readouterr().err


def test_serve_refuses_a_bad_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "loopml.yaml").write_text("project: x\nserving:\n  mode: sometimes\n")
    assert main(["serve", "-p", str(tmp_path)]) == 2
    assert "serving.mode" in capsys.readouterr().err


def test_serve_says_where_and_what_once_ready(served: Project) -> None:
    """`loopml serve` prints its address, the model, the version and the alias once it
    answers; before that it prints nothing that would claim it does."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = subprocess.Popen(
        [sys.executable, "-m", "loopml.cli", "serve", "--port", str(port), "-p", str(served.root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in server.stdout or []], daemon=True
    ).start()
    seen = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            if line.startswith("serving "):
                break
        else:
            raise AssertionError("no ready line: " + "".join(seen)[-2000:])
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert seen[-1].startswith(
        f"serving flights_delay version 1 (alias champion, mode dynamic) at http://127.0.0.1:{port}"
    ), seen
    assert "POST /predict" in seen[-1]


def test_serve_without_a_model_section_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "loopml.yaml").write_text("project: x\n")
    assert main(["serve", "-p", str(tmp_path)]) == 2
    assert "no model section" in capsys.readouterr().err


def _announced(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], answers: list[Any]
) -> str:
    """What `loopml serve` prints while /readyz gives ``answers`` (the last one ready)."""
    from loopml.cli import serve as serve_cli

    replies = iter(answers)
    monkeypatch.setattr(serve_cli, "_readyz", lambda url: next(replies))
    serve_cli._announce("127.0.0.1", 8000, 1, poll=0)
    return capsys.readouterr().out


def test_serve_says_why_the_champion_is_not_served(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A champion that fails to load is named with its file and check, not reported as an
    alias nobody holds; a fallback version being served is said as well."""
    failed = (
        "m:2 (holding 'champion') failed to load (sha256 check of 'model.txt'): model m:2: file "
        "'model.txt' does not match the SHA-256 recorded at registration"
    )
    serving = {"alias": "champion", "alias_version": 2, "failure": {"version": 2}}
    nothing = {
        "model": "m",
        "mode": "dynamic",
        "serving": {**serving, "version": None, "fallback": False, "last_error": failed},
        "unavailable": f"{failed}; serving nothing: no other version of m held 'champion'",
    }
    ready = {
        "model": "m",
        "mode": "dynamic",
        "serving": {
            **serving,
            "version": 1,
            "fallback": True,
            "last_error": failed + "; serving m:1, the champion before it",
        },
    }
    text = _announced(monkeypatch, capsys, [(503, nothing), (200, ready)])
    assert "holds the alias" not in text
    assert "'model.txt'" in text and "no other version of m held 'champion'" in text
    assert "serving m version 1 (alias champion" in text
    assert "the champion before it" in text and "version 2" in text
