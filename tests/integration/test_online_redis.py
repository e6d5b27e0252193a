"""The online-store contract on the real Redis server (127.0.0.1:6379), under a test prefix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loopml.errors import BackendUnavailable
from loopml.spec import RedisConfig
from loopml.storage import OnlineStore, TileWrite, open_online
from loopml.storage._online_redis import RedisOnlineStore, safe_url
from loopml.testing import OnlineStoreContract
from loopml.testing._online import add

pytestmark = pytest.mark.redis


class TestRedisOnline(OnlineStoreContract):
    @pytest.fixture
    def store(self, redis_prefix: tuple[str, str]) -> Iterator[OnlineStore]:
        url, prefix = redis_prefix
        s = open_online(RedisConfig(url=url, prefix=prefix), root=None)  # type: ignore[arg-type]
        yield s
        s.close()


def test_every_key_is_under_the_prefix(redis_prefix: tuple[str, str]) -> None:
    import redis

    url, prefix = redis_prefix
    s = open_online(RedisConfig(url=url, prefix=prefix), root=None)  # type: ignore[arg-type]
    assert isinstance(s, RedisOnlineStore)
    s.put_latest("a:b", [("c:d", 1.0, b"v")])
    s.merge_tiles("a:b", [TileWrite("c:d", 0, b"1")], add, mark=("m", "1"))
    client = redis.Redis.from_url(url)
    keys = sorted(k.decode() for k in client.scan_iter(match=f"{prefix}:*"))
    client.close()
    s.close()
    assert keys == [
        f"{prefix}:generations",
        f"{prefix}:latest:a%3Ab",
        f"{prefix}:marks",
        f"{prefix}:tiles:a%3Ab:c%3Ad",
    ]


def test_large_batches_are_written_in_pieces(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    s = open_online(RedisConfig(url=url, prefix=prefix), root=None)  # type: ignore[arg-type]
    rows = [(f"k{i}", float(i % 7), str(i).encode()) for i in range(4500)]
    assert s.put_latest("t", rows) == 4500
    assert s.put_latest("t", [(k, ts - 1, b"old") for k, ts, _ in rows]) == 0
    assert s.get_latest("t", ["k4499"]) == [(4499 % 7, b"4499")]
    s.close()


def test_unreachable_server_is_a_clear_error() -> None:
    config = RedisConfig(url="redis://user:secret@127.0.0.1:1/0", prefix="x")
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1") as info:
        open_online(config, root=None)  # type: ignore[arg-type]
    assert "secret" not in str(info.value) and "secret" not in str(info.value.details)


def test_safe_url_hides_passwords() -> None:
    assert safe_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert (
        safe_url("redis://u:pw@h/0?password=pw&db=1") == "redis://u:***@h/0?password=%2A%2A%2A&db=1"
    )
    assert safe_url("redis://h:6379/0") == "redis://h:6379/0"
