"""The project spec (``loopml.yaml``) as pydantic models."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from loopml.spec._allowed import shown
from loopml.spec._features import EntitySpec, FeaturesSpec
from loopml.spec._loop import LoopSpec
from loopml.spec._model import GateSpec, ModelSpec
from loopml.spec._monitoring import MonitoringSpec
from loopml.spec._serving import ServingSpec
from loopml.spec._storage import StorageSpec
from loopml.spec._types import NAME_PATTERN, SOURCE_PATTERN, Duration, UtcDatetime

LogicalType = Literal["int64", "float64", "bool", "string", "timestamp", "date"]
UnseenPolicy = Literal["warn", "quarantine"]
Role = Literal["id"]
Format = Literal["csv", "parquet", "jsonl"]


class _Model(BaseModel):
    # Numbers are finite: .inf or .nan in loopml.yaml would silently turn a check off.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class ColumnSpec(_Model):
    """What the user declares about one column; anything left out is inferred from data."""

    type: LogicalType | None = Field(
        None,
        description=(
            "Logical type; inferred when omitted. Declared after data was ingested, it also "
            "retypes the rows already in the lake (their values must convert)."
        ),
    )
    role: Role | None = Field(
        None,
        description=(
            "id: the column identifies something (a row, a customer, a name): it never gets "
            "categories or an inferred range, and is not a model input unless named. Inferred "
            "for columns named like identifiers or holding one distinct value per row."
        ),
    )
    nullable: bool | None = Field(
        None,
        description=(
            "Whether nulls are allowed (default: yes, except in the event time and the primary "
            "key). Declare false to quarantine rows with a null here."
        ),
    )
    min: float | None = Field(None, description="Smallest allowed value (numbers).")
    max: float | None = Field(None, description="Largest allowed value (numbers).")
    categories: list[str] | Literal["open"] | None = Field(
        None,
        description=(
            "The allowed values of a categorical column, or `open`: text whose values keep "
            "growing (never checked against a list). Inferred only when the first batch shows "
            "every value many times."
        ),
    )
    unseen: UnseenPolicy | None = Field(
        None, description="What to do with a value outside `categories` (default: the source's)."
    )

    @model_validator(mode="after")
    def _bounds(self) -> ColumnSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.role == "id" and isinstance(self.categories, list):
            raise ValueError(
                "an identifier (role: id) has no list of categories; drop one of the two"
            )
        return self


class SchemaPolicy(_Model):
    """How a source's schema is inferred, enforced and evolved."""

    on_change: Literal["hold", "accept", "reject"] = Field(
        "hold",
        description=(
            "A batch with a new column or a widened type: hold it in quarantine until "
            "`loopml schema accept` (hold), accept the change at once (accept), or quarantine "
            "it without proposing a change (reject)."
        ),
    )
    unseen_categories: UnseenPolicy = Field(
        "warn", description="Values outside an inferred or declared category domain."
    )
    widen_numbers: bool = Field(
        True,
        description=(
            "Accept a lossless numeric widening (bool to int64, int64 to float64) as a new schema "
            "version without holding the batch; other changes follow on_change."
        ),
    )
    infer_ranges: bool = Field(
        True, description="Enforce magnitude bounds inferred from the first batch."
    )
    range_margin: float = Field(
        100.0,
        gt=1,
        le=1e9,
        description=(
            "Inferred bounds allow values up to this many times the largest magnitude seen in "
            "the first batch, with either sign; declare min/max for tighter ones."
        ),
    )
    max_categories: int = Field(
        1000,
        ge=0,
        le=1_000_000,
        description="A string column with more distinct values is not categorical.",
    )
    min_rows_per_category: int = Field(
        10,
        ge=1,
        le=1_000_000,
        description=(
            "A string column is inferred categorical only when the first batch shows every one "
            "of its values at least this many times (and no new value in the batch's later "
            "half); otherwise it is plain text, and unseen values are never warned about."
        ),
    )
    columns: dict[str, ColumnSpec] = Field(
        default_factory=dict, description="Per-column declarations that override inference."
    )


