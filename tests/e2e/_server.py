"""A real `loopml serve` in a subprocess for the end-to-end tests: a free port, ready when
/readyz answers 200 (or an error with the server's last words), stopped afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    err = server.stderr.read().decode()[-2000:] if server.stderr else ""
    raise AssertionError(f"the server did not become ready: {err}")


@contextmanager
def served(
    root: Path, *, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``loopml serve -p root`` on a free port; yields its base URL and process."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "loopml.cli", "serve", "--port", str(port), "-p", str(root), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
        yield base, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
