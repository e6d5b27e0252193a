"""Static, dynamic or hybrid serving, chosen from measurements (Designing ML Systems, ch. 7).

Static serving precomputes a prediction per key and looks it up; dynamic serving computes each
prediction on demand; hybrid precomputes the popular head of the request distribution and
computes the tail. Which one fits depends on how peaked the requests are over the keys and on how
many keys there are. :func:`advise` measures both on the project itself:

- the requests: a table of request rows, or the prediction log. The log is read through the
  consumer group ``loopml-advisor``; what it reads is acknowledged and kept (request fields only,
  the newest million, in the artifacts store under ``advisor/<model>/requests.parquet``), so that
  every run sees all the traffic logged so far, not only what arrived since the previous run;
- peakedness: the share of requests covered by the top 1/10/100/1000 keys, the Gini coefficient
  of the key frequencies, and the keys needed to cover 50/90/99 % of requests;
- the universe a static table must cover: the distinct keys among the event source's rows in the
  lake (request features and the derived features computed from them, as precomputation computes
  them; a key with a null part belongs to no entity), and the share of requests it covers;
- storage: a real precomputation into the online store (the whole universe up to
  :data:`FULL_PRECOMPUTE` keys, else a sample of it), bytes and seconds per key extrapolated to
  the universe (bytes as precomputation counts them: key, value and timestamp);
- compute and latency, in process, on the same sample of requests, with the serving spec's
  caches: dynamic (the runtime's engine), hybrid (the head precomputed, the rest computed) and
  static (every sampled key precomputed).
  The static and hybrid measurements read a table of their own (``pred:advisor.<model>:<version>``,
  written by the same precomputation and dropped afterwards): the served table is left as it
  was, and earlier precomputations cannot inflate the hybrid hit rate;
- a recommendation, by :class:`Rule` (documented there), with the numbers behind it.
"""

from __future__ import annotations

import io
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loopml.data import fetch_arrow
from loopml.errors import UsageError
from loopml.features import (
    NEWER_THAN_EVENT,
    OLDER_THAN_TTL,
    Features,
    FeatureSet,
    OnlineFeatures,
    arrow_type,
    encode_key,
    request_events,
)
from loopml.monitoring import PredictionRecord, predictions_stream
from loopml.serving._advice import (
    SHARES,
    TOPS,
    Advice,
    Compute,
    Divergence,
    Hybrid,
    ModeLatency,
    Peakedness,
    Recommendation,
    Rule,
    Storage,
    Universe,
    divergence,
    gini,
    keys_covering,
    peakedness,
    recommend,
)
from loopml.serving._engine import Engine, static_table
from loopml.serving._holder import Served
from loopml.serving._parts import HoldsServingParts, ServingParts, serving_parts
from loopml.serving._precompute import precompute
from loopml.spec import FallbackSpec, LogSpec, StaticSpec

if TYPE_CHECKING:
    from loopml.storage import Event
    from loopml.training import Model

log = logging.getLogger("loopml.serving")

__all__ = [
    "SHARES",
    "TOPS",
    "Advice",
    "Compute",
    "Divergence",
    "Hybrid",
    "ModeLatency",
    "Peakedness",
    "Recommendation",
    "Rule",
    "Storage",
    "Universe",
    "advise",
    "divergence",
    "gini",
    "keys_covering",
    "lake_keys",
    "peakedness",
    "read_log",
    "recommend",
    "top_keys",
]

GROUP = "loopml-advisor"
CONSUMER = "advisor"
FULL_PRECOMPUTE = 20_000  # a universe this small is precomputed whole; a larger one is sampled
UNIVERSE_SAMPLE = 5_000
KEPT_REQUESTS = 1_000_000
RECENT = timedelta(days=28)  # `loopml precompute`'s default window
_WARMUP = 50
_READ = 50_000


# ------------------------------------------------------------------------------- requests


