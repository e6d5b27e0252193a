"""The monitoring report as typed records: what :meth:`Monitoring.report` returns, what
``loopml monitor --json`` prints, what the HTML report draws, and the ``latest.json`` record the
Prometheus exporter reads.

The records are pydantic models, so a report read back from JSON (a stored report,
``latest.json``) is validated like one just built. A report is built in one place
(:meth:`Monitoring.report`, through :meth:`WindowRecord.of` and the other constructors here) and
read through attributes everywhere else:

>>> report = MonitoringReport.empty("m", received=0, refused=0, message="no predictions logged yet")
>>> report.rows, report.labels.received, report.current is None
(0, 0, True)
>>> report.to_dict()
{'model': 'm', 'rows': 0, 'labels': {'received': 0, 'refused': 0}, 'message': 'no predictions logged yet'}

Its JSON (:meth:`MonitoringReport.to_dict`) keeps the keys, values and order the report had as a
dict: a field that is None and marked as omitted (``OMIT``) is left out rather than written as
null, as the dict left the key out. Leaf metric maps stay ``dict[str, float | None]``: their
keys are the metrics of a task, open-ended by design.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from types import UnionType
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    Self,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
)

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
)

from loopml.monitoring._alerts import Alert
from loopml.spec import DriftSpec, MonitoringSpec, PerformanceSpec

if TYPE_CHECKING:
    from loopml.monitoring._drift import ColumnDrift, DriftResult
    from loopml.monitoring._monitor import Evaluation, WindowChoice
    from loopml.monitoring._shift import Shift

KINDS = ("covariate", "label", "concept")
Metrics = dict[str, float | None]
# realized performance: its metrics, or {"error": why} when they could not be computed
Realized = dict[str, float | str | None]
# the alert as it was always written: datetimes in ISO 8601 with their +00:00 offset
AlertRecord = Annotated[Alert, PlainSerializer(lambda a: a.to_dict(), return_type=dict)]


class Record(BaseModel):
    """A part of the report: fields named in ``OMIT`` are left out of the JSON while None."""

    model_config = ConfigDict(extra="forbid")
    OMIT: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        for key in self.OMIT:
            if out.get(key, 0) is None:
                del out[key]
        return out

    @classmethod
    def salvage(cls, data: object) -> Self | None:
        """What can be read of this record in a stored, older or partial report, to draw it
        (the HTML report): a field that validates is kept, a record inside it (an alert too) is
        salvaged in turn, a list or map keeps the items that can be read, and a field missing
        or malformed is None *whatever its type says*. Not a mapping: None; a record inside
        that is an empty mapping and does not validate: None. A report that validates is
        salvaged whole, equal to :meth:`model_validate`'s; anything that computes on a report
        validates it instead.

        >>> d = Decay.salvage({"metric": "auc", "decayed": "maybe"})
        >>> d.metric, d.drop, d.decayed
        ('auc', None, None)
        """
        if not isinstance(data, Mapping):
            return None
        values = {
            name: _salvage(field.annotation, data[name])
            if name in data
            else (None if field.is_required() else field.get_default())
            for name, field in cls.model_fields.items()
        }
        record = cls.model_construct(_fields_set={k for k in values if k in data}, **values)
        return cast("Self", record)


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _salvage(annotation: Any, raw: Any) -> Any:
    """``raw`` as ``annotation`` says, else what can be kept of it (see :meth:`Record.salvage`),
    else None."""
    if annotation not in _ADAPTERS:
        _ADAPTERS[annotation] = TypeAdapter(annotation)
    try:
        return _ADAPTERS[annotation].validate_python(raw)
    except ValidationError:
        pass
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, UnionType):
        kept = (_salvage(a, raw) for a in args if a is not type(None))
        return next((v for v in kept if v is not None), None)
    if origin is Annotated:
        return _salvage(args[0], raw)
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return annotation.salvage(raw) if raw else None
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):  # an Alert
        if not isinstance(raw, Mapping) or not raw:
            return None
        hints, out = get_type_hints(annotation), object.__new__(annotation)
        for f in dataclasses.fields(annotation):
            default = None if f.default is dataclasses.MISSING else f.default
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            value = _salvage(hints[f.name], raw[f.name]) if f.name in raw else default
            object.__setattr__(out, f.name, value)  # frozen
        return out
    if origin is list and isinstance(raw, list | tuple):
        return [v for v in (_salvage(args[0], x) for x in raw) if v is not None]
    if origin is dict and isinstance(raw, Mapping):
        items = ((str(k), x, _salvage(args[1], x)) for k, x in raw.items())
        return {k: v for k, x, v in items if v is not None or x is None}
    return None


class ColumnDriftRecord(Record):
    """One column's drift in one window (see :class:`loopml.monitoring.ColumnDrift`); floats
    that were not finite are None."""

    name: str
    kind: str
    rows: int
    test: str
    statistic: float | None
    p_value: float | None
    p_adjusted: float | None
    effect: str
    value: float | None
    threshold: float | None
    psi: float | None
    js: float | None
    drifted: bool
    missing_ref: float | None
    missing_cur: float | None
    mean_ref: float | None = None
    mean_cur: float | None = None
    score: float | None = None

    @classmethod
    def of(cls, c: ColumnDrift) -> ColumnDriftRecord:
        return cls.model_validate(c.to_dict())


class FeatureDrift(Record):
    """The features of one window, tested together."""

    rows: int
    alpha: float
    correction: str
    drifted: list[str]
    share: float
    columns: list[ColumnDriftRecord]

    @classmethod
    def of(cls, d: DriftResult) -> FeatureDrift:
        return cls(
            rows=d.rows,
            alpha=d.alpha,
            correction=d.correction,
            drifted=d.drifted,
            share=d.share,
            columns=[ColumnDriftRecord.of(c) for c in d.columns],
        )


class FeatureScores(Record):
    """The features of a window of the timeline: which drifted, and every score (rounded)."""

    drifted: list[str]
    share: float
    scores: Metrics


class ShiftEvidence(Record):
    """What the kinds of shift were told from."""

    features_drifted: list[str]
    label_drifted: bool
    conditional_drifted: list[str] | None
    calibrated: bool | None
    calibration_gap: float | None
    calibration_limit: float | None
    decayed: bool | None


class ShiftRecord(Record):
    """The kinds of shift a window shows (see :class:`loopml.monitoring.Shift`)."""

    covariate: bool
    label: bool
    concept: bool
    prediction: bool
    labels_known: bool
    evidence: ShiftEvidence
    kinds: list[str]
    summary: str

    @classmethod
    def of(cls, s: Shift) -> ShiftRecord:
        return cls.model_validate(s.to_dict())


class Decay(Record):
    """The decay verdict of a window: ``value``, ``reference`` and ``limit`` are left out when
    the metric was not judged (too few labels, no reference)."""

    OMIT = frozenset({"value", "reference", "limit"})

    metric: str
    value: float | None = None
    reference: float | None = None
    drop: float | None
    limit: float | None = None
    decayed: bool | None


class WindowRecord(Record):
    """Everything measured over one window (times in ISO 8601, UTC)."""

    start: str
    end: str
    rows: int
    labelled: int
    late: int
    features: FeatureDrift
    prediction: ColumnDriftRecord | None
    label: ColumnDriftRecord | None
    conditional_drifted: list[str] | None
    performance: Realized
    estimated: Metrics
    calibration: Metrics
    decay: Decay
    ops: Metrics
    quarantine_rate: float | None
    shift: ShiftRecord

    @classmethod
    def of(cls, e: Evaluation) -> WindowRecord:
        return cls.model_validate(e.to_dict())


class SlidingSummary(Record):
    """The sliding window ending with a timeline's window, in brief."""

    drifted: list[str]
    shift: list[str]
    performance: Realized


