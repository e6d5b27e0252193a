"""A real `loopml serve` probed from outside: schemathesis generates requests for every
operation of its OpenAPI document (a fixed number each, valid and invalid) and finds no server
error and no status, content type or body the document does not list; a chunked body far over
the limit is refused while it arrives, without the server's memory growing; a body that stops
arriving gets 408."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e._server import served
from tests.unit.serving.conftest import SPEC, champion_project

pytestmark = pytest.mark.slow

TOKEN = "schemathesis-token"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    root = tmp_path_factory.mktemp("schemathesis") / "p"
    spec = SPEC.replace("  mode: dynamic\n", "  mode: dynamic\n  body_timeout: 2s\n")
    champion_project(root, spec=spec).close()
    with served(root, env={"LOOPML_TOKEN": TOKEN}) as (base, proc):
        yield base, proc.pid


def test_schemathesis_finds_no_server_error_and_nothing_undocumented(
    server: tuple[str, int], tmp_path: Path
) -> None:
    base, _ = server
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("schemathesis is not installed: pip install -e '.[dev]'")
    # Real names for the path parameters, so that the requests reach the model, not a 404.
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        '[parameters]\n"path.name" = "flights_delay"\n"path.version" = "1"\n'
        '"path.source" = "flights"\n'
    )
    run = subprocess.run(
        [
            exe,
            "--config-file",
            str(config),
            "run",
            f"{base}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            "15",
            "--seed",
            "17",
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert cases is not None and cases[1] == cases[2] and int(cases[1]) > 200, run.stdout[-3000:]
    assert httpx.get(f"{base}/healthz").status_code == 200  # still serving


def _chunked_post(base: str, path: str, total: int, chunk: int = 1 << 20) -> tuple[int, int]:
    """Send ``total`` bytes chunked to ``path`` (or until the server stops reading); the
    status answered and the bytes sent."""
    host, port = base.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        block = f"{chunk:x}\r\n".encode() + b"[" * chunk + b"\r\n"
        try:
            while sent < total:
                s.sendall(block)
                sent += chunk
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what is wanted
        data = b""
        try:
            while b"\r\n" not in data:
                got = s.recv(4096)
                if not got:
                    break
                data += got
        except (ConnectionResetError, TimeoutError):
            pass
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1") else 0
    return status, sent


def test_a_huge_chunked_body_is_refused_without_growing_memory(server: tuple[str, int]) -> None:
    base, pid = server
    before = rss_mb(pid)
    for path in ("/v2/models/flights_delay/infer", "/predict", "/rank", "/feedback"):
        status, sent = _chunked_post(base, path, 300 << 20)
        assert status == 413, (path, status)
        assert sent < 300 << 20 or status == 413
    after = rss_mb(pid)
    assert after - before < 50, (before, after)
    assert httpx.get(f"{base}/healthz").status_code == 200


def test_a_body_that_stops_arriving_gets_408(server: tuple[str, int]) -> None:
    base, _ = server
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(
            f"POST /v2/models/flights_delay/infer HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode()
        )
        started = time.monotonic()
        data = s.recv(4096)
        waited = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert 1.5 < waited < 10
