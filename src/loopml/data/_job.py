"""The records of one ingest, shared by the protocol (``_ingest``), a batch held whole
(``_held``), quarantine releases and the stream consumer: what a batch needs (:class:`IngestJob`),
what its commit recorded (:class:`Landed`) and what it did (:class:`IngestResult`,
:class:`OnlineRefresh`). They live apart from the protocol so that each of those modules can
import them without importing the others."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from loopml.data._batch_checks import CheckNote
from loopml.data._quarantined import Positions
from loopml.spec import SourceSpec


@dataclass
class OnlineRefresh:
    """What landing a batch did to the online store (filled in by the project, which knows the
    features): ``refreshed``, ``not_materialized`` (nothing to keep current yet) or ``failed``."""

    status: str
    tiles: int = 0
    lookups: int = 0
    message: str = ""


@dataclass
class IngestResult:
    """The accounting of one file: ``rows_read == rows_accepted + rows_quarantined``."""

    source: str
    file: str
    batch_id: str | None
    status: str  # landed | partial | held | duplicate
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    reasons: list[dict[str, Any]] = field(default_factory=list)
    batch_reasons: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    quarantine_id: str | None = None
    schema_version: int | None = None
    schema_changes: list[str] = field(default_factory=list)
    # Changes this batch asked of the schema that wait for `loopml schema accept` (the rows
    # that need them are in quarantine, or were warned about).
    proposed_changes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    content_hash: str = ""
    checks: list[CheckNote] = field(default_factory=list)  # what the batch was compared with
    accepted: dict[str, Any] = field(default_factory=dict)  # checks a release waived
    online: OnlineRefresh | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Landed:
    """What a commit recorded, for the statements a job adds to its transaction."""

    batch_id: str
    quarantine_id: str | None  # the entry of this batch's quarantined rows, if any
    accepted: dict[str, Any]


@dataclass
class IngestJob:
    """Everything one batch needs besides its bytes."""

    source: str
    spec: SourceSpec
    fmt: str
    file: str
    content_hash: str
    by: str
    origin: dict[str, Any] = field(default_factory=lambda: {"kind": "file"})
    positions: Positions | None = None
    original: Callable[[], bytes] | None = None  # the file's bytes, for a batch held whole
    now: datetime | None = None
    infer_timestamp: bool = False  # an undeclared source: take the first time column
    # A delivered file gets batch checks and joins their history; a stream micro-batch or a
    # release of rows that were checked as part of their file does neither.
    delivery: bool = True
    accept: frozenset[str] = frozenset()  # batch checks a release waives (row_count, null_rate)
    # A release: the entry it would resolve. Held again, or landing nothing, it leaves that
    # entry held as it is, and makes no new one.
    release_of: str | None = None
    # Extra statements for the commit transaction.
    on_commit: Callable[[Any, Landed], None] | None = None
    # The batch would create its source: a file that cannot be read is refused, not held.
    new_source: bool = False
    # Why the file's content could not even be had (a gzip past its bounds): held whole.
    refused: str | None = None