def _check_key(fs: FeatureSet, key: Sequence[str]) -> None:
    stage1 = {name for name, _ in fs.stage1}
    bad = [k for k in key if k not in fs.request and k not in stage1]
    if bad or not key:
        raise UsageError(
            f"key {', '.join(bad) or '(empty)'}: a key is made of request features or of derived "
            f"features computed from them alone (request: {', '.join(fs.request)})",
            details={"key": list(key)},
        )


def _parse(online: OnlineFeatures, table: pa.Table) -> list[dict[str, Any]]:
    """Request rows typed, with the derived features computed from them alone."""
    request = list(online.fs.request)
    missing = [c for c in request if c not in table.column_names]
    if missing:
        raise UsageError(
            f"the requests have no column {missing[0]!r} (request fields: {', '.join(request)})",
            details={"field": missing[0]},
        )
    extra = ["_at"] if "_at" in table.column_names else []
    out = []
    for i, raw in enumerate(table.select(request + extra).to_pylist()):
        try:
            row = online.request_row(raw)
        except UsageError as exc:
            raise UsageError(
                f"requests row {i}: {exc.message}", details={**exc.details, "row": i}
            ) from None
        row["_at"] = raw.get("_at")
        out.append(row)
    return out


_COERCE: dict[str, Any] = {"int": int, "float": float, "bool": bool, "string": str}


def _log_table(fs: FeatureSet, entries: list[PredictionRecord]) -> pa.Table:
    cols: dict[str, pa.Array] = {}
    for name in fs.request:
        kind = fs.features[name].type
        cast_to = _COERCE.get(kind, lambda v: v)
        values = [e.features.get(name) for e in entries]
        values = [None if v is None else cast_to(v) for v in values]
        cols[name] = pa.array(values, type=arrow_type(kind))
    cols["_at"] = pa.array([e.at for e in entries], type=pa.int64())
    cols["_pid"] = pa.array([e.id for e in entries], type=pa.string())
    return pa.table(cols)


def _records(events: Sequence[Event]) -> list[PredictionRecord]:
    """The entries that are predictions; the rest are skipped here (the monitor keeps them,
    with the reason, among its rejected payloads)."""
    out = []
    for e in events:
        try:
            out.append(PredictionRecord.decode(e.payload))
        except ValueError as exc:
            log.warning("skipped prediction log entry %s: %s", e.id, exc)
    return out


def _aligned(table: pa.Table, schema: pa.Schema) -> pa.Table:
    cols = [
        table[f.name].cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, schema=schema)


def read_log(
    project: ServingParts | HoldsServingParts, *, keep: int = KEPT_REQUESTS
) -> tuple[pa.Table, int]:
    """The requests of the prediction log: new entries are read through the consumer group
    ``loopml-advisor``, folded into the kept requests (the newest ``keep``; an entry delivered
    twice is kept once) and acknowledged once kept. Returns the kept requests and how many
    entries were new."""
    project = serving_parts(project)
    fs = project.features.feature_set
    model = project.models.name
    files = project.artifact_files
    path = f"advisor/{model}/requests.parquet"
    kept = pq.read_table(io.BytesIO(files.read_bytes(path))) if files.exists(path) else None
    stream = predictions_stream(model)
    new = 0
    while True:
        events = project.events.read(stream, GROUP, CONSUMER, count=_READ)
        if not events:
            break
        fresh = _log_table(fs, _records(events))
        if kept is not None:
            fresh = _aligned(fresh, kept.schema) if kept.schema != fresh.schema else fresh
            seen = pc.is_in(fresh["_pid"], value_set=kept["_pid"].combine_chunks())
            fresh = fresh.filter(pc.invert(seen))
            kept = _aligned(kept, fresh.schema)
        kept = fresh if kept is None else pa.concat_tables([kept, fresh])
        if kept.num_rows > keep:
            kept = kept.slice(kept.num_rows - keep)
        sink = io.BytesIO()
        pq.write_table(kept, sink)
        files.write_bytes(path, sink.getvalue())
        project.events.ack(stream, GROUP, [e.id for e in events])
        new += fresh.num_rows
    if kept is None:
        kept = _log_table(fs, [])
    return kept, new


