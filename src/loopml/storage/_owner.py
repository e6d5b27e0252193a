"""Who holds a pending piece of work, and whether that process is still alive."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta


def _start_ticks(pid: int) -> str:
    """The process start time in clock ticks (Linux), to tell a live process from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def owner_token() -> str:
    """``host|pid|start`` of this process."""
    pid = os.getpid()
    return f"{socket.gethostname()}|{pid}|{_start_ticks(pid)}"


def owner_alive(token: str, *, started: datetime, now: datetime, stale_after: timedelta) -> bool:
    """Whether the process named by ``token`` may still be working.

    On this host the process table answers. A process on another host is presumed alive until
    ``stale_after`` has passed since it started the work.
    """
    try:
        host, pid_text, ticks = token.split("|")
        pid = int(pid_text)
    except ValueError:
        return now - started < stale_after
    if host != socket.gethostname():
        return now - started < stale_after
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return ticks == "?" or _start_ticks(pid) == ticks
