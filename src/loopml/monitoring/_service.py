"""The monitoring side of a project (``project.monitoring``): feedback in, the log landed and
joined, windows judged, alerts raised, reports written."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from loopml.errors import LoopmlError, NotFoundError, UsageError
from loopml.features import to_micros
from loopml.monitoring._feedback import (
    FeedbackRows,
    FeedbackSchema,
    check_feedback,
    read_feedback,
)
from loopml.monitoring._join import EVENT_TIME_FEATURE
from loopml.monitoring._kept import KeptReports
from loopml.monitoring._labels import LabelDomain
from loopml.monitoring._log import Landed, MonitorLog, feedback_stream
from loopml.monitoring._monitor import (
    WINDOWS,
    WindowChoice,
    WindowedLog,
    choose_window,
    iso,
)
from loopml.monitoring._profile import Profile, fit_profile, loads_profile
from loopml.monitoring._record import PredictionRecord
from loopml.monitoring._report import (
    CurrentWindows,
    FirstDetected,
    LabelAccounting,
    MonitoringReport,
    Period,
    Reference,
    Settings,
    TimelineItem,
    WindowMetrics,
    WindowRecord,
)
from loopml.spec import MonitoringSpec
from loopml.storage import tables as t

if TYPE_CHECKING:
    from loopml.features import Features
    from loopml.monitoring._alerts import Alert, Alerts
    from loopml.registry import ModelVersion, Registry
    from loopml.spec import ProjectSpec
    from loopml.storage import EventLog, FileStore, SqlMetadataStore
    from loopml.training import Models, VerifiedVersion

PROFILE_FILE = "profile.json.gz"


class Monitoring:
    """Feedback, the monitored log, drift and performance over time, alerts and reports.

    Built by the project (``project.monitoring``) from the parts it uses: the spec, the
    metadata store (alerts, batches), the lake's files (the landed log, state, reports), the
    registry and models (profiles, versions to score with), the features (training rows for
    natural labels) and the event log (opened on first use, as the project opens it)."""

    def __init__(
        self,
        spec: ProjectSpec,
        *,
        root: Path,
        store: SqlMetadataStore,
        files: FileStore,
        registry: Registry,
        models: Models,
        features: Features,
        events: Callable[[], EventLog],
    ) -> None:
        self.project_spec = spec
        self.spec: MonitoringSpec = spec.monitoring
        self.root = root
        self.store = store
        self.files = files
        self.registry = registry
        self.models = models
        self.features = features
        self._events = events
        self._profiles: dict[int, Profile] = {}
        self._alerts: Alerts | None = None
        self._log: MonitorLog | None = None

    # ------------------------------------------------------------------------------ names

    @property
    def model(self) -> str:
        if self.project_spec.model is None:
            raise UsageError("loopml.yaml has no model section: there is nothing to monitor")
        return self.project_spec.model.name

    @property
    def log(self) -> MonitorLog:
        if self._log is None:
            self._log = MonitorLog(self.files, self.model, on_conflict=self.spec.on_conflict)
        return self._log

    def label_name(self) -> str:
        if self.spec.label:
            return self.spec.label
        model = self.project_spec.model
        if model is not None and model.label:
            return model.label
        features = self.project_spec.features
        if features is not None and features.label is not None:
            return features.label.name
        return "label"

    def join_keys(self) -> list[str]:
        if self.spec.join_keys is not None:
            return list(self.spec.join_keys)
        features = self.project_spec.features
        if features is not None and features.event is not None:
            source = self.project_spec.sources.get(features.event.source)
            if source is not None and source.primary_key:
                return list(source.primary_key)
        return []

    @property
    def alerts(self) -> Alerts:
        if self._alerts is None:
            from loopml.monitoring._alerts import Alerts

            self._alerts = Alerts(
                self.store,  # type: ignore[arg-type]  # a MetadataStore, structurally
                self.spec,
                root=self.root,
                model=self.model,
            )
        return self._alerts

    # --------------------------------------------------------------------------- feedback

    def label_domain(self) -> LabelDomain:
        """What the model's labels may be: its task and the champion's classes, else the
        latest version's (unknown before any version is registered)."""
        model = self.project_spec.model
        task = model.task if model is not None else "binary"
        if task not in ("multiclass", "binary"):
            return LabelDomain(task)
        for ref in ("champion", "latest"):
            try:
                mv = self.registry.get(self.model, ref)
            except NotFoundError:
                continue
            return LabelDomain(task, tuple(self.profile(mv).classes))
        return LabelDomain(task)

    def feedback_schema(self) -> FeedbackSchema:
        """What a feedback row of this model must hold."""
        fs = None
        if self.project_spec.features is not None:
            try:
                fs = self.features.feature_set
            except LoopmlError:  # nothing ingested yet: no event time column to read
                fs = None
        return FeedbackSchema(
            label=self.label_name(),
            join_keys=tuple(self.join_keys()),
            domain=self.label_domain(),
            event_time_column=(fs.event_time or fs.event_time_column) if fs else None,
        )

    def feedback(
        self,
        rows: Any,
        *,
        source: str = "api",
        where: Callable[[int], dict[str, int]] | None = None,
        match: bool = False,
    ) -> dict[str, Any]:
        """Check feedback rows against the format and the model's labels, and send the good ones
        to the feedback stream. Refused rows come back with their row (``where`` names them
        otherwise, e.g. by line) and the reason, and are kept under
        ``monitoring/<model>/refused/``: nothing is lost. With ``match``, the labels sent are
        joined to the log at once and ``matching`` says how many found their prediction."""
        if isinstance(rows, pa.Table):
            rows = rows.to_pylist()
        checked: FeedbackRows = check_feedback(
            rows, self.feedback_schema(), source=source, now=int(time.time() * 1_000_000)
        )
        if where is not None:
            for r in checked.rejected:
                r.update(where(r.pop("row")))
        if checked.rejected:
            self._keep_refused(checked.rejected, source)
        ids: list[str] = []
        if checked.payloads:
            events = self._events()
            for i in range(0, len(checked.payloads), 10_000):
                ids += events.append(feedback_stream(self.model), checked.payloads[i : i + 10_000])
        result: dict[str, Any] = {"accepted": len(checked.payloads), "rejected": checked.rejected}
        if match and ids:
            result["matching"] = self.matching(ids, checked.payloads)
        return result

    def feedback_file(self, path: str | Path, *, match: bool = False) -> dict[str, Any]:
        """Feedback from a CSV, JSON (an array, or JSON Lines) or Parquet file; refused rows
        name their line (or their index in a JSON array)."""
        parsed = read_feedback(Path(path))
        return self.feedback(
            parsed.rows, source=f"file:{Path(path).name}", where=parsed.where, match=match
        )

    def matching(self, ids: Sequence[str], payloads: Sequence[bytes]) -> dict[str, Any]:
        """How the labels just sent (event ``ids``, ``payloads``) join the log as it stands,
        beside the labels received before them: matched, unknown (and why), ambiguous,
        duplicates and conflicts."""
        from loopml.monitoring._join import join_labels
        from loopml.monitoring._log import _feedback_table
        from loopml.storage import Event

        self.land()
        new, _ = _feedback_table([Event(i, b) for i, b in zip(ids, payloads, strict=True)])
        before = self.log.feedback()
        if before is not None and before.num_rows:
            before = before.filter(
                pc.invert(pc.is_in(before["event_id"], value_set=new["event_id"]))
            )
            fb = pa.concat_tables(
                [before, new.select(before.column_names)], promote_options="permissive"
            )
        else:
            fb = new
        keys = self.join_keys()
        logged, keys_logged = self.log.logged(keys)
        _, stats = join_labels(
            fb,
            logged,
            logged.select(["id", "at"]),
            label_kind="number" if self.label_domain().task != "multiclass" else "text",
            on_conflict=self.spec.on_conflict,
            keys_logged=keys_logged,
            only=frozenset(ids),
        )
        out = stats.to_dict()
        for k in (
            "received",  # = sent
            "elsewhere",
            "out_of_order",
            "labelled",
            "pending",
            "delay_p50_s",
            "delay_p95_s",
        ):
            out.pop(k, None)
        out["sent"] = len(ids)
        out["predictions_logged"] = logged.num_rows
        out["reasons"] = stats.reasons
        return out

    def _keep_refused(self, rejected: list[dict[str, Any]], source: str) -> None:
        from loopml.storage import new_id

        stamp = datetime.now(UTC).isoformat()
        lines = b"".join(
            orjson.dumps({**r, "source": source, "refused_at": stamp}) + b"\n" for r in rejected
        )
        self.files.write_bytes(f"{self._root}/refused/{new_id('r')}.jsonl", lines)

    def refused(self) -> int:
        """Feedback rows refused at the door so far (kept with their reasons)."""
        folder = f"{self._root}/refused"
        files = self.files
        if not files.exists(folder):
            return 0
        return sum(files.read_bytes(f"{folder}/{name}").count(b"\n") for name in files.list(folder))

    @property
    def _root(self) -> str:
        return f"monitoring/{self.model}"

    def natural_labels(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        match: bool = False,
    ) -> dict[str, Any]:
        """Labels computed from ingested data by the label definition, sent as feedback keyed
        by the event (its keys and event time) and known at their availability time.

        Without ``since``, the labels of events from the first logged prediction's event time
        on: an earlier event has no prediction to find (labels are computed again from the lake
        at every call, so after a replay of older events, call it again). ``since`` in the
        result says where they started."""
        fs = self.project_spec.features
        if fs is None or fs.label is None:
            raise UsageError("features.label is not defined: there are no natural labels")
        keys = self.join_keys()
        if not keys:
            raise UsageError(
                "natural labels need the event's keys: set monitoring.join_keys or the event source's primary_key"
            )
        first_event: datetime | None = None
        if since is None:
            self.land()
            logged, _ = self.log.logged(keys)
            if logged.num_rows == 0:
                return {
                    "accepted": 0,
                    "rejected": [],
                    "since": None,
                    "note": "no prediction is logged: natural labels have nothing to join yet",
                }
            first = pc.min(logged["pet"]).as_py()
            first_event = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=first)
        ts = self.features.build(as_of=until)
        table = ts.table
        if since is not None:
            table = table.filter(
                pc.greater_equal(
                    table["_label_available_at"],
                    pa.scalar(since, table["_label_available_at"].type),
                )
            )
        if first_event is not None:
            table = table.filter(
                pc.greater_equal(
                    table["_event_time"], pa.scalar(first_event, table["_event_time"].type)
                )
            )
        result = self.send_labels(
            table, label=fs.label.name, keys=keys, observed="_label_available_at", match=match
        )
        start = first_event or since
        result["since"] = start.isoformat() if start is not None else None
        return result

    def send_labels(
        self,
        table: pa.Table,
        *,
        label: str,
        keys: list[str],
        observed: str | None,
        event_time: str | None = "_event_time",
        match: bool = False,
    ) -> dict[str, Any]:
        """Send labels held in a table's columns (``keys``, the event's time, ``label``, when
        they became known)."""
        cols = {k: table[k].to_pylist() for k in keys}
        labels = table[label].to_pylist()
        n = table.num_rows
        seen = table[observed].to_pylist() if observed else [None] * n
        times = (
            table[event_time].to_pylist()
            if event_time and event_time in table.column_names
            else [None] * n
        )
        rows = [
            {
                "keys": {k: cols[k][i] for k in keys},
                "event_time": times[i],
                "label": labels[i],
                "observed_at": seen[i],
            }
            for i in range(n)
            if labels[i] is not None
        ]
        if not rows:
            return {"accepted": 0, "rejected": []}
        return self.feedback(rows, source="natural", match=match)

    # ------------------------------------------------------------------------ batch records

    def record_batch(
        self,
        table: pa.Table,
        *,
        ref: str | int = "champion",
        at: str = "_event_time",
        id_prefix: str = "batch",
        chunk: int = 20_000,
    ) -> dict[str, Any]:
        """Predict a table of complete feature rows with a registered version (the batch path,
        bit-identical to the row path) and log every prediction like a served one, at the time
        in column ``at``: batch predictions are monitored the same way as online ones."""
        mv = self.registry.get(self.model, ref)
        model = self.models.load_verified(mv)
        written = 0
        for start in range(0, table.num_rows, chunk):
            part = table.slice(start, chunk)
            started = time.perf_counter()
            scores = model.predict(part)
            per_row = (time.perf_counter() - started) * 1e6 / max(part.num_rows, 1)
            ids = [f"{id_prefix}-{mv.version}-{start + i}" for i in range(part.num_rows)]
            written += self.log_scored(
                part,
                scores,
                version=mv.version,
                ids=ids,
                at=at,
                latency_us=per_row,
                features=model.encoding.features,
            )
        return {"model": self.model, "version": mv.version, "predictions": written}

    def log_scored(
        self,
        table: pa.Table,
        scores: np.ndarray,
        *,
        version: int,
        ids: list[str],
        at: str = "_event_time",
        latency_us: float = 0.0,
        features: list[str] | tuple[str, ...],
        mode: str = "batch",
        of: list[str] | None = None,
        rollout: int | None = None,
        propensity: Sequence[float] | None = None,
    ) -> int:
        """Log predictions already made (one per row of ``table``) to the prediction stream,
        each at the time in column ``at``; ``of`` names the served prediction a shadow one
        shadows; ``rollout`` and ``propensity`` mark an experiment's answers."""
        from loopml.monitoring._log import predictions_stream

        if at not in table.column_names:
            raise UsageError(f"the table has no column {at!r} holding each row's time")
        features = list(features)
        missing = [f for f in features if f not in table.column_names]
        if missing:
            raise UsageError(
                f"the table lacks the model's feature {missing[0]!r}", details={"field": missing[0]}
            )
        # the join keys and the event's time go with each prediction: labels find it by them
        extra = [*self.join_keys(), EVENT_TIME_FEATURE]
        logged = features + [k for k in extra if k in table.column_names and k not in features]
        col = table[at]
        if pa.types.is_timestamp(col.type):
            times = pc.cast(pc.cast(col, pa.timestamp("us", tz=col.type.tz)), pa.int64())
        elif pa.types.is_integer(col.type):
            times = col
        else:
            raise UsageError(f"column {at!r} holds {col.type}, not times", details={"field": at})
        if times.null_count:
            raise UsageError(
                f"column {at!r} has {times.null_count:,} empty times: each logged prediction "
                "needs one",
                details={"field": at},
            )
        cols = {f: table[f].to_pylist() for f in logged}
        when = times.to_pylist()
        payloads = []
        for i in range(table.num_rows):
            record = PredictionRecord(
                id=ids[i],
                at=int(when[i]),
                model=self.model,
                version=version,
                mode=mode,
                output=scores[i].tolist() if scores.ndim == 2 else float(scores[i]),
                latency_us=latency_us,
                features={f: _plain(cols[f][i]) for f in logged},
                of=of[i] if of is not None else None,
                rollout=rollout,
                propensity=float(propensity[i]) if propensity is not None else None,
            )
            payloads.append(record.encode())
        if payloads:
            self._events().append(predictions_stream(self.model), payloads)
        return len(payloads)

    # ----------------------------------------------------------------------------- landing

    def land(self) -> Landed:
        """Land what the prediction and feedback streams hold now."""
        return self.log.land(self._events())

    # ---------------------------------------------------------------------------- profiles

    def profile(self, version: ModelVersion) -> Profile:
        """The version's reference profile (fitted at training; for a version trained before
        profiles existed, fitted now from its stored test rows)."""
        cached = self._profiles.get(version.version)
        if cached is not None:
            return cached
        verified = self.models.verified(version)  # every file checked against its SHA-256
        if PROFILE_FILE in verified.files:
            profile = loads_profile(verified.files[PROFILE_FILE])
        else:
            profile = self._fit_from_test(verified)
        if profile.threshold is None and profile.task == "binary":
            # a profile from before thresholds were kept: read it from the files at hand
            profile.threshold = verified.model().threshold
        self._profiles[version.version] = profile
        return profile

    def _fit_from_test(self, verified: VerifiedVersion) -> Profile:
        version = verified.version
        if "test.parquet" not in verified.files:
            raise NotFoundError(
                f"{version.ref} has neither a profile nor test rows to fit one from"
            )
        model = verified.model()
        test = verified.test()
        enc = model.encoding
        profile = fit_profile(
            test,
            enc.features,
            self.spec.drift,
            categorical=list(enc.categorical),
            labels=test[model.label] if model.label in test.column_names else None,
            predictions=model.predict(test),
            task=model.task,
            classes=model.classes or (),
            reference={k: v for k, v in version.metrics.items() if isinstance(v, int | float)},
        )
        profile.threshold = model.threshold if model.task == "binary" else None
        return profile

    # ------------------------------------------------------------------------------ report

    def windows(
        self,
        *,
        version: int | str | None = None,
        window: timedelta | None = None,
        land: bool = True,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[WindowedLog, ModelVersion, dict[str, Any]] | None:
        """The joined, binned log of one version (default: the latest version in the log),
        predictions made in [since, until) only when given."""
        if land:
            self.land()
        found = self._version_log(version, since, until)
        if found is None:
            return None
        preds, mv, every = found
        profile = self.profile(mv)
        kind = "text" if profile.task == "multiclass" else "number"
        joined, label_stats = self.log.joined(preds, self.join_keys(), kind)
        # the window is chosen from the version's whole log, whatever part is reported on
        choice = choose_window(self.spec, every, window)
        wl = WindowedLog(
            joined,
            profile,
            self.spec,
            task=profile.task or "binary",
            threshold=profile.threshold,
            window=window,
            choice=choice,
            quarantine=self._quarantine(),
        )
        return wl, mv, label_stats

    def _version_log(
        self, version: int | str | None, since: datetime | None, until: datetime | None
    ) -> tuple[pa.Table, ModelVersion, np.ndarray] | None:
        """The served predictions of one version (default: the latest version in the log) made
        in [since, until), the version, and the times of all its predictions."""
        preds = self.log.predictions()
        if preds is None or preds.num_rows == 0:
            return None
        if "mode" in preds.column_names:  # shadow answers were never served: judged by rollouts
            preds = preds.filter(pc.fill_null(pc.not_equal(preds["mode"], "shadow"), True))
        part = preds
        if since is not None:
            part = part.filter(pc.greater_equal(part["at"], to_micros(since)))
        if until is not None:
            part = part.filter(pc.less(part["at"], to_micros(until)))
        if part.num_rows == 0:
            return None
        registry = self.registry
        if version is None:
            versioned = part.filter(pc.is_valid(part["version"]))
            if versioned.num_rows == 0:
                raise UsageError("the prediction log has no model version to monitor")
            latest = pc.index(versioned["at"], pc.max(versioned["at"])).as_py()
            mv = registry.get(self.model, int(versioned["version"][latest].as_py()))
        else:
            mv = registry.get(self.model, version)
        part = part.filter(pc.equal(part["version"], mv.version))
        if part.num_rows == 0:
            return None
        every = preds.filter(pc.equal(preds["version"], mv.version))["at"]
        return part, mv, every.to_numpy(zero_copy_only=False).astype(np.int64)

    def window_choice(
        self, *, version: int | str | None = None, window: timedelta | None = None
    ) -> WindowChoice | None:
        """The windows a report of ``version`` uses (None while it has no prediction)."""
        found = self._version_log(version, None, None)
        return choose_window(self.spec, found[2], window) if found is not None else None

    def report(
        self,
        *,
        version: int | str | None = None,
        window: timedelta | None = None,
        alerts: bool = True,
        land: bool = True,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> MonitoringReport:
        """Judge every window of the log, raise alerts for the windows not judged before, and
        return the report (the same numbers the HTML report draws; its JSON is
        :meth:`MonitoringReport.to_dict`)."""
        found = self.windows(version=version, window=window, land=land, since=since, until=until)
        if found is None:
            fb = self.log.feedback()
            waiting = fb.num_rows if fb is not None else 0
            return MonitoringReport.empty(
                self.model,
                received=waiting,
                refused=self.refused(),
                message="no predictions logged"
                + (" in that period" if since is not None or until is not None else " yet")
                + (f"; {waiting:,} labels received wait for them" if waiting else ""),
            )
        wl, mv, label_stats = found
        timeline: list[TimelineItem] = []
        current: CurrentWindows | None = None
        fired: list[Alert] = []
        state = self._state()
        done_until = state.get(f"alerts_until.{mv.version}", 0)
        last = wl.n_buckets - 1
        for b in range(wl.n_buckets):
            lo, hi = wl.rows_of("current", b)
            if hi == lo and b != last:
                continue
            evals = {kind: wl.evaluate(kind, b) for kind in WINDOWS}
            item = TimelineItem.of(evals["current"], evals["sliding"], self._final(wl, lo, hi))
            if alerts and self.spec.alerts and evals["current"].end > done_until and b != last:
                values = {kind: evals[kind].values() for kind in WINDOWS}
                raised = self.alerts.evaluate(
                    values,
                    at=datetime.fromtimestamp(evals["current"].end / 1e6, UTC),
                    window_start=datetime.fromtimestamp(evals["current"].start / 1e6, UTC),
                    window_end=datetime.fromtimestamp(evals["current"].end / 1e6, UTC),
                    details={"version": mv.version, "shift": evals["current"].shift.kinds},
                )
                done_until = evals["current"].end
                item.alerts = [a.rule for a in raised if a.status == "firing"]
                fired.extend(raised)
            timeline.append(item)
            if b == last:
                lo_c, hi_c = wl.rows_of("current", b)
                lo_all, hi_all = wl.rows_of("cumulative", b)
                current = CurrentWindows(
                    current=WindowRecord.of(evals["current"]),
                    sliding=WindowRecord.of(evals["sliding"]),
                    cumulative=WindowRecord.of(evals["cumulative"]),
                    metrics=WindowMetrics(
                        **{kind: _clean(evals[kind].values()) for kind in WINDOWS}
                    ),
                    distributions=wl.distributions(lo_c, hi_c),
                    distributions_cumulative=wl.distributions(lo_all, hi_all),
                )
        state[f"alerts_until.{mv.version}"] = done_until
        self._save_state(state)
        report = MonitoringReport(
            model=self.model,
            version=mv.version,
            generated_at=datetime.now(UTC).isoformat(),
            rows=len(wl.at),
            period=Period(start=iso(int(wl.at[0])), end=iso(int(wl.at[-1]))),
            settings=Settings.of(self.spec, wl.choice),
            reference=Reference(
                metrics=wl.profile.reference,
                features=wl.profile.features,
                rows={n: c.rows for n, c in wl.profile.columns.items()},
            ),
            labels=LabelAccounting(
                **{k: v for k, v in label_stats.items() if k != "reasons"},
                late=wl.late_labels(),
                refused=self.refused(),
            ),
            label_reasons=label_stats.get("reasons", {}),
            current=current,
            timeline=timeline,
            first_detected=FirstDetected.of(timeline),
            alerts=fired,
            active_alerts=self.alerts.active() if self.spec.alerts else [],
        )
        self._publish(report)
        return report

    def _final(self, wl: WindowedLog, lo: int, hi: int) -> dict[str, float]:
        """Realized performance of a bucket with every label known by now."""
        from loopml.monitoring._performance import realized

        rows = np.flatnonzero(wl.has_label[lo:hi]) + lo
        if not len(rows):
            return {}
        out = realized(
            wl.task,
            wl._y(rows),
            wl._scores(rows),
            threshold=wl.threshold,
            classes=wl.profile.classes or None,
        )
        return {
            k: v
            for k, v in out.items()
            if k
            in (
                "roc_auc",
                "pr_auc",
                "log_loss",
                "brier",
                "f1",
                "accuracy",
                "macro_f1",
                "rmse",
                "mae",
                "positive_rate",
                "n",
            )
        }

    def _quarantine(self) -> list[tuple[int, int, int]]:
        with self.store.read() as conn:
            rows = conn.execute(
                select(
                    t.batches.c.committed_at, t.batches.c.rows_read, t.batches.c.rows_quarantined
                ).where(t.batches.c.status == "committed")
            ).all()
        return [
            (int(r[0].timestamp() * 1_000_000), int(r[1] or 0), int(r[2] or 0))
            for r in rows
            if r[0] is not None
        ]

    # ------------------------------------------------------------------------------- state

    def _state_path(self) -> str:
        return f"monitoring/{self.model}/state.json"

    def _state(self) -> dict[str, Any]:
        files = self.files
        rel = self._state_path()
        return dict(orjson.loads(files.read_bytes(rel))) if files.exists(rel) else {}

    def _save_state(self, state: dict[str, Any]) -> None:
        self.files.write_bytes(self._state_path(), orjson.dumps(state))

    def _publish(self, report: MonitoringReport) -> None:
        """The latest drift scores (read by the serving app's /metrics), the report and the
        windows it judged (read by the dashboard): :class:`KeptReports`."""
        KeptReports(self.files, report.model).publish(report)

    def last_report(self) -> MonitoringReport | None:
        """The latest report that judged predictions (by ``loopml monitor`` or the loop), as
        ``loopml monitor --json`` printed it; None before any."""
        return KeptReports(self.files, self.model).last()

    def judged_windows(
        self, since: datetime, until: datetime, *, version: int | None = None
    ) -> list[tuple[int | None, TimelineItem]]:
        """The windows inside ``[since, until]`` as the latest report that judged each found
        them (of ``version`` when given), with their version, in time order."""
        return KeptReports(self.files, self.model).windows(since, until, version=version)


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return to_micros(v)
    return v


def _clean(values: dict[str, float | None]) -> dict[str, float | None]:
    return {k: (float(v) if v is not None and np.isfinite(v) else None) for k, v in values.items()}


__all__ = ["Monitoring"]