# --------------------------------------------------------------------------------- the lake


def lake_keys(features: Features, key: Sequence[str]) -> pa.Table:
    """Every key among the event source's rows in the lake, with its events (``_n``) and its
    latest event time (``_latest``), most frequent first. Keys are computed as precomputation
    computes them: request columns, the derived features computed from them, no null part."""
    fs = features.feature_set
    _check_key(fs, key)
    parts = ", ".join(f'"{k}"' for k in key)
    not_null = " AND ".join(f'"{k}" IS NOT NULL' for k in key)
    with features.data.lake.connect() as con:
        events = request_events(con, fs)
        con.register("_events", events.select([*key, "_event_time"]))
        return fetch_arrow(
            con.sql(
                f"SELECT {parts}, count(*) AS _n, max(_event_time) AS _latest FROM _events "
                f"WHERE {not_null} GROUP BY {parts} ORDER BY _n DESC, {parts}"
            )
        )


def _key_dicts(table: pa.Table, key: Sequence[str]) -> dict[str, dict[str, Any]]:
    columns = [table[k].to_pylist() for k in key]
    out: dict[str, dict[str, Any]] = {}
    for values in zip(*columns, strict=True):
        code = encode_key(values)
        if code is not None:
            out[code] = dict(zip(key, values, strict=True))
    return out


def top_keys(
    project: ServingParts | HoldsServingParts, key: Sequence[str], n: int
) -> list[dict[str, Any]]:
    """The ``n`` most requested keys, as ``{feature: value}``: from the prediction log (through
    :func:`read_log`), or, when nothing has been logged, from the lake's event source (the keys
    with the most events)."""
    if n < 1:
        raise UsageError(f"head must be at least 1, got {n}", details={"head": n})
    project = serving_parts(project)
    features = project.features
    _check_key(features.feature_set, key)
    kept, _ = read_log(project)
    if kept.num_rows:
        counts: Counter[str] = Counter()
        values: dict[str, dict[str, Any]] = {}
        for row in _parse(features.online, kept):
            parts = [row[k] for k in key]
            code = encode_key(parts)
            if code is not None:
                counts[code] += 1
                values.setdefault(code, dict(zip(key, parts, strict=True)))
        return [values[code] for code, _ in counts.most_common(n)]
    return list(_key_dicts(lake_keys(features, key).slice(0, n), key).values())


# ---------------------------------------------------------------------------- measurements


@dataclass
class _Run:
    latency_us: np.ndarray
    modes: list[str]
    outputs: list[Any]
    cpu_seconds: float
    flags: Counter[str]  # answers flagged, by flag


def _measure(engine: Engine, served: Served, rows: list[dict[str, Any]]) -> _Run:
    """Answer each row alone (as a request would be), timed by the engine."""
    for row in rows[:_WARMUP]:
        engine.answer([dict(row)], served)
    copies = [dict(r) for r in rows]  # answering adds the computed features to the row
    latency = np.empty(len(copies))
    modes, outputs = [], []
    flags: Counter[str] = Counter()
    cpu = time.process_time()
    for i, row in enumerate(copies):
        pred = engine.answer([row], served)[0]
        latency[i] = pred.latency_us
        modes.append(pred.mode)
        outputs.append(pred.output)
        if pred.flags:
            flags.update({kind for kinds in pred.flags.values() for kind in kinds})
    return _Run(latency, modes, outputs, time.process_time() - cpu, flags)


def _mode_latency(mode: str, run: _Run) -> ModeLatency:
    n = len(run.modes)
    lat = run.latency_us if n else np.zeros(1)
    return ModeLatency(
        mode=mode,
        requests=n,
        median_us=round(float(np.percentile(lat, 50)), 2),
        p99_us=round(float(np.percentile(lat, 99)), 2),
        mean_us=round(float(lat.mean()), 2),
        static_share=sum(m == "static" for m in run.modes) / n if n else 0.0,
        fallbacks=sum(m == "fallback" for m in run.modes),
    )


