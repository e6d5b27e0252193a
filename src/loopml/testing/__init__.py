"""Fakes and contract suites for loopml's backends (like scikit-learn's ``check_estimator``).

Every storage backend must pass the contract of its role (metadata, files, online store, event
log, counters, registry); a new backend's test module subclasses the contract class and provides
the fixtures it names. ``MemoryMetadataStore``, ``MemoryFileStore``, ``MemoryOnlineStore``,
``MemoryEventLog`` and ``MemoryCounters`` are in-memory stores for users' tests; each passes its
role's contract, and ``Registry(MemoryMetadataStore(), ArtifactStore(MemoryFileStore()))`` is a
model registry without a disk.
``write_stream`` and ``stream_spec`` generate a small project whose concept drifts, for tests of
the loop and the rollouts.
"""

from loopml.testing._counters import CounterStoreContract, MemoryCounters
from loopml.testing._events import EventLogContract
from loopml.testing._files import FileStoreContract, MemoryFileStore
from loopml.testing._memory import MemoryEventLog, MemoryOnlineStore
from loopml.testing._metadata import MemoryMetadataStore, MetadataStoreContract
from loopml.testing._online import OnlineStoreContract
from loopml.testing._registry import RegistryContract
from loopml.testing._stream import DEFAULT_LOOP, STREAM_START, stream_spec, write_stream

__all__ = [
    "DEFAULT_LOOP",
    "STREAM_START",
    "CounterStoreContract",
    "EventLogContract",
    "FileStoreContract",
    "MemoryCounters",
    "MemoryEventLog",
    "MemoryFileStore",
    "MemoryMetadataStore",
    "MemoryOnlineStore",
    "MetadataStoreContract",
    "OnlineStoreContract",
    "RegistryContract",
    "stream_spec",
    "write_stream",
]