_MAX_RATIO = 1_000_000
_RATIO_SCHEMA: dict[str, JsonValue] = {"type": "number", "minimum": 1, "maximum": _MAX_RATIO}


class CheckSpec(_Model):
    """Row and batch checks beyond the schema.

    Batch checks (row count, null rate) compare a delivered file with the files delivered before
    it; stream micro-batches and releases of quarantined rows are not deliveries and are neither
    checked nor counted.
    """

    max_future: Duration = Field(
        timedelta(days=1), description="Timestamps later than now plus this are quarantined."
    )
    not_before: UtcDatetime | None = Field(
        None,
        description=(
            "Timestamps before this are quarantined. Not set by default: historical data is "
            "data; set it when older timestamps can only be errors (e.g. 1990-01-01)."
        ),
    )
    row_count_ratio: float | Literal["auto"] = Field(
        "auto",
        description=(
            "auto: a file is held whole when it has more than 10 times the most, or less than "
            "a tenth of the fewest, rows among the last `history_batches` files (the bounds "
            "follow the source's own spread, seasons included). A number r: held when more "
            "than r times above or below the median of those files (r from 1 to 1,000,000). "
            "0 disables."
        ),
        json_schema_extra={"anyOf": [{"const": "auto"}, {"const": 0}, _RATIO_SCHEMA]},
    )
    null_rate_increase: float = Field(
        0.3,
        ge=0,
        le=1,
        description=(
            "A file where a column's null rate exceeds its recent rate by more than this "
            "(absolute), beyond chance for the file's size, is held whole (0 disables). Accept "
            "a lasting change with `loopml quarantine release ID --accept-null-rate`."
        ),
    )
    history_batches: int = Field(
        20, ge=1, le=10_000, description="Recent files the batch checks use."
    )
    min_history: int = Field(
        3,
        ge=1,
        le=10_000,
        description="Batch checks start after this many files (at most history_batches).",
    )

    @field_validator("row_count_ratio", mode="before")
    @classmethod
    def _ratio(cls, v: Any) -> Any:
        # One message for every wrong value (pydantic would report each branch of the union).
        if v == "auto":
            return v
        try:
            r = float(v) if not isinstance(v, bool) else None
        except (TypeError, ValueError):
            r = None
        if r is not None and (r == 0 or 1 <= r <= _MAX_RATIO):
            return r
        problem = "not allowed" if r is None else "out of range"
        raise ValueError(
            f"{shown(v)} is {problem}: allowed auto, 0 (off) or a number from 1 to 1,000,000"
        )

    @model_validator(mode="after")
    def _history(self) -> CheckSpec:
        if self.min_history > self.history_batches:
            # The checks would wait for more files than they ever look at: silently off.
            raise ValueError(
                f"min_history ({self.min_history}) is greater than history_batches "
                f"({self.history_batches}): the batch checks would never start"
            )
        return self


class CsvOptions(_Model):
    """How CSV files are parsed."""

    delimiter: str = Field(",", min_length=1, max_length=1)
    quote_char: str = Field('"', min_length=1, max_length=1)
    header: bool = True
    column_names: list[str] | None = Field(
        None,
        description=(
            "The columns' names, in file order: without a header, the names; with one, they "
            "replace the header's (to name an unnamed first column, say)."
        ),
    )
    null_values: list[str] = Field(
        default_factory=lambda: ["", "NA", "N/A", "NULL", "null", "None"],
        description="Strings read as null. `NaN` is not among them: it is a float, and checked.",
    )
    encoding: str = Field("utf-8", description="Text encoding of the files (e.g. latin-1).")
    newlines_in_values: bool = Field(
        False, description="Allow quoted values to span lines (line numbers are then not kept)."
    )


class GzipSpec(_Model):
    """Bounds on what a gzip file may inflate to. A file past them is held whole in quarantine
    (``unreadable``, saying which bound) without being inflated further: a 1 MB file can hold
    1 GiB (a decompression bomb)."""

    max_bytes: int = Field(
        4 << 30,
        ge=1 << 20,
        le=1 << 40,
        description="The most bytes a gzip file's content may have (default 4 GiB).",
    )
    max_ratio: float = Field(
        200,
        ge=10,
        le=2000,
        description=(
            "The most times a gzip file's content may exceed its compressed size, once past "
            "64 MiB (text compresses 3 to 20 times; deflate cannot pass about 1000)."
        ),
    )


