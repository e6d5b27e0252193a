"""loopml: keep a machine-learning model useful after it ships.

>>> import loopml
>>> sorted(loopml.__all__)[:3]
['ConflictError', 'DataError', 'LoopmlError']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopml.errors import (
    BackendUnavailable,
    ConflictError,
    DataError,
    ExpressionError,
    GateError,
    IntegrityError,
    LoopmlError,
    NotFoundError,
    ReadError,
    SchemaError,
    SpecError,
    StorageError,
    UsageError,
)

if TYPE_CHECKING:
    from loopml._project import Project

from loopml._version import __version__

__all__ = [
    "BackendUnavailable",
    "ConflictError",
    "DataError",
    "ExpressionError",
    "GateError",
    "IntegrityError",
    "LoopmlError",
    "NotFoundError",
    "Project",
    "ReadError",
    "SchemaError",
    "SpecError",
    "StorageError",
    "UsageError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Project pulls in Arrow, DuckDB and SQLAlchemy; `import loopml` stays light without them.
    if name == "Project":
        from loopml._project import Project

        return Project
    raise AttributeError(f"module 'loopml' has no attribute {name!r}")
