"""The one exception tree of loopml.

Every error loopml raises on purpose is a :class:`LoopmlError`. Messages say what was wrong, where
(the key, the line, the column, the row, the file) and what to do about it. ``details`` carries the
same facts for machines (the CLI's ``--json`` output and, later, HTTP error bodies)::

    LoopmlError
    ├── SpecError               loopml.yaml (or an override) is invalid: names the key and the line
    ├── UsageError              a command or call was used wrongly (bad argument, bad combination)
    ├── NotFoundError           a named thing does not exist (source, batch, quarantine entry, ...)
    ├── ConflictError           the thing exists already or someone else holds it
    │   └── GateError           a promotion was refused: no passing evaluation against the holder
    ├── ExpressionError         a feature or label expression is invalid: names what and where
    ├── DataError               input data could not be read as data at all
    │   ├── ReadError           the file is unreadable (missing, not CSV/Parquet/JSON Lines, ...)
    │   └── SchemaError         a schema is invalid or a change to it cannot be applied
    └── StorageError            a storage backend failed
        ├── BackendUnavailable  the server is down or the optional package is not installed
        └── IntegrityError      stored bytes do not match their recorded checksum

HTTP status mapping lives in ``loopml.serving``, exit codes in ``loopml.cli``; this module knows
neither.

>>> try:
...     raise NotFoundError("no source 'orders'", details={"source": "orders"})
... except LoopmlError as e:
...     print(e, e.code, e.details["source"])
no source 'orders' not_found orders
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendUnavailable",
    "ConflictError",
    "DataError",
    "ExpressionError",
    "GateError",
    "IntegrityError",
    "LoopmlError",
    "NotFoundError",
    "ReadError",
    "SchemaError",
    "SpecError",
    "StorageError",
    "UsageError",
]


class LoopmlError(Exception):
    """Base of every error loopml raises on purpose."""

    code = "loopml_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        """The error as ``{"code", "message", "details"}``, the shape used on every interface."""
        return {"code": self.code, "message": self.message, "details": self.details}


class SpecError(LoopmlError):
    """The project spec is invalid. ``details`` has ``file``, ``key`` and ``line`` when known."""

    code = "spec_error"


class UsageError(LoopmlError):
    """A command or API call was used wrongly."""

    code = "usage_error"


class NotFoundError(LoopmlError):
    """A named object does not exist."""

    code = "not_found"


class ConflictError(LoopmlError):
    """The object exists already, or another process holds it."""

    code = "conflict"


class GateError(ConflictError):
    """A promotion into a gated alias (``champion``) was refused: the version has no passing
    evaluation against the alias's current holder. ``details`` names the model, version, alias and
    holder; evaluate again, or promote with ``force`` (which is recorded)."""

    code = "gate_refused"


class ExpressionError(LoopmlError):
    """An expression is invalid. ``details`` has ``expression`` and ``position``, and ``column`` or
    ``function`` when one of them is at fault."""

    code = "expression_error"


class DataError(LoopmlError):
    """Input could not be treated as data at all (row-level problems go to quarantine instead)."""

    code = "data_error"


class ReadError(DataError):
    """A file could not be read."""

    code = "read_error"


class SchemaError(DataError):
    """A schema is invalid, or a change to it cannot be applied."""

    code = "schema_error"


class StorageError(LoopmlError):
    """A storage backend failed."""

    code = "storage_error"


class BackendUnavailable(StorageError):
    """A backend cannot be used: its server is unreachable or its optional package is missing."""

    code = "backend_unavailable"


class IntegrityError(StorageError):
    """Stored bytes do not match the checksum recorded for them."""

    code = "integrity_error"
