"""The registry's records: what a model version, an alias move and an evaluation are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model: its files (name -> SHA-256) and where it came from.

    ``lineage`` holds the data snapshot, feature definitions hash, code version, parameters,
    training time and parent version (for stateful training), as the trainer recorded them.
    """

    model: str
    version: int
    files: dict[str, str]
    format: str
    trusted_types: list[str]
    lineage: dict[str, Any]
    metrics: dict[str, Any]
    report: dict[str, Any] | None
    created_at: datetime
    created_by: str
    note: str

    @property
    def ref(self) -> str:
        """``"model:version"``, the form the CLI takes."""
        return f"{self.model}:{self.version}"


@dataclass(frozen=True)
class AliasMove:
    """One row of an alias's append-only history.

    ``action`` is ``promote`` (through the gate), ``force`` (past it), ``rollback``, ``set`` (an
    ungated alias) or ``remove``; ``from_version`` is ``None`` when the alias was free and
    ``to_version`` is ``None`` when it was removed.
    """

    id: int
    model: str
    alias: str
    action: str
    from_version: int | None
    to_version: int | None
    by: str
    at: datetime
    reason: str
    evaluation_id: int | None


@dataclass(frozen=True)
class Evaluation:
    """A verdict on ``model:version`` compared with ``against_version`` (``None``: with nothing,
    the model's first champion)."""

    id: int
    model: str
    version: int
    against_version: int | None
    passed: bool
    report: dict[str, Any]
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class ModelInfo:
    """A model in the registry's listing: its task, how many versions, and who holds which alias."""

    name: str
    task: str
    versions: int
    latest: int
    aliases: dict[str, int]
    created_at: datetime
    note: str