class TimelineItem(Record):
    """One window of the timeline: the current window's measures in brief, the sliding window's
    verdicts, the performance with every label known now and, for a window judged for alerts
    by this report, the rules that fired (None: not judged by this report)."""

    OMIT = frozenset({"alerts"})

    start: str
    end: str
    rows: int
    labelled: int
    late: int
    features: FeatureScores
    prediction: ColumnDriftRecord | None
    label: ColumnDriftRecord | None
    conditional_drifted: list[str] | None
    performance: Realized
    estimated: Metrics
    calibration: Metrics
    decay: Decay
    ops: Metrics
    quarantine_rate: float | None
    shift: ShiftRecord
    sliding: SlidingSummary
    performance_final: Metrics
    alerts: list[str] | None = None

    @classmethod
    def of(
        cls, current: Evaluation, sliding: Evaluation, final: Mapping[str, float]
    ) -> TimelineItem:
        return cls.model_validate(
            {
                **current.to_dict(columns=False),
                "sliding": {
                    "drifted": sliding.features.drifted,
                    "shift": sliding.shift.kinds,
                    "performance": sliding.performance,
                },
                "performance_final": final,
            }
        )


class Distribution(Record):
    """Share of rows per bin, in the reference and in a window."""

    bins: list[str]
    reference: list[float]
    current: list[float]


