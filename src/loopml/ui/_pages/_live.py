"""A running server's live numbers for the serving page: read from its Prometheus ``/metrics``
(parsed with prometheus_client's parser) and its ``/status``, either in process (the dashboard
mounted on ``loopml serve``: :func:`loopml.ui._app.mount_ui` sets ``UiContext.live``) or over
HTTP (``loopml ui --serving URL``: ``LOOPML_SERVING``).

Counters only say how many since the server started: a rate needs two readings. Each reading is
kept in the context (one per source), and the next one is compared with it: requests per second,
and the latency percentiles, fallback share and errors of the requests in between.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

TIMEOUT_S = 2.0
CLOCK: Callable[[], float] = time.monotonic  # when a reading is taken (tests set their own)
Samples = dict[str, list[tuple[dict[str, str], float]]]
Reader = Callable[[], tuple[bytes | str, Mapping[str, Any]]]


@dataclass
class Scrape:
    """One reading of a server: its samples by name, its status, when (monotonic seconds)."""

    at: float
    samples: Samples
    status: dict[str, Any]

    def total(self, name: str, **match: str) -> float:
        return sum(
            v
            for labels, v in self.samples.get(name, [])
            if all(labels.get(k) == want for k, want in match.items())
        )

    def by(self, name: str, *keys: str) -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for labels, v in self.samples.get(name, []):
            k = tuple(labels.get(key, "") for key in keys)
            out[k] = out.get(k, 0.0) + v
        return out

    def buckets(self, name: str) -> list[tuple[float, float]]:
        """A histogram's cumulative buckets summed over its labels: ``[(le, count), ...]``."""
        summed: dict[float, float] = {}
        for labels, v in self.samples.get(name + "_bucket", []):
            le = float(labels.get("le", "inf"))
            summed[le] = summed.get(le, 0.0) + v
        return sorted(summed.items())


@dataclass
class Window:
    """What the requests of a span did (since the server started, or since the last reading)."""

    label: str
    seconds: float | None
    requests: float
    rate: float | None  # requests per second (None: one reading only)
    p50_us: float | None
    p95_us: float | None
    p99_us: float | None
    first_bucket_us: float | None  # a percentile below it is only known to be below it
    fallbacks: float
    fallback_share: float | None
    errors: float
    error_share: float | None


