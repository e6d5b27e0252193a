"""Storage roles: each a small protocol with an embedded default and a production
backend, chosen by the URL in ``loopml.yaml``.

>>> from pathlib import Path; import tempfile
>>> from loopml.spec import SQLiteConfig
>>> store = open_metadata(SQLiteConfig(path="m.db"), root=Path(tempfile.mkdtemp()))
>>> store.dialect
'sqlite'
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from loopml._lazy import lazy_attributes
from loopml.spec import (
    EventsConfig,
    MetadataConfig,
    OnlineConfig,
    PostgresConfig,
    RedisConfig,
    SQLiteConfig,
)
from loopml.storage._counters import Counter, CounterStore, Counts
from loopml.storage._events import Event, EventLog, id_order
from loopml.storage._ids import new_id
from loopml.storage._online import Fetch, OnlineStore, TileWrite

if TYPE_CHECKING:
    from loopml.storage import _tables as tables
    from loopml.storage._files import ArtifactStore, ByteStore, FileStore, sha256_file
    from loopml.storage._metadata import MetadataStore, SqlMetadataStore

# The metadata store and its tables need SQLAlchemy, the file stores fsspec: loaded on first use,
# so that the counters' record and the protocols import without them.
__getattr__ = lazy_attributes(
    __name__,
    {
        "ArtifactStore": "loopml.storage._files",
        "ByteStore": "loopml.storage._files",
        "FileStore": "loopml.storage._files",
        "sha256_file": "loopml.storage._files",
        "MetadataStore": "loopml.storage._metadata",
        "SqlMetadataStore": "loopml.storage._metadata",
        "tables": "loopml.storage._tables:",
    },
)


def open_metadata(config: MetadataConfig, *, root: Path) -> SqlMetadataStore:
    """Open (and create if needed) the metadata store a config names."""
    if isinstance(config, SQLiteConfig):
        from loopml.storage._sqlite import SQLiteMetadataStore

        return SQLiteMetadataStore(config, root=root)
    if isinstance(config, PostgresConfig):
        from loopml.storage._postgres import PostgresMetadataStore

        return PostgresMetadataStore(config)
    raise TypeError(f"unknown metadata config {config!r}")


def open_online(config: OnlineConfig, *, root: Path) -> OnlineStore:
    """Open (and create if needed) the online store a config names."""
    if isinstance(config, SQLiteConfig):
        from loopml.storage._online_sqlite import SQLiteOnlineStore

        return SQLiteOnlineStore(config, root=root)
    if isinstance(config, RedisConfig):
        from loopml.storage._online_redis import RedisOnlineStore

        return RedisOnlineStore(config)
    raise TypeError(f"unknown online store config {config!r}")


def open_counters(config: RedisConfig | None, store: SqlMetadataStore) -> CounterStore:
    """The project's counter store: the metadata store unless ``storage.counters`` names Redis."""
    if config is None:
        from loopml.storage._counters_sql import SqlCounters

        return SqlCounters(store)
    from loopml.storage._counters_redis import RedisCounters

    return RedisCounters(config)


def open_events(config: EventsConfig, *, root: Path) -> EventLog:
    """Open (and create if needed) the event log a config names."""
    if isinstance(config, SQLiteConfig):
        from loopml.storage._events_sqlite import SQLiteEventLog

        return SQLiteEventLog(config, root=root)
    if isinstance(config, RedisConfig):
        from loopml.storage._events_redis import RedisEventLog

        return RedisEventLog(config)
    raise TypeError(f"unknown event log config {config!r}")


__all__ = [
    "ArtifactStore",
    "ByteStore",
    "Counter",
    "CounterStore",
    "Counts",
    "Event",
    "EventLog",
    "Fetch",
    "FileStore",
    "MetadataStore",
    "OnlineStore",
    "SqlMetadataStore",
    "TileWrite",
    "id_order",
    "new_id",
    "open_counters",
    "open_events",
    "open_metadata",
    "open_online",
    "sha256_file",
    "tables",
]
