"""Fakes and contract suites for loopml's backends (like scikit-learn's ``check_estimator``).

Every storage backend must pass the contract of its role; a new backend's test module subclasses
the contract class and provides the fixtures it names.
"""

from loopml.testing._events import EventLogContract
from loopml.testing._metadata import MetadataStoreContract
from loopml.testing._online import OnlineStoreContract
from loopml.testing._registry import RegistryContract

__all__ = [
    "EventLogContract",
    "MetadataStoreContract",
    "OnlineStoreContract",
    "RegistryContract",
]
