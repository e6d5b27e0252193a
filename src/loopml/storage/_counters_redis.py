"""Counters in Redis: increments with ``HINCRBYFLOAT`` inside ``MULTI``, snapshots replaced by a
Lua compare-and-set on their stamp."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING

from loopml.storage._counters import Counter, Counts, decode_snapshot, encode_snapshot

if TYPE_CHECKING:
    from loopml.spec import RedisConfig


# KEYS[1]: the snapshot's hash; ARGV[1]: stamp; ARGV[2]: the encoded values.
_PUT_SNAPSHOT_LUA = """
local old = redis.call('HGET', KEYS[1], 'stamp')
if old and tonumber(old) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'stamp', ARGV[1], 'data', ARGV[2])
return 1
"""


class RedisCounters:
    """Counters in Redis, every key under ``{prefix}:rollout:{id}:``.

    ``{prefix}:rollout:{id}:counts`` is a hash of ``{version}|{name}|{n,total,total_sq}``
    fields, added to with ``HINCRBYFLOAT`` inside ``MULTI``/``EXEC``; a snapshot is the hash
    ``{prefix}:rollout:{id}:snap:{name}`` (stamp, data), replaced by a Lua compare-and-set."""

    def __init__(self, config: RedisConfig) -> None:
        from loopml.storage._online_redis import connect, translate

        self.prefix = config.prefix
        redis, self._client, self._description = connect(config, "the rollout counters")
        self._translate = functools.partial(
            translate, redis, "the rollout counters", self._description
        )
        self._put = self._client.register_script(_PUT_SNAPSHOT_LUA)

    def describe(self) -> str:
        return f"Redis {self._description}"

    def _key(self, rollout_id: int, *rest: str) -> str:
        return ":".join((self.prefix, "rollout", str(int(rollout_id)), *rest))

    def add(self, rollout_id: int, counts: Mapping[tuple[int, str], Counter]) -> None:
        if not counts:
            return
        key = self._key(rollout_id, "counts")
        with self._translate():
            pipe = self._client.pipeline(transaction=True)
            for (version, name), c in counts.items():
                base = f"{int(version)}|{name}|"
                pipe.hincrbyfloat(key, base + "n", c.n)
                pipe.hincrbyfloat(key, base + "total", c.total)
                pipe.hincrbyfloat(key, base + "total_sq", c.total_sq)
            pipe.execute()

    def counts(self, rollout_id: int) -> Counts:
        with self._translate():
            raw = self._client.hgetall(self._key(rollout_id, "counts"))
        fields: dict[tuple[int, str], dict[str, float]] = {}
        for k, v in raw.items():
            version, name, part = k.decode().split("|")
            fields.setdefault((int(version), name), {})[part] = float(v)
        out: Counts = {}
        for (version, name), f in fields.items():
            out.setdefault(version, {})[name] = Counter(
                f.get("n", 0.0), f.get("total", 0.0), f.get("total_sq", 0.0)
            )
        return out

    def put_snapshot(
        self, rollout_id: int, name: str, stamp: float, values: Mapping[int, Counter]
    ) -> bool:
        key = self._key(rollout_id, "snap", name)
        with self._translate():
            return bool(self._put(keys=[key], args=[repr(float(stamp)), encode_snapshot(values)]))

    def snapshot(self, rollout_id: int, name: str) -> tuple[float, dict[int, Counter]]:
        with self._translate():
            raw = self._client.hgetall(self._key(rollout_id, "snap", name))
        if not raw:
            return float("-inf"), {}
        return float(raw[b"stamp"]), decode_snapshot(raw[b"data"].decode())

    def drop(self, rollout_id: int) -> None:
        with self._translate():
            keys = list(self._client.scan_iter(match=self._key(rollout_id, "*"), count=500))
            if keys:
                self._client.delete(*keys)

    def close(self) -> None:
        self._client.close()
