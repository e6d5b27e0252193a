"""Data: sources (CSV, Parquet, JSON Lines), schema inference and evolution, validation,
quarantine, the versioned Parquet lake and its snapshots."""

from loopml.data import _catalog as catalog
from loopml.data._batch_checks import CheckNote
from loopml.data._catalog import (
    BatchRecord,
    QuarantineRecord,
    SchemaVersion,
    SnapshotRecord,
    SourceRecord,
)
from loopml.data._checks import MESSAGES as REASON_MESSAGES
from loopml.data._data import Data, SchemaDiff, SourceReset, check_regular_file, format_of
from loopml.data._infer import infer_schema, name_words
from loopml.data._inflate import InflateLimit, inflate
from loopml.data._ingest import ingest_buffer
from loopml.data._job import IngestJob, IngestResult, Landed, OnlineRefresh
from loopml.data._lake import Lake, fetch_arrow
from loopml.data._quarantine import Quarantine, QuarantineView, default_user
from loopml.data._readers import Unreadable, open_buffer
from loopml.data._readers import read as read_buffer
from loopml.data._schema import ColumnSchema, Schema, SchemaChange

__all__ = [
    "REASON_MESSAGES",
    "BatchRecord",
    "CheckNote",
    "ColumnSchema",
    "Data",
    "InflateLimit",
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
    "Unreadable",
    "catalog",
    "check_regular_file",
    "default_user",
    "fetch_arrow",
    "format_of",
    "infer_schema",
    "inflate",
    "ingest_buffer",
    "name_words",
    "open_buffer",
    "read_buffer",
]
