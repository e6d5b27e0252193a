"""The production online store: Redis, every key under ``{prefix}:``.

Layout (``enc`` percent-encodes everything but ``A-Za-z0-9_.-~``, so an encoded name never holds
``:`` nor a glob character, and two different (table, key) pairs never share a Redis key)::

    {prefix}:latest:{enc(table)}             hash  key -> 8-byte big-endian float64 ts + value
    {prefix}:tiles:{enc(table)}:{enc(key)}   hash  str(start) -> value
    {prefix}:marks                           hash  name -> value
    {prefix}:generations                     hash  enc(table) -> writes that changed it

A request reads with one round trip (:meth:`RedisOnlineStore.fetch`); writes of latest rows are a
compare-and-set in a Lua script, tile merges an optimistic transaction (WATCH/MULTI/EXEC) because
the merge function is Python.
"""

from __future__ import annotations

import functools
import math
import random
import struct
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from loopml.errors import BackendUnavailable, ConflictError, StorageError, UsageError
from loopml.spec import RedisConfig
from loopml.storage._online import Fetch, Merge, TileWrite

_TS = struct.Struct(">d")

# KEYS[1]: the table's latest hash, KEYS[2]: the generations hash; ARGV: the table's field in
# the generations hash, then key1, ts1+value1, key2, ts2+value2, ...
# Rows are compared one after the other, so a key repeated in a batch keeps the newest (ties:
# the later row), exactly as separate calls would.
_PUT_LATEST_LUA = """
local changed = 0
for i = 2, #ARGV, 2 do
  local new = ARGV[i + 1]
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if (not old) or struct.unpack('>d', new) >= struct.unpack('>d', old) then
    redis.call('HSET', KEYS[1], ARGV[i], new)
    changed = changed + 1
  end
end
if changed > 0 then
  redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
end
return changed
"""
# A script runs alone on the server: huge batches are cut so that none blocks Redis for long,
# and the pieces are sent in one pipeline (still one round trip).
_SCRIPT_ROWS = 2000
_MERGE_ATTEMPTS = 50  # optimistic merges retried this often under contention, then ConflictError


@functools.lru_cache(maxsize=65536)
def _enc(name: str) -> str:
    return quote(name, safe="")


def safe_url(url: str) -> str:
    """``url`` without its password (in the userinfo or the query), for messages and logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}" if ":" in user else netloc
    query = urlencode(
        [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)]
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def connect(config: RedisConfig, what: str) -> tuple[Any, Any, str]:
    """redis-py, a client for ``config`` that answered PING, and where it is (no credentials).
    :class:`BackendUnavailable` names ``what`` needed it when redis-py is missing, the URL is
    invalid or the server does not answer."""
    try:
        import redis
    except ImportError as exc:
        raise BackendUnavailable(
            f"{what} needs redis-py: pip install 'loopml[redis]'", details={"extra": "redis"}
        ) from exc
    description = f"{safe_url(config.url)} (prefix {config.prefix!r})"
    try:
        # URL query options (socket_connect_timeout=...) override this default.
        client = redis.Redis.from_url(config.url, socket_connect_timeout=5)
    except ValueError as exc:
        raise BackendUnavailable(
            f"invalid Redis URL {safe_url(config.url)}: {exc}", details={"store": description}
        ) from exc
    try:
        with translate(redis, what, description):
            client.ping()
    except BackendUnavailable:
        client.close()
        raise
    return redis, client, description


@contextmanager
def translate(redis: Any, what: str, description: str) -> Iterator[None]:
    """Redis errors as loopml's: an unreachable server is :class:`BackendUnavailable`, any
    other failure :class:`StorageError`, both naming ``what`` and where it is."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise BackendUnavailable(
            f"cannot reach {what} {description}: {exc}; is Redis running at that address?",
            details={"store": description},
        ) from exc
    except redis.exceptions.RedisError as exc:
        raise StorageError(
            f"{what} {description} failed: {exc}", details={"store": description}
        ) from exc


