"""Replaying history through the loop: the events of each period are answered as live traffic
(under whatever rollout is active), the labels that became known in the period are sent as
feedback, and the controller steps at the period's end on the replay's clock. The demo, the
tests and backtests of a loop policy run on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from loopml.controller._controller import Controller, StepResult
from loopml.errors import ReadError, UsageError
from loopml.features import to_micros
from loopml.rollout import BatchServer

if TYPE_CHECKING:
    from loopml._project import Project


@dataclass
class Period:
    start: datetime
    end: datetime
    rows: int
    answered: dict[int, int]
    shadowed: int
    labels: int
    step: StepResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rows": self.rows,
            "answered": {str(k): v for k, v in self.answered.items()},
            "shadowed": self.shadowed,
            "labels": self.labels,
            "phase": self.step.phase,
            "events": [e["kind"] for e in self.step.events],
        }


@dataclass
class ReplayResult:
    periods: list[Period] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for p in self.periods for e in p.step.events]


def replay(
    project: Project,
    table: pa.Table,
    *,
    start: datetime,
    until: datetime,
    every: timedelta = timedelta(days=1),
    controller: Controller | None = None,
    at: str = "_event_time",
    label_at: str = "_label_available_at",
    on_period: Callable[[Period], None] | None = None,
) -> ReplayResult:
    """Replay the events of ``table`` (complete feature rows, as ``features.build`` gives them)
    from ``start`` to ``until``, one period of ``every`` at a time."""
    if every <= timedelta(0):
        raise UsageError("the replay's period must be positive")
    for col in (at, label_at):
        if col not in table.column_names:
            raise UsageError(f"the replayed table has no column {col!r}")
    controller = controller or Controller(project)
    mon = project.monitoring
    label = mon.label_name()
    keys = mon.join_keys()
    server = BatchServer(rollouts=project.rollouts, models=project.models, monitoring=mon, at=at)
    et, la = table[at], table[label_at]
    table = table.filter(pc.greater_equal(et, pa.scalar(start, et.type)))
    et, la = table[at], table[label_at]
    result = ReplayResult()
    # Ids unique to this replay and reproducible (the canary's assignment hashes them): the
    # monitored log keeps the first prediction of an id, so two replays must not share them.
    run = f"r{to_micros(start)}"
    lo = start
    n = 0
    while lo < until:
        hi = min(lo + every, until)
        events = table.filter(
            pc.and_(
                pc.greater_equal(et, pa.scalar(lo, et.type)), pc.less(et, pa.scalar(hi, et.type))
            )
        )
        served = server.serve(events, id_prefix=f"{run}-{n}") if events.num_rows else {}
        known = table.filter(
            pc.and_(
                pc.and_(
                    pc.greater_equal(la, pa.scalar(lo, la.type)),
                    pc.less(la, pa.scalar(hi, la.type)),
                ),
                pc.is_valid(table[label]),
            )
        )
        sent = (
            mon.send_labels(known, label=label, keys=keys, observed=label_at)["accepted"]
            if known.num_rows
            else 0
        )
        step = controller.step(hi)
        period = Period(
            lo,
            hi,
            events.num_rows,
            dict(served.get("answered", {})),
            int(served.get("shadowed", 0)),
            int(sent),
            step,
        )
        result.periods.append(period)
        if on_period is not None:
            on_period(period)
        lo = hi
        n += 1
    return result


# ------------------------------------------------------------------------------ a file, replayed

REPLAY_CHUNK = 50_000


@dataclass
class FileReplay:
    """What :func:`replay_file` did: the rows answered and by which versions, the time column
    they were logged at and its range, the prediction ids, and the labels sent."""

    file: str
    rows: int
    at: str
    start: datetime | None
    end: datetime | None
    answered: dict[int, int]
    shadowed: int
    id_prefix: str
    inputs: str  # "features" (complete rows) or "requests" (features computed point-in-time)
    snapshot: str | None
    labels: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "rows": self.rows,
            "at": self.at,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "answered": {str(k): v for k, v in self.answered.items()},
            "shadowed": self.shadowed,
            "id_prefix": self.id_prefix,
            "ids": f"{self.id_prefix}-0 to {self.id_prefix}-{self.rows - 1}" if self.rows else None,
            "inputs": self.inputs,
            "snapshot": self.snapshot,
            "labels": self.labels,
        }


def replay_file(
    project: Project,
    path: str | Path,
    *,
    at: str | None = None,
    labels: bool = False,
    snapshot: str | None = None,
) -> FileReplay:
    """Answer every row of a file of events (CSV, Parquet or JSON Lines) as traffic under the
    model's rollout, and log each prediction at the row's own time (column ``at``, default the
    event's time), not at the clock's: the monitor then windows them by event time.

    Rows holding every model input are answered as they are; rows holding the request features
    get their features point-in-time from one snapshot of the lake (``snapshot``, default one
    taken now). Row ``i`` is answered as prediction ``<id_prefix>-i``; the prefix depends on
    the file, the time column and the champion, so replaying the same file again logs nothing
    twice. With ``labels``, the label of each row (computed by ``features.label`` from the
    file's columns) is sent as feedback, known when the label definition says it becomes known.
    """
    import hashlib

    fs = project.features.feature_set if project.spec.features is not None else None
    path = Path(path)
    events = _read_events(path)
    at = at or ((fs.event_time or fs.event_time_column) if fs is not None else None)
    if at is None:
        raise UsageError("give --at COLUMN: the project declares no event time")
    if at not in events.column_names:
        raise UsageError(
            f"{path.name} has no column {at!r} (columns: {', '.join(events.column_names)})",
            details={"field": at, "file": str(path)},
        )
    times = _times(events[at], at, path)
    model = project.models.load(project.registry.get(project.models.name, "champion"))
    wanted = model.encoding.features
    names = set(events.column_names)
    inputs = "features"
    table = events
    if any(f not in names for f in wanted):
        request = list(fs.request) if fs is not None else []
        missing = [c for c in request if c not in names]
        if not request or missing:
            need = [f for f in wanted if f not in names]
            raise UsageError(
                f"{path.name} lacks columns: it needs every model input (missing: "
                f"{', '.join(need)})"
                + (f" or every request feature (missing: {', '.join(missing)})" if request else ""),
                details={"file": str(path)},
            )
        inputs = "requests"
        if snapshot is None:
            snapshot = project.data.snapshot(note=f"replay of {path.name}").id
        parts = [
            project.features.build_for(events.slice(i, REPLAY_CHUNK), snapshot=snapshot)
            for i in range(0, events.num_rows, REPLAY_CHUNK)
        ]
        table = pa.concat_tables(parts) if parts else events
    if at not in table.column_names:
        table = table.append_column(at, events[at])
    table = table.set_column(table.column_names.index(at), at, times)
    champion = project.registry.get(project.models.name, "champion").version
    digest = hashlib.sha256(path.read_bytes() + at.encode()).hexdigest()[:10]
    prefix = f"replay-{digest}-v{champion}"
    server = BatchServer(
        rollouts=project.rollouts, models=project.models, monitoring=project.monitoring, at=at
    )
    served = server.serve(table, id_prefix=prefix)
    sent = None
    if labels:
        sent = _send_labels(project, events, table, times, prefix)
    valid = times.drop_null()
    return FileReplay(
        file=str(path),
        rows=events.num_rows,
        at=at,
        start=pc.min(valid).as_py() if len(valid) else None,
        end=pc.max(valid).as_py() if len(valid) else None,
        answered=dict(served.get("answered", {})),
        shadowed=int(served.get("shadowed", 0)),
        id_prefix=prefix,
        inputs=inputs,
        snapshot=snapshot,
        labels=sent,
    )


def _read_events(path: Path) -> pa.Table:
    if not path.is_file():
        raise UsageError(f"{path}: no such file", details={"file": str(path)})
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if name.endswith((".csv", ".csv.gz")):
            import pyarrow.csv as pcsv

            return pcsv.read_csv(path)
        if name.endswith((".jsonl", ".ndjson", ".json")):
            import pyarrow.json as pjson

            return pjson.read_json(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ReadError(f"{path}: cannot read it: {exc}", details={"file": str(path)}) from None
    raise UsageError(
        f"{path}: unknown format; replay .csv, .csv.gz, .parquet or .jsonl",
        details={"file": str(path)},
    )


def _times(column: pa.ChunkedArray, name: str, path: Path) -> pa.ChunkedArray:
    """The time column as UTC microseconds (text is read as ISO 8601, naive as UTC); every row
    needs one."""
    t = column.type
    try:
        if pa.types.is_timestamp(t):
            out = column.cast(pa.timestamp("us", tz=t.tz or "UTC"))
        elif pa.types.is_date(t):
            out = column.cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            out = pa.chunked_array(
                [pa.array([to_micros(v) for v in column.to_pylist()], pa.int64())]
            ).cast(pa.timestamp("us", tz="UTC"))
        else:
            raise ValueError(f"it holds {t}, not times")
    except (ValueError, pa.ArrowInvalid) as exc:
        raise UsageError(
            f"{path.name}: column {name!r} is not a time column: {exc}", details={"field": name}
        ) from None
    if out.null_count:
        first = pc.index(pc.is_null(out), True).as_py()
        raise UsageError(
            f"{path.name}: column {name!r} is empty in {out.null_count:,} rows (first: row "
            f"{first}): every replayed row needs its time",
            details={"field": name, "rows": out.null_count},
        )
    return out


def _send_labels(
    project: Project, events: pa.Table, table: pa.Table, times: pa.ChunkedArray, prefix: str
) -> dict[str, Any]:
    """The rows' labels, by ``features.label`` over the file's columns, sent as feedback for
    the predictions just logged (by their ids), known when the label definition says."""
    from loopml.features import arrow_type, with_label

    fs = project.features.feature_set
    if fs.label is None:
        raise UsageError("--labels needs features.label: there is no label definition")
    missing = sorted(c for c in fs.label_columns() if c not in events.column_names)
    if missing:
        raise UsageError(
            "--labels: the file lacks the columns the label is computed from: " + ", ".join(missing)
        )
    for c in sorted(fs.label_columns()):
        if c not in table.column_names:
            col = events[c]
            want = arrow_type(fs.event_columns[c]) if c in fs.event_columns else col.type
            table = table.append_column(c, col if col.type.equals(want) else col.cast(want))
    if "_event_time" not in table.column_names:
        table = table.append_column("_event_time", times)
    labelled = with_label(table, fs, None, labelled_only=False)
    values = labelled[fs.label.name].to_pylist()
    known = labelled["_label_available_at"].to_pylist()
    rows = [
        {"prediction_id": f"{prefix}-{i}", "label": v, "observed_at": known[i]}
        for i, v in enumerate(values)
        if v is not None
    ]
    if not rows:
        return {"accepted": 0, "rejected": [], "unlabelled": len(values)}
    sent = project.monitoring.feedback(rows, source="replay", match=True)
    sent["unlabelled"] = len(values) - len(rows)
    return sent
