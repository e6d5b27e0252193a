"""The relational schema of the metadata store, shared by every SQL backend.

Tables are defined without a database schema; the Postgres backend maps them into its configured
schema. Columns only ever get added; :data:`SCHEMA_VERSION` counts the layout.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

SCHEMA_VERSION = 1


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: loopml stores UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json: Any = JSON().with_variant(JSONB(), "postgresql")

metadata_obj = MetaData()

meta = Table(
    "loopml_meta",
    metadata_obj,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

sources = Table(
    "sources",
    metadata_obj,
    Column("name", String(64), primary_key=True),
    Column("format", String(16), nullable=False),
    Column("declared", Boolean, nullable=False),
    Column("config", Json, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

schemas = Table(
    "schemas",
    metadata_obj,
    Column("source", String(64), ForeignKey("sources.name"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column(
        "status", String(16), nullable=False
    ),  # active | proposed | superseded | rejected | reset
    Column("definition", Json, nullable=False),
    Column("changes", Json),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Index("ix_schemas_created", "created_at"),
)

batches = Table(
    "batches",
    metadata_obj,
    Column("id", String(40), primary_key=True),
    Column("source", String(64), ForeignKey("sources.name"), nullable=False),
    Column("status", String(16), nullable=False),  # pending | committed | aborted | reset
    Column("content_hash", String(64), nullable=False),
    Column("file", Text, nullable=False),
    Column("format", String(16), nullable=False),
    Column("rows_read", Integer),
    Column("rows_accepted", Integer),
    Column("rows_quarantined", Integer),
    Column("schema_version", Integer),
    Column("lake_path", Text),
    Column("stats", Json),
    Column("warnings", Json),
    Column("origin", Json, nullable=False),
    Column("owner", String(200), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("committed_at", UtcDateTime),
    Index("ix_batches_source_status", "source", "status"),
    Index("ix_batches_committed_at", "committed_at"),
    Index(
        "ux_batches_content",
        "source",
        "content_hash",
        unique=True,
        sqlite_where=text("status != 'aborted'"),
        postgresql_where=text("status != 'aborted'"),
    ),
)

quarantine = Table(
    "quarantine",
    metadata_obj,
    Column("id", String(40), primary_key=True),
    Column("batch_id", String(40), ForeignKey("batches.id"), nullable=False),
    Column("source", String(64), ForeignKey("sources.name"), nullable=False),
    Column("kind", String(8), nullable=False),  # rows | batch
    Column("status", String(16), nullable=False),  # held | released | dropped
    Column("rows", Integer, nullable=False),
    Column("reasons", Json, nullable=False),
    Column("path", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime),
    Column("resolved_by", String(128)),
    Column("resolution", Json),
    Index("ix_quarantine_source_status", "source", "status"),
    Index("ix_quarantine_created_at", "created_at"),
    Index("ix_quarantine_resolved_at", "resolved_at"),
)

snapshots = Table(
    "snapshots",
    metadata_obj,
    Column("id", String(40), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Index("ix_snapshots_created_at", "created_at"),
)

stream_offsets = Table(
    "stream_offsets",
    metadata_obj,
    Column("stream", String(200), primary_key=True),
    Column("consumer_group", String(100), primary_key=True),
    Column("last_id", String(64), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

snapshot_batches = Table(
    "snapshot_batches",
    metadata_obj,
    Column("snapshot_id", String(40), ForeignKey("snapshots.id"), primary_key=True),
    Column("batch_id", String(40), ForeignKey("batches.id"), primary_key=True),
)

# ----------------------------------------------------------------------------------- registry

models = Table(
    "models",
    metadata_obj,
    Column("name", String(128), primary_key=True),
    Column("task", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
)

model_versions = Table(
    "model_versions",
    metadata_obj,
    Column("model", String(128), ForeignKey("models.name"), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("files", Json, nullable=False),  # {file name: sha256}
    Column("format", String(32), nullable=False),
    Column("trusted_types", Json, nullable=False),
    Column("lineage", Json, nullable=False),
    Column("metrics", Json, nullable=False),
    Column("report", Json),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("note", Text, nullable=False, server_default=""),
)

aliases = Table(
    "aliases",
    metadata_obj,
    Column("model", String(128), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    ForeignKeyConstraint(["model", "version"], ["model_versions.model", "model_versions.version"]),
)

alias_history = Table(
    "alias_history",
    metadata_obj,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), ForeignKey("models.name"), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # promote | force | rollback | set | remove
    Column("from_version", Integer),
    Column("to_version", Integer),
    Column("by", String(128), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("evaluation_id", Integer),
    Index("ix_alias_history_model_alias", "model", "alias", "id"),
    Index("ix_alias_history_at", "at"),
)

evaluations = Table(
    "evaluations",
    metadata_obj,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("against_version", Integer),
    Column("passed", Boolean, nullable=False),
    Column("report", Json, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    ForeignKeyConstraint(["model", "version"], ["model_versions.model", "model_versions.version"]),
    Index("ix_evaluations_model_version", "model", "version", "id"),
    Index("ix_evaluations_created_at", "created_at"),
)

# ---------------------------------------------------------------------------------- monitoring

alerts = Table(
    "alerts",
    metadata_obj,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128)),  # None: a project-wide rule
    Column("rule", String(64), nullable=False),
    Column("metric", String(200), nullable=False),
    Column("severity", String(16), nullable=False),  # info | warning | critical
    Column("status", String(16), nullable=False),  # firing | resolved
    Column("value", Float),  # the latest value that held the condition
    Column("threshold", Float, nullable=False),
    Column("window", String(16), nullable=False),  # current | sliding | cumulative
    Column("window_start", UtcDateTime),
    Column("window_end", UtcDateTime),
    Column("first_at", UtcDateTime, nullable=False),
    Column("last_at", UtcDateTime, nullable=False),
    Column("occurrences", Integer, nullable=False),  # evaluations folded into this alert
    Column("notified_at", UtcDateTime),  # None: suppressed by the cooldown
    Column("resolved_at", UtcDateTime),
    Column("details", Json, nullable=False),
    Index("ix_alerts_model_status", "model", "status"),
    Index("ix_alerts_rule_id", "rule", "id"),
    Index("ix_alerts_first_at", "first_at"),
    Index("ix_alerts_resolved_at", "resolved_at"),
)

alert_state = Table(
    "alert_state",
    metadata_obj,
    Column("rule", String(64), primary_key=True),
    Column("model", String(128), primary_key=True),  # "" for a project-wide rule
    Column("consecutive", Integer, nullable=False),  # evaluations in a row the condition held
    Column("last_value", Float),
    Column("last_at", UtcDateTime),
    Column("last_notified_at", UtcDateTime),
    Column("open_alert_id", Integer),  # the firing alert new occurrences fold into
)

# ------------------------------------------------------------------------ the loop and rollouts

leases = Table(
    "leases",
    metadata_obj,
    Column("name", String(200), primary_key=True),  # what is leased, e.g. "loop:<model>"
    Column("holder", String(200), nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

# Named locks of the metadata store (``MetadataStore.lock``): one row while a process holds it.
# SQLite takes the lock with this row and frees a dead holder's by its pid; Postgres holds an
# advisory lock and keeps the row only to say who holds it.
locks = Table(
    "locks",
    metadata_obj,
    Column("name", String(200), primary_key=True),  # e.g. "ingest:<source>"
    Column("holder", String(200), nullable=False),  # host|pid|start of the holding process
    Column("ticket", String(40), nullable=False),  # this acquisition (threads share a pid)
    Column("acquired_at", UtcDateTime, nullable=False),
)

loop_state = Table(
    "loop_state",
    metadata_obj,
    Column("model", String(128), primary_key=True),
    Column(
        "phase", String(32), nullable=False
    ),  # idle | training | gating | shadow | canary | paused
    Column("cycle", Integer, nullable=False),  # the current (or last) cycle number
    Column("data", Json, nullable=False),  # the phase's working state
    Column("revision", Integer, nullable=False),  # bumped by every change (compare-and-set)
    Column("updated_at", UtcDateTime, nullable=False),
)

loop_events = Table(
    "loop_events",
    metadata_obj,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("cycle", Integer, nullable=False),
    Column("kind", String(32), nullable=False),  # triggered | trained | gate | canary_step | ...
    Column("at", UtcDateTime, nullable=False),  # the loop's clock (replays run on their own)
    Column("recorded_at", UtcDateTime, nullable=False),  # the wall clock
    Column("detail", Json, nullable=False),
    Index("ix_loop_events_model_id", "model", "id"),
    Index("ix_loop_events_at", "at"),
)

rollouts = Table(
    "rollouts",
    metadata_obj,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("strategy", String(16), nullable=False),  # shadow | canary
    Column("champion", Integer, nullable=False),
    Column("challenger", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # active | promoted | rolled_back | stopped
    Column("step", Integer, nullable=False),  # index into the steps
    Column("share", Float, nullable=False),  # the challenger's share of answers now
    Column("shadow", Float, nullable=False),  # the share of requests shadowed
    Column("unit", String(128)),  # request field assigning units to arms; None: each request
    Column("started_at", UtcDateTime, nullable=False),
    Column("step_started_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime),
    Column("data", Json, nullable=False),  # steps, decisions with their numbers, the reason
    Index("ix_rollouts_model_status", "model", "status"),
    Index("ix_rollouts_started_at", "started_at"),
    Index("ix_rollouts_ended_at", "ended_at"),
)

rollout_counters = Table(
    "rollout_counters",
    metadata_obj,
    Column("rollout_id", Integer, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("name", String(64), primary_key=True),  # requests | errors | latency_us | ...
    Column("n", Float, nullable=False),
    Column("total", Float, nullable=False),
    Column("total_sq", Float, nullable=False),
)

# A snapshot replaced as a whole by a newer one (a bandit's rewards per arm, recomputed from the
# feedback log); ``stamp`` orders them (compare-and-set on it).
rollout_snapshots = Table(
    "rollout_snapshots",
    metadata_obj,
    Column("rollout_id", Integer, primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("stamp", Float, nullable=False),
    Column("data", Text, nullable=False),
)

# ----------------------------------------------------------------------------------- actions

# What a person did through the dashboard (a rollback, a quarantine release, a schema accepted,
# a loop step): who, why, on what, and what came of it. The domain tables record the change
# itself (alias_history, quarantine, schemas); this is the audit trail of the request.
actions = Table(
    "actions",
    metadata_obj,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("by", String(128), nullable=False),
    Column("action", String(64), nullable=False),  # rollback | release | drop | accept | step
    Column("target", String(200), nullable=False),  # what it acted on, e.g. "quarantine:q_..."
    Column("reason", Text, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("outcome", Json, nullable=False),  # what came of it, or the error
    Index("ix_actions_at", "at"),
)