class WindowMetrics(Record):
    """The flat metrics alert rules are written against, for each window kind."""

    current: Metrics
    sliding: Metrics
    cumulative: Metrics


class CurrentWindows(Record):
    """The windows ending with the latest one: current, sliding and cumulative, their flat
    metrics, and the distributions of the current window and of all windows."""

    current: WindowRecord
    sliding: WindowRecord
    cumulative: WindowRecord
    metrics: WindowMetrics
    distributions: dict[str, Distribution]
    distributions_cumulative: dict[str, Distribution]


class Period(Record):
    """The first and the last prediction reported on (ISO 8601, UTC)."""

    start: str
    end: str


class Settings(Record):
    """The windows a report used and where they come from, and the checks' settings."""

    window: str
    sliding: str
    source: str
    reason: str
    on_conflict: str
    drift: DriftSpec
    performance: PerformanceSpec

    @classmethod
    def of(cls, spec: MonitoringSpec, choice: WindowChoice) -> Settings:
        return cls(
            **choice.to_dict(),
            on_conflict=spec.on_conflict,
            drift=spec.drift,
            performance=spec.performance,
        )


class Reference(Record):
    """The version's reference profile in brief: its metrics (with their variation between the
    reference's chunks), its features and the rows each was profiled on."""

    metrics: dict[str, Any]
    features: list[str]
    rows: dict[str, int]


class LabelAccounting(Record):
    """Where every label received went (see :mod:`loopml.monitoring._join`), with the labels
    known only after their window's end (``late``) and those refused at the door. A report of
    no predictions has ``received`` and ``refused`` only."""

    OMIT = frozenset(
        {
            "matched",
            "elsewhere",
            "unknown",
            "ambiguous",
            "unreadable",
            "duplicates",
            "conflicting",
            "conflicted",
            "out_of_order",
            "labelled",
            "pending",
            "on_conflict",
            "delay_p50_s",
            "delay_p95_s",
            "late",
        }
    )

    received: int
    matched: int | None = None
    elsewhere: int | None = None
    unknown: int | None = None
    ambiguous: int | None = None
    unreadable: int | None = None
    duplicates: int | None = None
    conflicting: int | None = None
    conflicted: int | None = None
    out_of_order: int | None = None
    labelled: int | None = None
    pending: int | None = None
    on_conflict: str | None = None
    delay_p50_s: float | None = None
    delay_p95_s: float | None = None
    late: int | None = None
    refused: int


class LabelReason(Record):
    """Why some labels found no prediction: how many, what it means, a few examples."""

    count: int
    what: str
    examples: list[Any]