@dataclass
class Live:
    """The live panel's numbers, or why there are none."""

    source: str  # "in process", the URL, or "" (no server connected)
    ok: bool
    error: str | None = None
    status: dict[str, Any] = field(default_factory=dict)
    since_start: Window | None = None
    recent: Window | None = None  # since the previous reading
    by_version: list[dict[str, Any]] = field(default_factory=list)
    fallback_reasons: list[tuple[str, float]] = field(default_factory=list)
    errors: list[tuple[str, str, float]] = field(default_factory=list)
    breaker_open: bool | None = None
    breaker_opened: list[tuple[str, float]] = field(default_factory=list)
    served_version: str | None = None
    model_fallback: bool | None = None
    swaps: float = 0.0
    swap_failures: float = 0.0
    log_dropped: float = 0.0


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by sample name."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a cumulative histogram (as Prometheus' histogram_quantile does:
    linear within the bucket it falls in; the highest finite bound when it falls beyond it)."""
    b = list(buckets)
    if not b or b[-1][1] <= 0:
        return None
    rank = q * b[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for le, count in b:
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def _window(label: str, now: Scrape, before: Scrape | None) -> Window:
    def diff(value: Callable[[Scrape], float]) -> float:
        return value(now) - (value(before) if before is not None else 0.0)

    requests = diff(lambda s: s.total("loopml_requests_total"))
    fallbacks = diff(lambda s: s.total("loopml_fallbacks_total"))
    errors = diff(lambda s: s.total("loopml_errors_total"))
    b = now.buckets("loopml_request_latency_seconds")
    if before is not None:
        old = dict(before.buckets("loopml_request_latency_seconds"))
        b = [(le, c - old.get(le, 0.0)) for le, c in b]
    seconds = now.at - before.at if before is not None else None
    answered = requests + errors

    def us(q: float) -> float | None:
        v = quantile(q, b)
        return None if v is None else v * 1e6

    return Window(
        label=label,
        seconds=seconds,
        requests=requests,
        rate=requests / seconds if seconds else None,
        p50_us=us(0.5),
        p95_us=us(0.95),
        p99_us=us(0.99),
        first_bucket_us=b[0][0] * 1e6 if b and math.isfinite(b[0][0]) else None,
        fallbacks=fallbacks,
        fallback_share=fallbacks / requests if requests > 0 else None,
        errors=errors,
        error_share=errors / answered if answered > 0 else None,
    )


def read_http(url: str, *, timeout: float = TIMEOUT_S) -> tuple[str, dict[str, Any]]:
    """``/metrics`` and ``/status`` of the server at ``url``."""
    base = url.rstrip("/")
    with urllib.request.urlopen(f"{base}/metrics", timeout=timeout) as answer:
        text = answer.read().decode()
    try:
        with urllib.request.urlopen(f"{base}/status", timeout=timeout) as answer:
            status = json.loads(answer.read())
    except urllib.error.HTTPError as exc:  # 503 before a version loads: the body says why
        status = json.loads(exc.read() or b"{}")
    return text, status


def read(
    reader: Reader | None,
    url: str | None,
    previous: dict[str, Any],
) -> Live:
    """The live numbers from ``reader`` (in process) or ``url``; ``previous`` holds the last
    reading of each source and is updated."""
    if reader is not None:
        source = "in process"
    elif url:
        source = url
    else:
        return Live(source="", ok=False)
    try:
        if reader is not None:
            raw, status = reader()
            text = raw.decode() if isinstance(raw, bytes) else raw
        else:
            assert url is not None
            text, status = read_http(url)
        samples = parse(text)
    except (OSError, ValueError, RuntimeError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Live(source=source, ok=False, error=f"{type(exc).__name__}: {reason}")
    now = Scrape(at=CLOCK(), samples=samples, status=dict(status))
    before = previous.get(source)
    previous[source] = now
    if before is not None and now.total("loopml_requests_total") < before.total(
        "loopml_requests_total"
    ):
        before = None  # the server restarted: its counters began again
    live = Live(source=source, ok=True, status=dict(status))
    live.since_start = _window("since the server started", now, None)
    if before is not None and now.at > before.at:
        live.recent = _window("since the last reading", now, before)
    total = now.by("loopml_requests_total", "version", "mode")
    old = before.by("loopml_requests_total", "version", "mode") if before else {}
    seconds = now.at - before.at if before is not None else None
    all_requests = sum(total.values())
    for (version, mode), n in sorted(total.items()):
        recent = n - old.get((version, mode), 0.0)
        live.by_version.append(
            {
                "version": version,
                "mode": mode,
                "requests": n,
                "share": n / all_requests if all_requests else None,
                "rate": recent / seconds if seconds else None,
            }
        )
    live.fallback_reasons = sorted(
        ((k[0], v) for k, v in now.by("loopml_fallbacks_total", "reason").items() if v),
        key=lambda x: -x[1],
    )
    live.errors = sorted(
        ((k[0], k[1], v) for k, v in now.by("loopml_errors_total", "status", "code").items() if v),
        key=lambda x: -x[2],
    )
    if "loopml_breaker_open" in samples:
        live.breaker_open = now.total("loopml_breaker_open") > 0
    live.breaker_opened = [
        (k[0], v) for k, v in now.by("loopml_breaker_opened_total", "reason").items() if v
    ]
    versions = [
        f"{labels.get('model', '')}:{v:g}" for labels, v in samples.get("loopml_model_version", [])
    ]
    live.served_version = ", ".join(versions) or None
    if "loopml_model_fallback" in samples:
        live.model_fallback = now.total("loopml_model_fallback") > 0
    live.swaps = now.total("loopml_model_swaps_total")
    live.swap_failures = now.total("loopml_model_swap_failures_total")
    live.log_dropped = now.total("loopml_prediction_log_dropped_total")
    return live