class RedisOnlineStore:
    """An :class:`~loopml.storage.OnlineStore` on a Redis server, shared by many processes.

    Needs the ``redis`` extra. The server is contacted (PING) when the store opens, so a wrong
    URL fails here with :class:`~loopml.errors.BackendUnavailable`, not on the first request.
    """

    def __init__(self, config: RedisConfig) -> None:
        self.prefix = config.prefix
        self._marks = f"{config.prefix}:marks"
        self._generations = f"{config.prefix}:generations"
        redis, self._client, self._description = connect(config, "the online store")
        self._watch_error: type[Exception] = redis.exceptions.WatchError
        self._translate = functools.partial(translate, redis, "the online store", self._description)
        self._put_script = self._client.register_script(_PUT_LATEST_LUA)

    def describe(self) -> str:
        """Where the store is, without credentials."""
        return self._description

    # -- latest -------------------------------------------------------------------------------

    def put_latest(self, table: str, rows: Sequence[tuple[str, float, bytes]]) -> int:
        """Upsert ``(key, ts, value)`` rows with a server-side compare-and-set on ts. Returns
        how many rows replaced or created a stored row."""
        args: list[str | bytes] = []
        for key, ts, value in rows:
            if math.isnan(ts):
                raise UsageError(
                    f"timestamp of key {key!r} in online table {table!r} is NaN: a row needs a "
                    "real ts so that the newest one can win",
                    details={"table": table, "key": key},
                )
            args += (key, _TS.pack(ts) + value)
        if not args:
            return 0
        keys = [self._latest(table), self._generations]
        field = _enc(table)
        with self._translate():
            if len(args) <= 2 * _SCRIPT_ROWS:
                return int(self._put_script(keys=keys, args=[field, *args]))
            pipe = self._client.pipeline(transaction=False)
            for i in range(0, len(args), 2 * _SCRIPT_ROWS):
                piece = [field, *args[i : i + 2 * _SCRIPT_ROWS]]
                self._put_script(keys=keys, args=piece, client=pipe)
            return sum(int(n) for n in pipe.execute())

    def get_latest(self, table: str, keys: Sequence[str]) -> list[tuple[float, bytes] | None]:
        """``(ts, value)`` per key, in order; None where the key has no row."""
        if not keys:
            return []
        with self._translate():
            raw = self._client.hmget(self._latest(table), list(keys))
        return [_unpack(v) for v in raw]

    # -- tiles --------------------------------------------------------------------------------

    def merge_tiles(
        self,
        table: str,
        tiles: Sequence[TileWrite],
        merge: Merge,
        *,
        mark: tuple[str, str] | None = None,
    ) -> None:
        """Fold ``tiles`` into the stored ones (and set ``mark``) in one MULTI/EXEC.

        Optimistic: the touched tile hashes are WATCHed, read, merged here and written back; if
        another writer changed one of them in between, EXEC fails and the merge starts again
        (at most 50 times, then :class:`~loopml.errors.ConflictError`). An exception from
        ``merge`` propagates unchanged and nothing is written.
        """
        by_hash: dict[str, list[TileWrite]] = {}
        for tile in tiles:
            by_hash.setdefault(self._tiles(table, tile.key), []).append(tile)
        if not by_hash and mark is None:
            return
        with self._translate():
            for attempt in range(_MERGE_ATTEMPTS):
                if self._try_merge(table, by_hash, merge, mark):
                    return
                # Back off a little, at random, so that contenders stop colliding.
                time.sleep(random.uniform(0, 0.0005 * 2 ** min(attempt, 6)))
        raise ConflictError(
            f"merging {len(tiles)} tiles into online table {table!r} in {self._description} "
            f"lost to other writers {_MERGE_ATTEMPTS} times in a row; retry later, or give each "
            "entity key to one writer",
            details={"store": self._description, "table": table},
        )

    def _try_merge(
        self,
        table: str,
        by_hash: dict[str, list[TileWrite]],
        merge: Merge,
        mark: tuple[str, str] | None,
    ) -> bool:
        with self._client.pipeline(transaction=True) as pipe:
            try:
                stored: list[list[bytes | None]] = []
                if by_hash:
                    pipe.watch(*by_hash)
                    # Read on another connection, in one round trip: a write that lands after
                    # WATCH (before or after this read) makes EXEC fail, so this is safe.
                    reader = self._client.pipeline(transaction=False)
                    for name, hash_tiles in by_hash.items():
                        reader.hmget(name, [str(t.start) for t in hash_tiles])
                    stored = reader.execute()
                pipe.multi()
                for (name, hash_tiles), values in zip(by_hash.items(), stored, strict=True):
                    current: dict[str, bytes | None] = dict(
                        zip((str(t.start) for t in hash_tiles), values, strict=True)
                    )
                    for tile in hash_tiles:  # in order: repeats of one start fold in sequence
                        field = str(tile.start)
                        current[field] = merge(current[field], tile.value)
                    pipe.hset(name, mapping=current)
                if by_hash:
                    pipe.hincrby(self._generations, _enc(table), 1)
                if mark is not None:
                    pipe.hset(self._marks, mark[0], mark[1])
                pipe.execute()
            except self._watch_error:
                return False
        return True

    def get_tiles(self, table: str, key: str, starts: Sequence[int]) -> list[bytes | None]:
        """The stored value of each tile start (None where there is none), in order."""
        if not starts:
            return []
        with self._translate():
            values: list[bytes | None] = self._client.hmget(
                self._tiles(table, key), [str(s) for s in starts]
            )
        return values

    def fetch(
        self, request: Fetch
    ) -> tuple[list[tuple[float, bytes] | None], list[list[bytes | None]]]:
        """Everything one request needs in one round trip, read atomically (MULTI/EXEC)."""
        pipe = self._client.pipeline(transaction=True)
        for table, key in request.latest:
            pipe.hget(self._latest(table), key)
        for table, key, starts in request.tiles:
            if starts:  # HMGET needs a field; an empty range is answered below without Redis
                pipe.hmget(self._tiles(table, key), [str(s) for s in starts])
        if not len(pipe):
            return [None] * len(request.latest), [[] for _ in request.tiles]
        with self._translate():
            replies = iter(pipe.execute())
        latest = [_unpack(next(replies)) for _ in request.latest]
        tiles = [next(replies) if starts else [] for _, _, starts in request.tiles]
        return latest, tiles

    def generations(self, tables: Sequence[str]) -> list[int]:
        """How many writes changed each table (0: none yet), in order."""
        if not tables:
            return []
        with self._translate():
            raw = self._client.hmget(self._generations, [_enc(t) for t in tables])
        return [int(v) if v is not None else 0 for v in raw]

    def is_empty(self, table: str) -> bool:
        """Whether the table holds no latest row and no tile. Tiles are one hash per entity:
        this scans the keyspace for one of them (a check made when a table's generation has
        never moved, not per request)."""
        with self._translate():
            if self._client.exists(self._latest(table)):
                return False
            pattern = f"{self.prefix}:tiles:{_enc(table)}:*"
            return next(iter(self._client.scan_iter(match=pattern, count=1000)), None) is None

    # -- marks and housekeeping ---------------------------------------------------------------

    def get_mark(self, name: str) -> str | None:
        """The value of watermark ``name``, or None if it was never set."""
        with self._translate():
            value = self._client.hget(self._marks, name)
        return None if value is None else bytes(value).decode()

    def drop_table(self, table: str) -> None:
        """Delete the table's latest hash and every tile hash of it (watermarks are kept).

        Not atomic against concurrent writers of the same table: stop them first.
        """
        pattern = f"{self.prefix}:tiles:{_enc(table)}:*"
        with self._translate():
            self._client.unlink(self._latest(table))
            batch: list[bytes] = []
            for name in self._client.scan_iter(match=pattern, count=1000):
                batch.append(name)
                if len(batch) >= 500:
                    self._client.unlink(*batch)
                    batch.clear()
            if batch:
                self._client.unlink(*batch)
            # After the deletes: a reader that saw the old generation may hold old values.
            self._client.hincrby(self._generations, _enc(table), 1)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    # -- internals ----------------------------------------------------------------------------

    def _latest(self, table: str) -> str:
        return f"{self.prefix}:latest:{_enc(table)}"

    def _tiles(self, table: str, key: str) -> str:
        return f"{self.prefix}:tiles:{_enc(table)}:{_enc(key)}"


def _unpack(raw: bytes | None) -> tuple[float, bytes] | None:
    if raw is None:
        return None
    return _TS.unpack_from(raw)[0], raw[8:]
