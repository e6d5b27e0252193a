"""Data: sources (CSV, Parquet, JSON Lines), schema inference and evolution, validation,
quarantine, the versioned Parquet lake and its snapshots."""

from loopml.data._batch_checks import CheckNote
from loopml.data._catalog import (
    BatchRecord,
    QuarantineRecord,
    SchemaVersion,
    SnapshotRecord,
    SourceRecord,
)
from loopml.data._checks import MESSAGES as REASON_MESSAGES
from loopml.data._data import Data, SchemaDiff, SourceReset, format_of
from loopml.data._infer import infer_schema
from loopml.data._ingest import ingest_buffer
from loopml.data._job import IngestJob, IngestResult, Landed, OnlineRefresh
from loopml.data._lake import Lake, fetch_arrow
from loopml.data._quarantine import Quarantine, QuarantineView, default_user
from loopml.data._schema import ColumnSchema, Schema, SchemaChange

__all__ = [
    "REASON_MESSAGES",
    "BatchRecord",
    "CheckNote",
    "ColumnSchema",
    "Data",
    "IngestJob",
    "IngestResult",
    "Lake",
    "Landed",
    "OnlineRefresh",
    "Quarantine",
    "QuarantineRecord",
    "QuarantineView",
    "Schema",
    "SchemaChange",
    "SchemaDiff",
    "SchemaVersion",
    "SnapshotRecord",
    "SourceRecord",
    "SourceReset",
    "default_user",
    "fetch_arrow",
    "format_of",
    "infer_schema",
    "ingest_buffer",
]
