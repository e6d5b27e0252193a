"""Opening each storage role's backend from its config: the embedded default or the production
backend the URL in ``loopml.yaml`` names. Each backend module is imported only when opened."""

from __future__ import annotations

from pathlib import Path

from loopml.spec import (
    EventsConfig,
    MetadataConfig,
    OnlineConfig,
    PostgresConfig,
    RedisConfig,
    SQLiteConfig,
)
from loopml.storage._counters import CounterStore
from loopml.storage._events import EventLog
from loopml.storage._metadata import SqlMetadataStore
from loopml.storage._online import OnlineStore


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
