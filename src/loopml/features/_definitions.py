"""A feature set: the spec's definitions resolved against the sources' schemas, type-checked,
ordered, and hashed. The offline (training set) and online (request) paths both read it, so a
feature has exactly one definition.

Evaluation happens in three stages. Stage 1: request features and the derived features that need
only them (the event time is one). Stage 2: lookups and window aggregates, which need the event
time and the entity keys. Stage 3: the remaining derived features, then the label.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import orjson

from loopml.data import Schema
from loopml.errors import ExpressionError, SpecError
from loopml.features._expr import ExprType, parse
from loopml.features._expression import Expression, compile_expression
from loopml.spec import ProjectSpec

Kind = Literal["request", "lookup", "window", "derived"]

_LOGICAL_TO_EXPR: dict[str, ExprType] = {
    "int64": "int",
    "float64": "float",
    "bool": "bool",
    "string": "string",
    "timestamp": "timestamp",
    "date": "timestamp",
}


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Kind
    type: ExprType
    group: str | None = None  # the lookup or window it comes from


@dataclass(frozen=True)
class Lookup:
    name: str
    source: str
    source_keys: list[str]
    event_keys: list[str]
    columns: dict[str, str]  # feature -> source column
    time_column: str | None  # None: a static join
    ttl: timedelta | None

    @property
    def table(self) -> str:
        return f"lookup:{self.name}"


@dataclass(frozen=True)
class WindowAgg:
    feature: str
    stem: str
    agg: str
    column: str | None
    window: timedelta


@dataclass(frozen=True)
class Window:
    name: str
    source: str
    source_keys: list[str]
    event_keys: list[str]
    time: Expression | None  # None: the source's timestamp column
    time_column: str | None
    tile: timedelta
    windows: list[timedelta]
    columns: list[str]  # aggregated columns, in tile order
    aggs: list[WindowAgg]

    @property
    def table(self) -> str:
        return f"tiles:{self.name}"

    @property
    def tile_us(self) -> int:
        return int(self.tile.total_seconds()) * 1_000_000

    def source_columns(self) -> list[str]:
        cols = list(dict.fromkeys(self.source_keys + self.columns))
        if self.time is not None:
            cols += [c for c in sorted(self.time.columns) if c not in cols]
        elif self.time_column is not None and self.time_column not in cols:
            cols.append(self.time_column)
        return cols


@dataclass(frozen=True)
class Label:
    name: str
    expr: Expression
    available_at: Expression | None
    delay: timedelta | None


@dataclass
class FeatureSet:
    """Every feature of a project, resolved. Build it with :func:`build_feature_set`."""

    event_source: str
    event_time: str | None  # a feature name; None: the event source's timestamp column
    event_time_column: str | None
    features: dict[str, Feature]
    request: list[str]
    lookups: dict[str, Lookup]
    windows: dict[str, Window]
    stage1: list[tuple[str, Expression]]
    stage3: list[tuple[str, Expression]]
    label: Label | None
    vector: list[str]
    definitions_hash: str
    event_columns: dict[str, ExprType] = field(default_factory=dict)

    @property
    def derived(self) -> list[tuple[str, Expression]]:
        return self.stage1 + self.stage3

    def label_columns(self) -> set[str]:
        """Event-source columns the label needs beyond the request features."""
        if self.label is None:
            return set()
        cols = set(self.label.expr.columns)
        if self.label.available_at is not None:
            cols |= set(self.label.available_at.columns)
        return {c for c in cols if c in self.event_columns and c not in self.features}


def _fail(name: str, key: str, message: str) -> SpecError:
    return SpecError(
        f"feature {name!r}: {message}", details={"feature": name, "key": key, "line": None}
    )


def build_feature_set(spec: ProjectSpec, schemas: Mapping[str, Schema]) -> FeatureSet:
    """Resolve and check the spec's features against the active schemas of the sources.

    Every problem is a :class:`SpecError` naming the feature: an unknown column or source, a type
    mismatch in an expression, a cycle among derived features, a window without a time.
    """
    fs = spec.features
    if fs is None:
        raise SpecError("loopml.yaml has no features section", details={"key": "features"})

    def schema_of(source: str, feature: str, key: str) -> Schema:
        if source not in schemas:
            known = ", ".join(sorted(schemas)) or "none yet"
            raise _fail(
                feature,
                key,
                f"source {source!r} has no schema yet: ingest a file into it, or declare its "
                f"columns' types in loopml.yaml (sources with one: {known})",
            )
        return schemas[source]

    event_schema = schema_of(fs.event.source, "event", "features.event.source")
    event_columns = _types(event_schema)
    features: dict[str, Feature] = {}
    for name in fs.request:
        if name not in event_columns:
            raise _fail(
                name,
                "features.request",
                _no_column(fs.event.source, name, event_schema, event_columns),
            )
        features[name] = Feature(name, "request", event_columns[name])

    lookups: dict[str, Lookup] = {}
    for lname, lk in fs.lookups.items():
        key = f"features.lookups.{lname}"
        schema = schema_of(lk.source, lname, key)
        types = _types(schema)
        keys = spec.entities[lk.entity].keys
        event_keys = lk.event_keys or keys
        _check_keys(lname, key, keys, types, lk.source, event_keys, features)
        named = lk.named(lname)
        for fname, col in named.items():
            if col not in types:
                raise _fail(fname, key, _no_column(lk.source, col, schema, types))
            features[fname] = Feature(fname, "lookup", types[col], group=lname)
        static = lk.static or schema.timestamp is None
        if static and lk.ttl is not None:
            raise _fail(lname, key, f"a ttl needs a time, and {lk.source!r} is joined without one")
        lookups[lname] = Lookup(
            lname,
            lk.source,
            keys,
            event_keys,
            named,
            None if static else schema.timestamp,
            lk.ttl,
        )

    windows: dict[str, Window] = {}
    for wname, win in fs.windows.items():
        key = f"features.windows.{wname}"
        schema = schema_of(win.source, wname, key)
        types = _types(schema)
        keys = spec.entities[win.entity].keys
        event_keys = win.event_keys or keys
        _check_keys(wname, key, keys, types, win.source, event_keys, features)
        time_expr = None
        if win.time is not None:
            time_expr = _compile(win.time, types, wname, f"{key}.time")
            if time_expr.type != "timestamp":
                raise _fail(wname, f"{key}.time", f"time must be a timestamp, not {time_expr.type}")
        elif schema.timestamp is None:
            raise _fail(
                wname,
                key,
                f"source {win.source!r} has no timestamp column: set the window's time",
            )
        aggregated: list[str] = []
        aggs: list[WindowAgg] = []
        for fname, (stem, agg, column, w) in win.named(wname).items():
            if column is not None:
                if column not in types:
                    raise _fail(fname, key, _no_column(win.source, column, schema, types))
                if agg in ("sum", "mean", "min", "max") and types[column] not in ("int", "float"):
                    raise _fail(
                        fname, key, f"{agg} needs a number, and {column!r} is {types[column]}"
                    )
                if types[column] in ("timestamp", "duration"):
                    raise _fail(fname, key, f"{agg} over a {types[column]} column is not supported")
                if column not in aggregated:
                    aggregated.append(column)
            features[fname] = Feature(
                fname, "window", _agg_type(agg, types.get(column or "", "int")), group=wname
            )
            aggs.append(WindowAgg(fname, stem, agg, column, w))
        windows[wname] = Window(
            wname,
            win.source,
            keys,
            event_keys,
            time_expr,
            schema.timestamp if time_expr is None else None,
            win.tile,
            sorted(win.windows),
            aggregated,
            aggs,
        )

    order = _derived_order(fs.derived, set(features))
    stage1: list[tuple[str, Expression]] = []
    stage3: list[tuple[str, Expression]] = []
    late: set[str] = {n for n, f in features.items() if f.kind in ("lookup", "window")}
    for name in order:
        types = {n: f.type for n, f in features.items()}
        expr = _compile(fs.derived[name], types, name, f"features.derived.{name}")
        features[name] = Feature(name, "derived", expr.type)
        if expr.columns & late:
            late.add(name)
            stage3.append((name, expr))
        else:
            stage1.append((name, expr))

    event_time = fs.event.time
    if event_time is not None:
        if event_time not in features:
            raise _fail(
                event_time,
                "features.event.time",
                "the event time must be a request or derived feature",
            )
        if features[event_time].type != "timestamp":
            raise _fail(
                event_time,
                "features.event.time",
                f"the event time must be a timestamp, not {features[event_time].type}",
            )
        if event_time in late:
            raise _fail(
                event_time,
                "features.event.time",
                "the event time cannot depend on lookups or windows",
            )
    elif event_schema.timestamp is None:
        # Events without a time (a static table of customers, say): nothing may be joined as of
        # a time, and training sets are not cut by time.
        timed = [n for n, lk in lookups.items() if lk.time_column] + list(windows)
        if timed:
            raise _fail(
                timed[0],
                "features.event",
                f"needs an event time, and source {fs.event.source!r} has no timestamp: "
                "set the source's timestamp or features.event.time",
            )
    elif event_schema.timestamp not in features:
        raise _fail(
            event_schema.timestamp,
            "features.request",
            "the event source's timestamp column must be a request feature (it is the event time)",
        )

    label = None
    if fs.label is not None:
        if fs.label.name in event_columns:
            name = fs.label.name
            raise _fail(
                name,
                "features.label.name",
                f"the label is named like a column of the event source {fs.event.source!r} "
                f"(column {name!r}); training sets hold both, so name the label differently, "
                f"e.g. `name: {name}_label` (its expr can still read the column {name!r})",
            )
        all_types = {**event_columns, **{n: f.type for n, f in features.items()}}
        lexpr = _compile(fs.label.expr, all_types, fs.label.name, "features.label.expr")
        avail = None
        if fs.label.available_at is not None:
            avail = _compile(
                fs.label.available_at, all_types, fs.label.name, "features.label.available_at"
            )
            if avail.type != "timestamp":
                raise _fail(
                    fs.label.name,
                    "features.label.available_at",
                    f"must be a timestamp, not {avail.type}",
                )
        label = Label(fs.label.name, lexpr, avail, fs.label.delay)

    vector = fs.vector or [
        n for n, f in features.items() if f.type not in ("timestamp", "duration")
    ]
    if label is not None and label.expr.columns and set(label.expr.columns) <= set(vector):
        # A label computed from the model's own inputs is handed to the model: every score
        # would look perfect and every prediction would be made with the answer unknown.
        read = ", ".join(sorted(label.expr.columns))
        raise _fail(
            label.name,
            "features.label.expr",
            f"the label is computed only from model inputs ({read}): the model would be given "
            f"the answer. Remove {read} from features.request (they are outcomes, known after "
            "the event), or leave them out of features.vector",
        )
    payload = {
        "entities": {k: v.model_dump(mode="json") for k, v in sorted(spec.entities.items())},
        "features": fs.model_dump(mode="json", by_alias=True),
    }
    digest = hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return FeatureSet(
        event_source=fs.event.source,
        event_time=event_time,
        event_time_column=None if event_time else event_schema.timestamp,  # None: untimed
        features=features,
        request=list(fs.request),
        lookups=lookups,
        windows=windows,
        stage1=stage1,
        stage3=stage3,
        label=label,
        vector=vector,
        definitions_hash=digest,
        event_columns=event_columns,
    )


def _types(schema: Schema) -> dict[str, ExprType]:
    """Column -> expression type; a column that has held no value yet has no type."""
    return {c.name: _LOGICAL_TO_EXPR[c.type] for c in schema.columns if c.type != "null"}


def _no_column(source: str, name: str, schema: Schema, types: Mapping[str, ExprType]) -> str:
    col = schema.column(name)
    if col is not None and col.type == "null":
        return (
            f"column {name!r} of source {source!r} has held no value yet, so it has no type: "
            f"declare it in loopml.yaml (sources.{source}.schema.columns.{name}.type)"
        )
    where = "" if not schema.declared_only else " (no data yet: only its declared columns)"
    return f"source {source!r} has no column {name!r}{where}" + _close(name, types)


def _agg_type(agg: str, column_type: str) -> ExprType:
    if agg == "count":
        return "int"
    if agg == "mean":
        return "float"
    if agg == "sum":
        return "float"
    return column_type  # type: ignore[return-value]


def _check_keys(
    name: str,
    key: str,
    keys: list[str],
    types: Mapping[str, ExprType],
    source: str,
    event_keys: list[str],
    features: Mapping[str, Feature],
) -> None:
    for k in keys:
        if k not in types:
            raise _fail(
                name,
                key,
                f"source {source!r} has no column {k!r} for the entity key" + _close(k, types),
            )
    for k in event_keys:
        if k not in features or features[k].kind != "request":
            requested = [n for n, f in features.items() if f.kind == "request"]
            raise _fail(
                name,
                key,
                f"the entity key {k!r} must be a request feature (features.request: "
                f"{', '.join(requested) or 'none'})",
            )


def _compile(text: str, types: Mapping[str, ExprType], name: str, key: str) -> Expression:
    try:
        return compile_expression(text, types)
    except ExpressionError as exc:
        raise _fail(name, key, exc.message) from None


def _derived_order(derived: Mapping[str, str], known: set[str]) -> list[str]:
    """Derived features in dependency order; a cycle is an error naming its features."""
    refs: dict[str, set[str]] = {}
    for name, text in derived.items():
        try:
            refs[name] = {r for r in _references(text) if r in derived}
        except ExpressionError as exc:
            raise _fail(name, f"features.derived.{name}", exc.message) from None
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name]
            raise _fail(
                name,
                f"features.derived.{name}",
                "derived features form a cycle: " + " -> ".join(cycle),
            )
        state[name] = 1
        for dep in sorted(refs[name]):
            visit(dep, [*path, name])
        state[name] = 2
        order.append(name)

    for name in derived:
        visit(name, [])
    del known
    return order


def _references(text: str) -> set[str]:
    return set(parse(text).columns())


def _close(name: str, options: Mapping[str, object], what: str = "columns") -> str:
    """' (did you mean X?)', or the valid names when none is close."""
    import difflib

    close = difflib.get_close_matches(name, list(options), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if not options:
        return ""
    known = sorted(options)
    return f" ({what}: {', '.join(known[:20])}{', ...' if len(known) > 20 else ''})"
