"""The features side of a project: the feature set, training sets, materialization, online
vectors and the stream consumer, behind one object (``project.features``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select, update

from loopml.data import Data, IngestResult, OnlineRefresh, default_user
from loopml.data import catalog as cat
from loopml.errors import SpecError, UsageError
from loopml.features._definitions import FeatureSet, build_feature_set
from loopml.features._offline import TrainingSet, build
from loopml.features._online import MARK_LOOKUP, OnlineFeatures
from loopml.features._stream import StreamConsumer, publish, table_rows
from loopml.spec import ProjectSpec
from loopml.storage import EventLog, OnlineStore
from loopml.storage import tables as t

# In the metadata store: the snapshot the online store was last materialized to. Once there is
# one, every landed batch is applied to the online store as it lands.
MATERIALIZED = "online.materialized"


class Features:
    """Feature definitions of a project, used offline and online."""

    def __init__(
        self,
        spec: ProjectSpec,
        data: Data,
        online_store: Callable[[], OnlineStore],
        event_log: Callable[[], EventLog],
    ) -> None:
        self.spec = spec
        self.data = data
        self._online_store = online_store
        self._event_log = event_log
        self._fs: FeatureSet | None = None
        self._online: OnlineFeatures | None = None

    @property
    def feature_set(self) -> FeatureSet:
        """The definitions, resolved against the sources' schemas with loopml.yaml's
        declarations laid over them (or the declared types alone before any data); checked
        once."""
        if self._fs is None:
            self._fs = build_feature_set(self.spec, self.data.schemas())
        return self._fs

    @property
    def online(self) -> OnlineFeatures:
        if self._online is None:
            self._online = OnlineFeatures(self.feature_set, self._online_store())
        return self._online

    # ----------------------------------------------------------------------------- offline

    def build(
        self,
        *,
        snapshot: str | None = None,
        as_of: datetime | None = None,
        out: str | Path | None = None,
        labelled_only: bool = True,
        sample: Callable[[pa.Table], pa.Table] | None = None,
    ) -> TrainingSet:
        """A point-in-time correct training set. Without ``snapshot``, one is taken now (so the
        set can be rebuilt); with ``out``, it is also written as Parquet with its lineage."""
        fs = self.feature_set
        if snapshot is None:
            snapshot = self.data.snapshot(note="features build", by=default_user()).id
        self._require_rows(snapshot, [fs.event_source])
        with self.data.lake.connect(snapshot) as con:
            ts = build(con, fs, snapshot=snapshot, as_of=as_of, labelled_only=labelled_only)
        if sample is not None:
            ts.table = sample(ts.table)
        if out is not None:
            pq.write_table(ts.with_metadata(), out)
        return ts

    def _require_rows(self, snapshot: str | None, sources: list[str]) -> None:
        """Every source the features read must have rows in the lake (or the snapshot)."""
        fs = self.feature_set
        needed = list(sources) + [lk.source for lk in fs.lookups.values()]
        needed += [w.source for w in fs.windows.values()]
        present = {b.source for b in self.data.lake.batches(snapshot)}
        missing = [s for s in dict.fromkeys(needed) if s not in present]
        if missing:
            where = f"snapshot {snapshot}" if snapshot else "the lake"
            raise UsageError(
                f"{where} holds no rows of source {missing[0]!r}, which the features read: "
                f"ingest a file into it first (`loopml ingest {missing[0]} FILE`)",
                details={"sources": missing, "snapshot": snapshot},
            )

    def build_for(self, events: pa.Table, *, snapshot: str | None = None) -> pa.Table:
        """The features of given events (rows with the request features), computed offline with
        the same definitions: for batch prediction and precomputation."""
        self._require_rows(snapshot, [])
        with self.data.lake.connect(snapshot) as con:
            return build(con, self.feature_set, snapshot=snapshot, events=events).table

    # ------------------------------------------------------------------------------ online

    def materialize(self, *, snapshot: str | None = None) -> dict[str, Any]:
        """Bring the online store up to a snapshot (taken now when not given), incrementally:
        lookups read only the batches added since the snapshot they were last brought to, and
        each batch is folded into window tiles once."""
        fs = self.feature_set
        online = self.online
        if snapshot is None:
            snapshot = self.data.snapshot(note="materialize", by=default_user()).id
        counts: dict[str, Any] = {"lookups": {}, "tiles": {}, "snapshot": snapshot}
        batches = self.data.lake.batches(snapshot)
        with self.data.lake.connect(snapshot) as con:
            for w in fs.windows.values():
                n = 0
                for b in batches:
                    if b.source != w.source or not b.lake_path:
                        continue
                    rows = self.data.lake.read_parquet(b.lake_path).select(w.source_columns())
                    n += online.materialize_tiles(con, w, b.id, rows)
                counts["tiles"][w.name] = n
        current = {b.id for b in batches}
        for lk in fs.lookups.values():
            mark = MARK_LOOKUP.format(name=lk.name)
            previous = online.store.get_mark(mark)
            done: set[str] = set()
            if previous is not None:
                with self.data.store.read() as conn:
                    done = set(cat.get_snapshot(conn, previous).batch_ids)
            new = {b.id for b in batches if b.source == lk.source and b.id not in done}
            n = 0
            if new:
                with self.data.lake.connect(snapshot, only=new) as con:
                    n = online.materialize_lookup(con, lk)
            # The mark moves only after the values are written: a crash repeats the upserts.
            online.store.merge_tiles(lk.table, [], _keep, mark=(mark, snapshot))
            counts["lookups"][lk.name] = n
        del current
        self._set_materialized(snapshot)
        return counts

    def refresh_online(self, landed: IngestResult) -> OnlineRefresh | None:
        """Apply a landed batch to the online store, if it has been materialized (before that,
        say so: serving would answer lookups and windows from an empty store). None when no
        feature reads the online store."""
        if self.spec.features is None:
            return None
        f = self.spec.features
        readers = {lk.source for lk in f.lookups.values()} | {w.source for w in f.windows.values()}
        if landed.source not in readers:
            return None  # no feature reads this source from the online store
        if self._materialized() is None:
            return OnlineRefresh(
                "not_materialized",
                message="the online store has never been materialized: lookups and windows "
                "are served empty until `loopml features materialize` (after which every "
                "landed batch keeps it current)",
            )
        if landed.batch_id is None or not landed.rows_accepted:
            return OnlineRefresh("refreshed")
        with self.data.store.read() as conn:
            rec = cat.get_batch(conn, landed.batch_id)
        if rec.lake_path is None:
            return OnlineRefresh("refreshed")
        try:
            resolved = self._resolved()
            if resolved is None:
                return OnlineRefresh(
                    "failed",
                    message="a source of the features has no schema yet; "
                    "run `loopml features materialize` once it has data",
                )
            _, online = resolved
            rows = self.data.lake.read_parquet(rec.lake_path)
            tiles, lookups = online.apply_batch(rec.source, rec.id, rows)
        except Exception as exc:  # noqa: BLE001 - the batch landed; say what did not follow
            return OnlineRefresh(
                "failed",
                message=f"the online store was not brought up to date ({exc}); "
                "`loopml features materialize` catches it up",
            )
        return OnlineRefresh("refreshed", tiles=tiles, lookups=lookups)

    def _materialized(self) -> str | None:
        with self.data.store.read() as conn:
            return conn.execute(select(t.meta.c.value).where(t.meta.c.key == MATERIALIZED)).scalar()

    def _set_materialized(self, snapshot: str) -> None:
        with self.data.store.write() as conn:
            done = conn.execute(
                update(t.meta).where(t.meta.c.key == MATERIALIZED).values(value=snapshot)
            )
            if done.rowcount == 0:
                conn.execute(t.meta.insert().values(key=MATERIALIZED, value=snapshot))

    def forget_source(self, source: str) -> list[str]:
        """Delete the online values computed from ``source`` (after ``loopml data reset``): the
        latest lookup values and the window tiles read from it. Returns the lookups and windows
        cleared; the next materialization rebuilds them from the lake."""
        fs = self.spec.features
        if fs is None:
            return []
        tables = {f"lookup:{n}": n for n, lk in fs.lookups.items() if lk.source == source}
        tables |= {f"tiles:{n}": n for n, w in fs.windows.items() if w.source == source}
        if not tables:
            return []
        store = self._online_store()
        for table in tables:
            store.drop_table(table)
        self._online = None
        return sorted(tables.values())

    def vector(self, request: dict[str, Any], *, at: Any = None) -> dict[str, Any]:
        """Every feature of one request, computed online."""
        return self.online.vector(request, at=at)

    # ------------------------------------------------------------------------------ events

    def publish(self, source: str, rows: pa.Table | Iterable[dict[str, Any]]) -> int:
        """Send rows to a source's stream (what ``POST /events`` will do)."""
        self.data.source_spec(source)
        items = table_rows(rows) if isinstance(rows, pa.Table) else rows
        return publish(self._event_log(), source, items)

    def consumer(self, source: str, **kwargs: Any) -> StreamConsumer:
        """A consumer landing the source's stream and updating the online store."""
        self.data.source_spec(source)
        return StreamConsumer(
            self.data, self._event_log(), source, features=self._resolved, **kwargs
        )

    def _resolved(self) -> tuple[FeatureSet, OnlineFeatures] | None:
        """The feature set and online path, or None while some source has no schema yet."""
        if self.spec.features is None:
            return None
        try:
            return self.feature_set, self.online
        except SpecError as exc:
            if "has no schema" in exc.message:
                return None
            raise


