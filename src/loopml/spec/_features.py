"""Feature definitions in ``loopml.yaml``: entities, the event, request, lookup, window and
derived features, and the label. One definition serves training and serving.

Checks that need only the spec run here (so errors name the key and line): unknown references
between features, duplicate names, cycles among derived features, windows without a time. Checks
that need column types (unknown columns, type mismatches in expressions) run when the feature set
is built against the sources' schemas, naming the feature.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_serializer,
    field_validator,
    model_validator,
)

from loopml.spec._types import NAME_PATTERN, Duration, PositiveDuration

AGGREGATES = ("count", "sum", "mean", "min", "max", "last")
_AGG = re.compile(
    r"^\s*(count|sum|mean|min|max|last)\s*(?:\(\s*([A-Za-z_][A-Za-z0-9_]*)?\s*\))?\s*$"
)


class _Model(BaseModel):
    # Numbers are finite: .inf or .nan in loopml.yaml would silently turn a check off.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class EntitySpec(_Model):
    """A named join key: the columns that identify one thing (a customer, a store)."""

    keys: list[str] = Field(min_length=1)


class EventSpec(_Model):
    """The events that training rows and requests are about (one row per event: an order, a match, a reading)."""

    source: str = Field(description="The source whose rows are the events.")
    time: str | None = Field(
        None,
        description=(
            "The prediction time of each event: a request or derived feature of type timestamp "
            "(default: the source's timestamp column)."
        ),
    )


class LookupSpec(_Model):
    """Values from a source keyed by an entity, joined as of the event time (or statically)."""

    source: str
    entity: str
    event_keys: list[str] | None = Field(
        None, description="The event's columns for the entity's keys, if named differently."
    )
    features: dict[str, str] | list[str] = Field(
        description="Columns to take: a list, or a mapping of feature name to column."
    )
    prefix: str | None = Field(None, description="Prefix of the feature names (default: 'NAME_').")
    ttl: PositiveDuration | None = Field(
        None, description="Ignore values older than this at the event time (as-of joins only)."
    )
    static: bool = Field(
        False, description="Join without time even if the source has a timestamp column."
    )

    def named(self, name: str) -> dict[str, str]:
        """Feature name -> source column."""
        prefix = f"{name}_" if self.prefix is None else self.prefix
        if isinstance(self.features, list):
            return {f"{prefix}{c}": c for c in self.features}
        return {f"{prefix}{k}": v for k, v in self.features.items()}


class WindowSpec(_Model):
    """Aggregates over a time window before each event, per entity, from an event source.

    Tiled: events are summed into fixed tiles (``tile``), and a window ending at time t covers
    the whole tiles in ``[floor(t) - window, floor(t))``. Batch and online paths combine the same
    tiles, so their numbers are identical; an event counts once the tile it fell in is complete.
    """

    source: str
    entity: str
    event_keys: list[str] | None = None
    time: str | None = Field(
        None,
        description=(
            "When each source row becomes known: an expression over the source's columns "
            "(default: the source's timestamp column)."
        ),
    )
    windows: list[PositiveDuration] = Field(
        min_length=1,
        description=(
            "Window lengths; each names its features as written (24h gives NAME_STEM_24h, "
            "1d gives NAME_STEM_1d)."
        ),
    )
    tile: PositiveDuration = Field(
        timedelta(minutes=5), description="Tile size; divides every window."
    )
    aggregates: dict[str, str] = Field(
        min_length=1,
        description="Feature stem -> count | sum(col) | mean(col) | min(col) | max(col) | last(col).",
    )
    prefix: str | None = None
    _labels: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _spelled(cls, data: Any, handler: Any) -> WindowSpec:
        # Feature names keep the user's spelling of each window (24h stays 24h, not 1d).
        spec: WindowSpec = handler(data)
        raw = data.get("windows") if isinstance(data, dict) else None
        if isinstance(raw, list) and len(raw) == len(spec.windows):
            spec._labels = [_spelling(r, w) for r, w in zip(raw, spec.windows, strict=True)]
        elif not spec._labels:
            spec._labels = [_label(w) for w in spec.windows]
        return spec

    @field_serializer("windows")
    def _windows_as_written(self, windows: list[timedelta]) -> list[str]:
        return list(self.labels)

    @property
    def labels(self) -> list[str]:
        """Each window as it names its features, in the order written."""
        return self._labels or [_label(w) for w in self.windows]

    @field_validator("aggregates")
    @classmethod
    def _aggregates(cls, v: dict[str, str]) -> dict[str, str]:
        for stem, text in v.items():
            m = _AGG.match(text)
            if m is None:
                raise ValueError(
                    f"aggregate {stem!r}: {text!r} is not one of count, sum(col), mean(col), "
                    "min(col), max(col), last(col)"
                )
            if m.group(1) != "count" and not m.group(2):
                raise ValueError(
                    f"aggregate {stem!r}: {m.group(1)} needs a column, e.g. {m.group(1)}(x)"
                )
        return v

    @model_validator(mode="after")
    def _tiles_divide(self) -> WindowSpec:
        tile = self.tile.total_seconds()
        if tile <= 0 or tile != int(tile):
            raise ValueError("tile must be a whole number of seconds")
        seen: dict[timedelta, str] = {}
        for w, label in zip(self.windows, self.labels, strict=True):
            if w in seen:
                raise ValueError(f"windows {seen[w]} and {label} are the same length")
            seen[w] = label
        for w in self.windows:
            if w.total_seconds() % tile:
                raise ValueError(
                    f"the tile ({tile:g}s) must divide every window ({w.total_seconds():g}s)"
                )
        return self

    def parsed(self) -> dict[str, tuple[str, str | None]]:
        """Feature stem -> (aggregate, column or None)."""
        out = {}
        for stem, text in self.aggregates.items():
            m = _AGG.match(text)
            assert m is not None
            out[stem] = (m.group(1), m.group(2))
        return out

    def named(self, name: str) -> dict[str, tuple[str, str, str | None, timedelta]]:
        """Feature name -> (stem, aggregate, column, window)."""
        prefix = f"{name}_" if self.prefix is None else self.prefix
        out = {}
        for w, label in zip(self.windows, self.labels, strict=True):
            for stem, (agg, col) in self.parsed().items():
                out[f"{prefix}{stem}_{label}"] = (stem, agg, col, w)
        return out


def _spelling(raw: Any, w: timedelta) -> str:
    """A window as written (``24h``, ``90m``) when that spelling fits in a name; else its
    shortest whole-unit label."""
    text = str(raw).strip().replace(" ", "") if isinstance(raw, str) else ""
    if re.fullmatch(r"[0-9]+(ms|s|m|h|d|w)", text):
        return text
    return _label(w)


def _label(w: timedelta) -> str:
    s = int(w.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


class LabelSpec(_Model):
    """What the model predicts, and when it becomes known."""

    name: str = Field("label", pattern=NAME_PATTERN)
    expr: str = Field(description="An expression over the event's columns and features.")
    available_at: str | None = Field(
        None, description="An expression of type timestamp: when the label becomes known."
    )
    delay: Duration | None = Field(
        None, description="Or: the label becomes known this long after the event time."
    )


class FeaturesSpec(_Model):
    """Every feature of the project."""

    event: EventSpec
    request: list[str] = Field(
        default_factory=list, description="Columns of the event that arrive with each request."
    )
    lookups: dict[str, LookupSpec] = Field(default_factory=dict)
    windows: dict[str, WindowSpec] = Field(default_factory=dict)
    derived: dict[str, str] = Field(
        default_factory=dict, description="Feature name -> expression over other features."
    )
    label: LabelSpec | None = None
    vector: list[str] | None = Field(
        None,
        description="The model's inputs, in order (default: every feature that is not a timestamp).",
    )

    @model_validator(mode="after")
    def _names(self) -> FeaturesSpec:
        seen: dict[str, str] = {}

        def claim(name: str, where: str) -> None:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"feature name {name!r} ({where}) must be an identifier")
            if name in seen:
                raise ValueError(f"feature {name!r} is defined twice: {seen[name]} and {where}")
            seen[name] = where

        for col in self.request:
            claim(col, "request")
        for lname, lookup in self.lookups.items():
            for fname in lookup.named(lname):
                claim(fname, f"lookups.{lname}")
        for wname, window in self.windows.items():
            for fname in window.named(wname):
                claim(fname, f"windows.{wname}")
        for dname in self.derived:
            claim(dname, "derived")
        if self.vector is not None:
            unknown = [v for v in self.vector if v not in seen]
            if unknown:
                raise ValueError(
                    f"vector names unknown features: {', '.join(unknown)} "
                    f"(features: {', '.join(seen)})"
                )
        if self.label is not None:
            if self.label.name in seen:
                raise ValueError(f"label {self.label.name!r} has the name of a feature")
            if self.label.available_at is not None and self.label.delay is not None:
                raise ValueError("label: give available_at or delay, not both")
        return self

    def all_names(self) -> list[str]:
        names = list(self.request)
        for lname, lookup in self.lookups.items():
            names += list(lookup.named(lname))
        for wname, window in self.windows.items():
            names += list(window.named(wname))
        return names + list(self.derived)


__all__ = [
    "AGGREGATES",
    "EntitySpec",
    "EventSpec",
    "FeaturesSpec",
    "LabelSpec",
    "LookupSpec",
    "WindowSpec",
]
