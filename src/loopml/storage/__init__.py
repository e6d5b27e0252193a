"""Storage roles: each a small protocol with an embedded default and a production
backend, chosen by the URL in ``loopml.yaml``.

>>> from pathlib import Path; import tempfile
>>> from loopml.spec import SQLiteConfig
>>> from loopml.storage import open_metadata
>>> store = open_metadata(SQLiteConfig(path="m.db"), root=Path(tempfile.mkdtemp()))
>>> store.dialect
'sqlite'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml._lazy import lazy_attributes
from loopml.storage._counters import Counter, CounterStore, Counts
from loopml.storage._events import Event, EventLog, id_order
from loopml.storage._faults import checkpoint
from loopml.storage._ids import new_id
from loopml.storage._online import Fetch, Merge, OnlineStore, TileWrite
from loopml.storage._owner import owner_alive, owner_token

if TYPE_CHECKING:
    from loopml.storage import _tables as tables
    from loopml.storage._counters_redis import RedisCounters
    from loopml.storage._counters_sql import SqlCounters
    from loopml.storage._files import TMP_PREFIX, ArtifactStore, ByteStore, FileStore, sha256_file
    from loopml.storage._metadata import MetadataStore, SqlMetadataStore
    from loopml.storage._open import open_counters, open_events, open_metadata, open_online

# The metadata store and its tables need SQLAlchemy, the file stores fsspec, the openers import
# every backend: loaded on first use, so that the counters' record and the protocols import
# without them (and the pure algorithms that use them import no backend, even statically).
__getattr__ = lazy_attributes(
    __name__,
    {
        "ArtifactStore": "loopml.storage._files",
        "TMP_PREFIX": "loopml.storage._files",
        "RedisCounters": "loopml.storage._counters_redis",
        "SqlCounters": "loopml.storage._counters_sql",
        "ByteStore": "loopml.storage._files",
        "FileStore": "loopml.storage._files",
        "sha256_file": "loopml.storage._files",
        "MetadataStore": "loopml.storage._metadata",
        "SqlMetadataStore": "loopml.storage._metadata",
        "tables": "loopml.storage._tables:",
        **dict.fromkeys(
            ("open_counters", "open_events", "open_metadata", "open_online"), "loopml.storage._open"
        ),
    },
)


__all__ = [
    "TMP_PREFIX",
    "ArtifactStore",
    "ByteStore",
    "Counter",
    "CounterStore",
    "Counts",
    "Event",
    "EventLog",
    "Fetch",
    "FileStore",
    "Merge",
    "MetadataStore",
    "OnlineStore",
    "RedisCounters",
    "SqlCounters",
    "SqlMetadataStore",
    "TileWrite",
    "checkpoint",
    "id_order",
    "new_id",
    "open_counters",
    "open_events",
    "open_metadata",
    "open_online",
    "owner_alive",
    "owner_token",
    "sha256_file",
    "tables",
]