def _divergence(table: _Run, dynamic: _Run, model: Model) -> Divergence | None:
    """The answers ``table`` gave from the precomputed table against the dynamic run's."""
    pairs = [
        (s, d)
        for m, dm, s, d in zip(
            table.modes, dynamic.modes, table.outputs, dynamic.outputs, strict=True
        )
        if m == "static" and dm == "dynamic" and s is not None and d is not None
    ]
    return divergence(
        [s for s, _ in pairs],
        [d for _, d in pairs],
        task=model.task,
        threshold=model.threshold if model.task == "binary" else None,
    )


def _requests(project: ServingParts, requests: pa.Table | None) -> tuple[pa.Table, str]:
    if requests is not None:
        return requests, "a table of request rows"
    stream = predictions_stream(project.models.name)
    table, new = read_log(project)
    if table.num_rows == 0:
        raise UsageError(
            f"the prediction log {stream} is empty: serve some predictions first, or pass a "
            "table of request rows (--requests FILE)"
        )
    return table, f"the prediction log {stream} ({new:,} new entries read, {table.num_rows:,} kept)"


def _hybrid_head(pre_counts: np.ndarray, total: int, head: int | None, cap: int) -> tuple[int, str]:
    """The head precomputed for the hybrid measurement, and how it was chosen."""
    if head is not None:
        if head < 1:
            raise UsageError(f"head must be at least 1, got {head}", details={"head": head})
        return min(head, len(pre_counts)), f"given: {head:,}"
    need = keys_covering(pre_counts, 0.9, total)
    if need is None:
        covered = int(pre_counts.sum()) / total if total else 0.0
        return min(len(pre_counts), cap), (
            f"every requested key the lake has seen ({len(pre_counts):,}: they cover {covered:.1%}), "
            f"at most {cap:,}"
        )
    return min(need, cap), f"the fewest keys covering 90% of requests ({need:,}), at most {cap:,}"


# ------------------------------------------------------------------------------------ advise