def sampler(text: str, *, seed: int = 0) -> Callable[[pa.Table], pa.Table]:
    """A training-set sampler from ``random:FRAC``, ``stratified:COLUMN:FRAC`` or
    ``reservoir:N`` (the CLI's --sample)."""
    from loopml import sampling

    kind, _, rest = text.partition(":")
    try:
        if kind == "random":
            frac = float(rest)
            return lambda t: t.take(sampling.simple_random(t.num_rows, frac=frac, seed=seed))
        if kind == "stratified":
            column, _, frac_text = rest.rpartition(":")
            frac = float(frac_text)
            return lambda t: t.take(sampling.stratified(t[column], frac=frac, seed=seed))
        if kind == "reservoir":
            k = int(rest)

            def reservoir(t: pa.Table) -> pa.Table:
                r = sampling.Reservoir(k=k, seed=seed)
                r.update_many(range(t.num_rows))
                return t.take(sorted(r.sample_))

            return reservoir
    except ValueError:
        pass
    raise UsageError(
        f"--sample {text!r}: write random:FRAC, stratified:COLUMN:FRAC or reservoir:N",
        details={"option": "sample"},
    )


def _keep(stored: bytes | None, new: bytes) -> bytes:
    return new


def require_features(spec: ProjectSpec) -> None:
    if spec.features is None:
        raise UsageError("loopml.yaml declares no features (add a features: section)")
