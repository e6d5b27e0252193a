"""Where alerts go: the sinks a rule names (a log, a file of JSON lines, a webhook), apart from
the rule engine that decides when an alert fires (``_alerts``). A sink may raise; the engine
records the error with the alert and never lets it escape."""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit, urlunsplit

from loopml.errors import LoopmlError, UsageError
from loopml.spec import MonitoringSpec

if TYPE_CHECKING:
    import httpx

    from loopml.monitoring._alerts import Alert

__all__ = ["FileSink", "LogSink", "Sink", "WebhookSink", "default_sinks", "redact"]

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


class Sink(Protocol):
    """Where a notification goes. ``send`` may raise; :class:`Alerts` records the error."""

    def send(self, alert: Alert) -> None: ...


class LogSink:
    """Logs each alert on ``loopml.alerts``: INFO, WARNING or CRITICAL by its severity. The alert
    is attached to the log record as ``record.alert`` (a dict) for structured handlers."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger("loopml.alerts")

    def send(self, alert: Alert) -> None:
        level = _LEVELS.get(alert.severity, logging.WARNING)
        self.logger.log(level, "%s", alert.describe(), extra={"alert": alert.to_dict()})


class FileSink:
    """Appends each alert as one JSON line to ``path`` (its folder is created), synced to disk."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def send(self, alert: Alert) -> None:
        line = json.dumps(alert.to_dict(), allow_nan=False, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One write of one line on an O_APPEND file: concurrent writers do not interleave lines.
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


class WebhookSink:
    """POSTs each alert as JSON to ``url``; retries once after a connection error, a timeout or a
    5xx answer. With ``token_env``, the bearer token is read from that environment variable at
    each send (so a rotated token is picked up). ``transport`` is for tests (an httpx transport).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float | timedelta = 3.0,
        token_env: str | None = None,
        retry_delay: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        self.token_env = token_env
        self.retry_delay = retry_delay
        self.transport = transport

    def send(self, alert: Alert) -> None:
        import httpx

        where = redact(self.url)
        headers = {}
        if self.token_env:
            token = os.environ.get(self.token_env)
            if not token:
                raise UsageError(
                    f"webhook {where}: the environment variable {self.token_env} "
                    f"(sinks.webhook.token_env) is not set: set it to the bearer token",
                    details={"url": where, "token_env": self.token_env},
                )
            headers["Authorization"] = f"Bearer {token}"
        body = alert.to_dict()
        problem = ""
        with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
            for attempt in range(2):
                if attempt:
                    time.sleep(self.retry_delay)
                try:
                    response = client.post(self.url, json=body, headers=headers)
                except httpx.TransportError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                    continue
                if response.status_code < 400:
                    return
                problem = f"HTTP {response.status_code} {response.reason_phrase}".strip()
                if response.status_code < 500:
                    break  # the receiver refused this alert; sending it again will not help
        raise LoopmlError(
            f"webhook {where} did not take alert {alert.id} ({problem}): check the URL, the "
            f"token and that the receiver is up",
            details={"url": where, "alert_id": alert.id, "error": problem},
        )


def default_sinks(spec: MonitoringSpec, *, root: Path) -> dict[str, Sink]:
    """The sinks ``spec.sinks`` configures: log, file (relative to ``root``) and, when it has a
    URL, webhook."""
    sinks: dict[str, Sink] = {
        "log": LogSink(),
        "file": FileSink(Path(root) / spec.sinks.file.path),
    }
    hook = spec.sinks.webhook
    if hook.url:
        sinks["webhook"] = WebhookSink(hook.url, timeout=hook.timeout, token_env=hook.token_env)
    return sinks


def redact(url: str) -> str:
    """``url`` without a password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