class FirstDetected(Record):
    """When each kind of shift, and decay, was first seen in the current window (the window's
    start; None: not seen)."""

    covariate: str | None = None
    label: str | None = None
    concept: str | None = None
    decay: str | None = None
    prediction: str | None = None

    @classmethod
    def of(cls, timeline: Iterable[TimelineItem]) -> FirstDetected:
        out = cls()
        for item in timeline:
            for kind in ("covariate", "label", "concept", "prediction"):
                if getattr(out, kind) is None and getattr(item.shift, kind):
                    setattr(out, kind, item.start)
            if out.decay is None and item.decay.decayed:
                out.decay = item.start
        return out

    def seen(self) -> dict[str, str]:
        """The kinds seen, with their first window's start."""
        return {k: v for k, v in self.model_dump().items() if v}


class MonitoringReport(Record):
    """One monitoring report of a model version: its windows judged, its labels accounted for,
    the alerts raised. A report of no predictions has ``rows`` 0, ``message`` set and the
    fields about windows None."""

    OMIT = frozenset(
        {
            "version",
            "generated_at",
            "period",
            "settings",
            "reference",
            "label_reasons",
            "current",
            "timeline",
            "first_detected",
            "alerts",
            "active_alerts",
            "message",
            "report_file",
        }
    )

    model: str
    version: int | None = None
    generated_at: str | None = None
    rows: int
    period: Period | None = None
    settings: Settings | None = None
    reference: Reference | None = None
    labels: LabelAccounting
    label_reasons: dict[str, LabelReason] | None = None
    current: CurrentWindows | None = None
    timeline: list[TimelineItem] | None = None
    first_detected: FirstDetected | None = None
    alerts: list[AlertRecord] | None = None
    active_alerts: list[AlertRecord] | None = None
    message: str | None = None
    report_file: str | None = None  # set by `loopml monitor --report`: the page written

    @classmethod
    def empty(cls, model: str, *, received: int, refused: int, message: str) -> MonitoringReport:
        """The report of a log with no prediction to judge."""
        return cls(
            model=model,
            rows=0,
            labels=LabelAccounting(received=received, refused=refused),
            message=message,
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values, as ``loopml monitor --json`` prints it."""
        return self.model_dump(mode="json")

    def fired(self) -> list[Alert]:
        """The alerts raised by this report that are firing."""
        return [a for a in self.alerts or [] if a.status == "firing"]


class LatestDrift(Record):
    """The latest window's drift scores, published to ``monitoring/<model>/latest.json`` for
    the serving app's ``/metrics`` (:class:`loopml.monitoring._prometheus.DriftCollector`)."""

    model: str
    version: int
    window_end: str
    features: Metrics
    pvalues: Metrics
    prediction: float | None
    label: float | None
    share: float
    shift: list[str]
    performance: Realized
    estimated: Metrics

    @classmethod
    def of(cls, report: MonitoringReport) -> LatestDrift | None:
        """The record of a report's current window (None without one)."""
        if report.current is None or report.version is None:
            return None
        cur = report.current.current
        columns: Sequence[ColumnDriftRecord] = cur.features.columns
        return cls(
            model=report.model,
            version=report.version,
            window_end=cur.end,
            features={c.name: c.score for c in columns},
            pvalues={c.name: c.p_adjusted for c in columns},
            prediction=cur.prediction.score if cur.prediction is not None else None,
            label=cur.label.score if cur.label is not None else None,
            share=cur.features.share,
            shift=cur.shift.kinds,
            performance=cur.performance,
            estimated=cur.estimated,
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


__all__ = [
    "ColumnDriftRecord",
    "CurrentWindows",
    "Decay",
    "Distribution",
    "FeatureDrift",
    "FeatureScores",
    "FirstDetected",
    "LabelAccounting",
    "LabelReason",
    "LatestDrift",
    "MonitoringReport",
    "Period",
    "Reference",
    "Settings",
    "ShiftEvidence",
    "ShiftRecord",
    "SlidingSummary",
    "TimelineItem",
    "WindowMetrics",
    "WindowRecord",
]
