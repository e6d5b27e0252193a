"""Storage configuration: one pydantic config per backend, selected by ``type``.

Each role accepts either a URL (``sqlite:///.loopml/metadata.db``, ``postgresql://host/db``,
``redis://host:6379/0``, a folder path or any fsspec URL) or the config written out as a mapping
with its ``type``. Relative paths are relative to the project folder.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
_LOCK_TIMEOUT_HELP = (
    "How long an ingest waits for another ingest of the same source to commit before giving up."
)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SQLiteConfig(_Config):
    """An SQLite database file (the embedded default). ``:memory:`` is not allowed: several
    processes share the store."""

    type: Literal["sqlite"] = "sqlite"
    path: str = Field(description="Database file, relative to the project folder.")
    busy_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="How long a writer waits for a lock (seconds)."
    )
    lock_timeout_s: float = Field(600.0, gt=0, le=86400, description=_LOCK_TIMEOUT_HELP)

    @field_validator("path")
    @classmethod
    def _not_memory(cls, v: str) -> str:
        if v in ("", ":memory:"):
            raise ValueError("an SQLite store needs a file path; ':memory:' cannot be shared")
        return v


class PostgresConfig(_Config):
    """A PostgreSQL database; every table lives in ``schema`` (created if missing)."""

    type: Literal["postgres"] = "postgres"
    url: str = Field(description="postgresql://user@host:port/database")
    schema_: str = Field("loopml", alias="schema", pattern=_NAME)
    pool_size: int = Field(5, ge=1, le=100)
    lock_timeout_s: float = Field(600.0, gt=0, le=86400, description=_LOCK_TIMEOUT_HELP)

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


class RedisConfig(_Config):
    """A Redis server; every key starts with ``prefix``."""

    type: Literal["redis"] = "redis"
    url: str = Field(description="redis://host:port/db")
    prefix: str = Field("loopml", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")


class FilesConfig(_Config):
    """A folder for Parquet files and artifacts: a local path or any fsspec URL."""

    type: Literal["files"] = "files"
    url: str = Field(description="A folder path (relative to the project) or an fsspec URL.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the fsspec filesystem."
    )


def _from_url(value: Any, *, allowed: tuple[str, ...]) -> Any:
    """Turn a URL string into the mapping of its config; mappings pass through."""
    if not isinstance(value, str):
        return value
    parts = urlsplit(value)
    scheme = parts.scheme.split("+", 1)[0].lower()
    if scheme == "sqlite" and "sqlite" in allowed:
        # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy writes them.
        path = value.split(":///", 1)[1] if ":///" in value else ""
        return {"type": "sqlite", "path": path}
    if scheme in ("postgres", "postgresql") and "postgres" in allowed:
        query = dict(parse_qsl(parts.query))
        out: dict[str, Any] = {"type": "postgres"}
        if "schema" in query:
            out["schema"] = query.pop("schema")
        out["url"] = urlunsplit(parts._replace(query=urlencode(query)))
        return out
    if scheme in ("redis", "rediss", "unix") and "redis" in allowed:
        query = dict(parse_qsl(parts.query))
        out = {"type": "redis"}
        if "prefix" in query:
            out["prefix"] = query.pop("prefix")
        out["url"] = urlunsplit(parts._replace(query=urlencode(query)))
        return out
    if "files" in allowed:
        return {"type": "files", "url": value}
    raise ValueError(
        f"unsupported URL {value!r}: use one of "
        + ", ".join(
            {"sqlite": "sqlite:///FILE", "postgres": "postgresql://…", "redis": "redis://…"}[a]
            for a in allowed
        )
    )


MetadataConfig = Annotated[SQLiteConfig | PostgresConfig, Field(discriminator="type")]
OnlineConfig = Annotated[SQLiteConfig | RedisConfig, Field(discriminator="type")]
EventsConfig = Annotated[SQLiteConfig | RedisConfig, Field(discriminator="type")]


class StorageSpec(_Config):
    """Where each storage role lives: a URL (or a mapping with its `type`) per role."""

    metadata: MetadataConfig = Field(
        default_factory=lambda: SQLiteConfig(path=".loopml/metadata.db"),
        description="Registry, batches, quarantine index, runs, rollouts, alerts.",
    )
    lake: FilesConfig = Field(
        default_factory=lambda: FilesConfig(url=".loopml/lake"),
        description="Versioned Parquet batches and quarantined rows.",
    )
    artifacts: FilesConfig = Field(
        default_factory=lambda: FilesConfig(url=".loopml/artifacts"),
        description="Content-addressed model artifacts.",
    )
    online: OnlineConfig = Field(
        default_factory=lambda: SQLiteConfig(path=".loopml/online.db"),
        description="Latest feature values, window tiles, precomputed predictions.",
    )
    events: EventsConfig = Field(
        default_factory=lambda: SQLiteConfig(path=".loopml/events.db"),
        description="Event transport: events, predictions, feedback.",
    )
    counters: RedisConfig | None = Field(
        None,
        description="Rollout and experiment counters shared by the serving workers (A/B "
        "assignments, bandit pulls and rewards): the metadata store when unset, or Redis.",
    )

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_url(cls, v: Any) -> Any:
        return _from_url(v, allowed=("sqlite", "postgres"))

    @field_validator("online", "events", mode="before")
    @classmethod
    def _kv_url(cls, v: Any) -> Any:
        return _from_url(v, allowed=("sqlite", "redis"))

    @field_validator("counters", mode="before")
    @classmethod
    def _counters_url(cls, v: Any) -> Any:
        return None if v is None else _from_url(v, allowed=("redis",))

    @field_validator("lake", "artifacts", mode="before")
    @classmethod
    def _files_url(cls, v: Any) -> Any:
        return _from_url(v, allowed=("files",))