class SourceSpec(_Model):
    """One source of data: where its files are and what its rows are."""

    format: Format | None = Field(None, description="csv, parquet or jsonl; from the extension.")
    path: str | None = Field(None, description="A file or glob, relative to the project folder.")
    timestamp: str | None = Field(None, description="The column holding each row's event time.")
    entity_keys: list[str] = Field(
        default_factory=list, description="Columns naming the entities a row is about."
    )
    primary_key: list[str] = Field(
        default_factory=list, description="Columns that identify a row; duplicates quarantined."
    )
    schema_: SchemaPolicy = Field(default_factory=SchemaPolicy, alias="schema")
    checks: CheckSpec = Field(default_factory=CheckSpec)
    csv: CsvOptions = Field(default_factory=CsvOptions)
    gzip: GzipSpec = Field(default_factory=GzipSpec)


def check_source_name(name: str) -> str:
    """Source names become table and folder names: letters, digits, underscores."""
    if not re.match(SOURCE_PATTERN, name):
        raise ValueError(
            f"source name {name!r} must be letters, digits and underscores, starting with a "
            "letter (it becomes a table name)"
        )
    return name


class ProjectSpec(_Model):
    """The whole ``loopml.yaml``."""

    project: str = Field(pattern=NAME_PATTERN, description="The project's name.")
    storage: StorageSpec = Field(default_factory=StorageSpec)
    sources: dict[str, SourceSpec] = Field(default_factory=dict)
    entities: dict[str, EntitySpec] = Field(
        default_factory=dict, description="Named join keys: entity -> its key columns."
    )
    features: FeaturesSpec | None = None
    model: ModelSpec | None = None
    gate: GateSpec = Field(default_factory=GateSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    loop: LoopSpec = Field(default_factory=LoopSpec)

    @field_validator("entities", mode="before")
    @classmethod
    def _entity_shorthand(cls, v: Any) -> Any:
        # `origin: [origin]` is short for `origin: {keys: [origin]}`.
        if isinstance(v, dict):
            return {k: {"keys": e} if isinstance(e, list) else e for k, e in v.items()}
        return v

    @model_validator(mode="after")
    def _references(self) -> ProjectSpec:
        f = self.features
        if f is None:
            return self
        for kind, items in (("lookups", f.lookups), ("windows", f.windows)):
            for name, item in items.items():
                entity = self.entities.get(item.entity)
                if entity is None:
                    known = ", ".join(sorted(self.entities)) or "none declared"
                    raise ValueError(
                        f"features.{kind}.{name}: unknown entity {item.entity!r} (entities: {known})"
                    )
                if item.event_keys is not None and len(item.event_keys) != len(entity.keys):
                    raise ValueError(
                        f"features.{kind}.{name}: event_keys has {len(item.event_keys)} columns, "
                        f"entity {item.entity!r} has {len(entity.keys)}"
                    )
        if self.model is not None:
            names = f.all_names()
            for key in ("features", "categorical"):
                unknown = [n for n in getattr(self.model, key) or [] if n not in names]
                if unknown:
                    raise ValueError(
                        f"model.{key}: {', '.join(map(repr, unknown))} "
                        f"{'is not a feature' if len(unknown) == 1 else 'are not features'} "
                        f"(features: {', '.join(names)})"
                    )
        for name, window in f.windows.items():
            source = self.sources.get(window.source)
            if window.time is None and source is not None and source.timestamp is None:
                raise ValueError(
                    f"features.windows.{name}: source {window.source!r} has no timestamp; "
                    "set the source's timestamp or the window's time"
                )
        return self

    @field_validator("sources")
    @classmethod
    def _source_names(cls, v: dict[str, SourceSpec]) -> dict[str, SourceSpec]:
        for name in v:
            check_source_name(name)
        return v
