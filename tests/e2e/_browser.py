"""A real dashboard (`loopml ui` in a subprocess, on a free port) and Debian's chromium driven by
Playwright, for the browser tests. Playwright never downloads a browser here: it launches the
system's chromium (the Makefile's dev install puts it there with apt-get).

Without chromium (or Playwright) the tests skip with the reason, unless
LOOPML_REQUIRE_SERVICES=1 (as CI sets it): then they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e._server import free_port

# Quiet, offline, and able to run as root in a container.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "dashboard"

# The browser's load event (navigation start to the end of the load event).
LOAD_MS = """() => {
  const [nav] = performance.getEntriesByType("navigation");
  if (nav && nav.loadEventEnd > 0) return nav.loadEventEnd - nav.startTime;
  const t = performance.timing;
  return t.loadEventEnd - t.navigationStart;
}"""
# How chromium names a request it cancelled (left the page, a superseded htmx request).
ABORTED = "net::ERR_ABORTED"
LOADED = """() => {
  const [nav] = performance.getEntriesByType("navigation");
  return nav ? nav.loadEventEnd > 0 : performance.timing.loadEventEnd > 0;
}"""


def chromium_path() -> str | None:
    found = shutil.which("chromium") or "/usr/bin/chromium"
    return found if os.access(found, os.X_OK) else None


def _missing(reason: str) -> None:
    if os.environ.get("LOOPML_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; LOOPML_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium (Playwright's Browser), or a skip (a failure under
    LOOPML_REQUIRE_SERVICES=1) saying what is missing."""
    executable = chromium_path()
    if executable is None:
        _missing(
            "chromium is not installed (/usr/bin/chromium): `make install-dev` installs it "
            "with apt-get (apt-get install chromium chromium-driver)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install 'loopml[dev]')")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def dashboard(root: Path, *, token: str | None) -> Iterator[str]:
    """``loopml ui --project root`` on a free port (its token ``token``; None: no token set);
    yields its base URL once /ui/ answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "LOOPML_TOKEN"}
    if token is not None:
        env["LOOPML_TOKEN"] = token
    # The server's stderr goes to a file, never a pipe nobody reads while it runs: a full pipe
    # (64 kB of logged errors) would block the server mid-request.
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "loopml.cli", "ui", "--port", str(port), "--project", str(root)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/ui/", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    server.wait()
                    log.seek(0)
                    err = log.read().decode(errors="replace")[-2000:]
                    raise AssertionError(f"the dashboard did not start: {err}")
                time.sleep(0.2)
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def load_ms(page: Any) -> float:
    """How long the page's navigation took, to the end of its load event, in ms."""
    page.wait_for_function(LOADED)
    return float(page.evaluate(LOAD_MS))


class Problems:
    """What went wrong in a page that the server's status does not show: script errors,
    console errors, and failed or refused sub-requests (a missing asset).

    A request the browser itself cancelled (``net::ERR_ABORTED``: the page was left while a
    fragment htmx loads after it was still on its way) is not the page's fault: it is kept in
    :attr:`aborted` instead, for the test to ask the server for it directly."""

    def __init__(self, page: Any) -> None:
        self.seen: list[str] = []
        self.aborted: list[str] = []
        page.on("pageerror", lambda exc: self.seen.append(f"script error: {exc}"))
        page.on(
            "console",
            lambda msg: (
                self.seen.append(f"console {msg.type}: {msg.text} ({msg.location})")
                if msg.type == "error" and not _favicon(msg.location.get("url", ""))
                else None
            ),
        )
        page.on("requestfailed", self._failed)
        page.on(
            "response",
            lambda r: (
                self.seen.append(f"{r.status} for {r.url}")
                if r.status >= 400 and r.request.resource_type != "document"
                else None
            ),
        )

    def _failed(self, request: Any) -> None:
        if request.failure == ABORTED:
            self.aborted.append(request.url)
        else:
            self.seen.append(f"request failed: {request.url} ({request.failure})")

    def take(self) -> list[str]:
        out, self.seen = self.seen, []
        return out

    def take_aborted(self) -> list[str]:
        out, self.aborted = self.aborted, []
        return out


def _favicon(url: str) -> bool:
    # The browser asks every site for one; the dashboard has none (nothing on the page uses it).
    return url.endswith("/favicon.ico")