def advise(
    project: ServingParts | HoldsServingParts,
    requests: pa.Table | None = None,
    *,
    key: Sequence[str] | None = None,
    sample: int = 2000,
    head: int | None = None,
    rule: Rule | None = None,
    seed: int = 0,
) -> Advice:
    """Measure static, dynamic and hybrid serving on ``requests`` (rows with the request fields;
    default: the prediction log) and recommend one. See the module docstring for what is measured
    and :class:`Rule` for the recommendation."""
    from loopml.serving._runtime import Runtime

    started = time.perf_counter()
    project = serving_parts(project)
    spec = project.spec.serving
    if project.spec.features is None:
        raise UsageError(
            "advise-serving needs features in loopml.yaml: keys and requests are made of them"
        )
    key = list(key) if key else list(spec.static.key)
    if not key:
        raise UsageError(
            "no key: set serving.static.key in loopml.yaml or pass key (e.g. --key store,product)"
        )
    if sample < 1:
        raise UsageError(f"sample must be at least 1, got {sample}", details={"sample": sample})
    features = project.features
    fs = features.feature_set
    _check_key(fs, key)
    rule = rule or Rule(max_head=spec.hybrid.head)
    model = project.models.name
    table, source = _requests(project, requests)
    rows = _parse(features.online, table)
    if not rows:
        raise UsageError("there are no requests to advise on")
    codes = [encode_key([r[k] for k in key]) for r in rows]
    order = Counter(c for c in codes if c is not None).most_common()
    peak = peakedness(np.array([n for _, n in order], dtype=np.int64), requests=len(rows))

    # The universe, and what of the requests it covers.
    lake = lake_keys(features, key)
    universe = _key_dicts(lake, key)
    latest = pc.cast(lake["_latest"].cast(pa.timestamp("us", tz="UTC")), pa.int64()).to_numpy()
    window_us = int(RECENT.total_seconds() * 1_000_000)
    recent = int((latest >= latest.max() - window_us).sum()) if len(latest) else 0
    precomputable = [(c, n) for c, n in order if c in universe]
    coverage = sum(n for _, n in precomputable) / len(rows)
    pre_counts = np.array([n for _, n in precomputable], dtype=np.int64)
    head_needed = keys_covering(pre_counts, rule.min_head_share, len(rows))
    hybrid_head, chosen = _hybrid_head(pre_counts, len(rows), head, rule.max_head)
    head_codes = [c for c, _ in precomputable[:hybrid_head]]
    head_share = sum(n for _, n in precomputable[:hybrid_head]) / len(rows)

    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(rows), size=min(sample, len(rows)), replace=False))
    sample_rows = [rows[i] for i in picked]
    sample_codes = [codes[i] for i in picked]
    head_set = set(head_codes)
    head_share_of_sample = sum(c in head_set for c in sample_codes) / len(sample_rows)

    measuring = spec.model_copy(
        update={
            "mode": "dynamic",
            "static": StaticSpec(key=key),
            "consistency": None,
            "latency_budget": None,
            "fallback": FallbackSpec(),
            "log": LogSpec(enabled=False),
        }
    )
    rt = Runtime(project, spec=measuring)
    rt.holder.check()
    served = rt.holder.current
    if served is None:
        raise UsageError(f"no version of {model} holds {spec.alias!r}: promote one first")

    # The static and hybrid engines read a table of their own, written by precompute() under
    # another name: the served table is left as it was, and the hybrid measurement sees only the
    # head even when an earlier precomputation wrote more keys.
    probe_name = f"advisor.{model}"
    engines = {
        mode: Engine(
            name=probe_name,
            spec=measuring.model_copy(update={"mode": mode}),
            holder=rt.holder,
            features=fs,
            online=rt.online,
            store=project.online,
        )
        for mode in ("hybrid", "static")
    }
    wanted = set(head_codes) | {c for c in sample_codes if c is not None and c in universe}
    extrapolated = len(universe) > FULL_PRECOMPUTE
    keys_arg = None
    if extrapolated:  # every key the measurements need, and a random sample of the others
        pool = [c for c in universe if c not in wanted]
        extra = rng.choice(len(pool), size=min(UNIVERSE_SAMPLE, len(pool)), replace=False)
        keys_arg = [universe[c] for c in sorted(wanted)] + [universe[pool[i]] for i in extra]
    probe = static_table(probe_name, served.number)
    project.online.drop_table(probe)
    try:
        dynamic = _measure(rt.engine, served, sample_rows)
        if head_codes:
            precompute(
                project.models, features, project.online, key, ref=served.number, window=None,
                keys=[universe[c] for c in head_codes], name=probe_name,
            )  # fmt: skip
        hybrid_run = _measure(engines["hybrid"], served, sample_rows)
        summary = precompute(
            project.models, features, project.online, key, ref=served.number, window=None,
            keys=keys_arg, name=probe_name,
        )  # fmt: skip
        static_run = _measure(engines["static"], served, sample_rows)
    finally:
        project.online.drop_table(probe)
    per_key = summary["bytes"] / summary["keys"] if summary["keys"] else 0.0
    seconds_per_key = summary["seconds"] / summary["keys"] if summary["keys"] else 0.0
    storage = Storage(
        keys_precomputed=summary["keys"],
        bytes_precomputed=summary["bytes"],
        seconds=summary["seconds"],
        bytes_per_key=round(per_key, 1),
        universe_bytes=round(per_key * len(universe)),
        universe_seconds=(
            round(seconds_per_key * len(universe), 3) if extrapolated else summary["seconds"]
        ),
        extrapolated=extrapolated,
    )

    latency = {
        "dynamic": _mode_latency("dynamic", dynamic),
        "static": _mode_latency("static", static_run),
        "hybrid": _mode_latency("hybrid", hybrid_run),
    }
    compute = Compute(
        sample=len(sample_rows),
        median_us=latency["dynamic"].median_us,
        p99_us=latency["dynamic"].p99_us,
        cpu_seconds_per_1000=round(dynamic.cpu_seconds / len(sample_rows) * 1000, 4),
    )
    universe_rec = Universe(
        keys=len(universe),
        recent_keys=recent,
        coverage=coverage,
        counted=(
            f"distinct ({', '.join(key)}) over all {int(pc.sum(lake['_n']).as_py() or 0):,} rows of "
            f"{fs.event_source} in the lake with no null part, the key computed from the request "
            "columns and their derived features as precomputation computes it"
        ),
    )
    static_vs = _divergence(static_run, dynamic, served.model)
    hybrid_vs = _divergence(hybrid_run, dynamic, served.model)
    advice_rec = recommend(
        coverage=coverage,
        universe_bytes=storage.universe_bytes,
        universe_seconds=storage.universe_seconds,
        head_needed=head_needed,
        static_median_us=latency["static"].median_us,
        dynamic_median_us=latency["dynamic"].median_us,
        static_divergence=static_vs,
        hybrid_divergence=hybrid_vs,
        rule=rule,
    )
    _notes(advice_rec, key=key, fs=fs, universe=universe_rec, static_vs=static_vs, dynamic=dynamic)
    return Advice(
        model=model,
        version=served.number,
        key=key,
        source=source,
        requests=len(rows),
        peakedness=peak,
        universe=universe_rec,
        storage=storage,
        compute=compute,
        latency=latency,
        static_coverage=latency["static"].static_share,
        divergence=static_vs.mean_abs if static_vs is not None else None,
        static_vs_dynamic=static_vs,
        hybrid_vs_dynamic=hybrid_vs,
        dynamic_flags=dict(sorted(dynamic.flags.items())),
        hybrid=Hybrid(
            head=hybrid_head,
            chosen_by=chosen,
            head_needed=head_needed,
            head_share=head_share,
            head_share_of_sample=head_share_of_sample,
            hit_rate=latency["hybrid"].static_share,
        ),
        recommendation=advice_rec,
        feature_cache_s=measuring.feature_cache.total_seconds(),
        seconds=round(time.perf_counter() - started, 2),
    )


