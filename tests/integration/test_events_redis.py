"""The event-log contract on the real Redis server (127.0.0.1:6379); keys under a test prefix."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from loopml.errors import BackendUnavailable
from loopml.spec import RedisConfig
from loopml.storage import EventLog, open_events
from loopml.testing import EventLogContract

pytestmark = pytest.mark.redis


class TestRedisEventLog(EventLogContract):
    @pytest.fixture
    def log(self, redis_prefix: tuple[str, str]) -> Iterator[EventLog]:
        url, prefix = redis_prefix
        log = open_events(RedisConfig(url=url, prefix=prefix), root=None)  # type: ignore[arg-type]
        yield log
        log.close()


def test_streams_live_under_the_prefix(redis_prefix: tuple[str, str]) -> None:
    import redis

    url, prefix = redis_prefix
    log = open_events(RedisConfig(url=url, prefix=prefix), root=None)  # type: ignore[arg-type]
    log.append("a:b*", [b"x"])
    log.close()
    client = redis.Redis.from_url(url)
    try:
        assert client.type(f"{prefix}:stream:a%3Ab%2A") == b"stream"
    finally:
        client.close()


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1") as caught:
        open_events(RedisConfig(url="redis://:secret@127.0.0.1:1/0"), root=None)  # type: ignore[arg-type]
    assert "secret" not in str(caught.value) and "secret" not in repr(caught.value.details)


def test_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis now raises ImportError
    with pytest.raises(BackendUnavailable, match=r"pip install 'loopml\[redis\]'"):
        open_events(RedisConfig(url="redis://127.0.0.1:6379/0"), root=None)  # type: ignore[arg-type]
