"""Fault injection for crash tests: ``LOOPML_FAULT=<point>`` kills the process with SIGKILL
when it reaches that point, as a power cut or an OOM kill would. Unset, it costs one dict lookup."""

from __future__ import annotations

import os
import signal


def checkpoint(point: str) -> None:
    if os.environ.get("LOOPML_FAULT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