def _notes(
    rec: Recommendation,
    *,
    key: list[str],
    fs: FeatureSet,
    universe: Universe,
    static_vs: Divergence | None,
    dynamic: _Run,
) -> None:
    """What a reader of the recommendation should know besides the rule's figures."""
    if static_vs is not None and static_vs.mean_abs > 0:
        others = Counter(fs.features[f].kind for f in fs.vector if f not in key)
        rec.notes.append(
            "why static answers differ: a precomputed prediction is made for the key's latest "
            "event, so the model's other inputs ("
            + ", ".join(f"{n} {kind}" for kind, n in sorted(others.items()))
            + ") take that event's values, not this request's"
        )
    as_of = {k: n for k, n in dynamic.flags.items() if k in (NEWER_THAN_EVENT, OLDER_THAN_TTL)}
    if as_of:
        n = len(dynamic.modes)
        rec.notes.append(
            "of the dynamic answers measured, "
            + ", ".join(f"{c:,} of {n:,} were flagged {k}" for k, c in sorted(as_of.items()))
            + ": the online store could not give their lookups as of the request's time (the "
            "requests are older than its values), so those dynamic answers are not what serving "
            "them at their time gave; measure on recent requests for the live difference"
        )
    if universe.recent_keys < universe.keys:
        rec.notes.append(
            f"`loopml precompute` (window 28d by default) would write {universe.recent_keys:,} of the "
            f"{universe.keys:,} keys; pass a longer --window to cover the universe"
        )
