"""Static serving's table: a prediction for every key of the declared entity (or for the head
of the request distribution), computed in batch and written to the online store.

Each key's prediction is made for its latest event in the lake, with the features that event had
(point-in-time, from the offline path): a static table answers for "an event like the last one
with this key" (the same store, product and hour, say), which is the trade-off static serving
makes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from loopml.data import fetch_arrow
from loopml.errors import UsageError
from loopml.features import Features, encode_key, request_events
from loopml.serving._engine import static_table
from loopml.storage import OnlineStore
from loopml.training import Models


def representative_requests(
    features: Features,
    key: Sequence[str],
    *,
    snapshot: str | None = None,
    window: timedelta | None = None,
    keys: Sequence[dict[str, Any]] | None = None,
) -> pa.Table:
    """One request per key: the latest event of each key (within ``window`` of the newest)."""
    fs = features.feature_set
    unknown = [
        k for k in key if k not in fs.features or fs.features[k].kind not in ("request", "derived")
    ]
    if unknown or any(k in dict(fs.stage3) for k in key):
        raise UsageError(
            f"serving.static.key: {', '.join(unknown or key)} must be request features or derived from them"
        )
    with features.data.lake.connect(snapshot) as con:
        events = request_events(con, fs)
        if window is not None and events.num_rows:
            newest = pc.max(events["_event_time"]).as_py()
            if newest is not None:
                events = events.filter(
                    pc.greater_equal(
                        events["_event_time"],
                        pa.scalar(newest - window, events["_event_time"].type),
                    )
                )
        con.register("_events", events)
        parts = ", ".join(f'"{k}"' for k in key)
        not_null = " AND ".join(f'"{k}" IS NOT NULL' for k in key)
        latest = fetch_arrow(
            con.sql(
                f"SELECT * FROM _events WHERE {not_null} "
                f"QUALIFY row_number() OVER (PARTITION BY {parts} ORDER BY _event_time DESC NULLS LAST) = 1"
            )
        )
    if keys is not None:
        wanted = {encode_key([k.get(c) for c in key]) for k in keys}
        codes = [encode_key(v) for v in zip(*(latest[k].to_pylist() for k in key), strict=True)]
        latest = latest.filter(pa.array([c in wanted for c in codes]))
    return latest.select(fs.request)


def precompute(
    models: Models,
    features: Features,
    store: OnlineStore,
    key: Sequence[str],
    *,
    ref: str | int = "champion",
    snapshot: str | None = None,
    window: timedelta | None = timedelta(days=28),
    keys: Sequence[dict[str, Any]] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Write the static table of a version into ``store``; returns what it wrote and how long it
    took. The table is the model's (``static_table(models.name, version)``) unless ``name``
    gives another model name to write it under (the serving advisor's probe)."""
    started = time.perf_counter()
    mv = models.get(ref)
    model = models.load(mv)
    requests = representative_requests(features, key, snapshot=snapshot, window=window, keys=keys)
    table = features.build_for(requests, snapshot=snapshot)
    scores = model.predict(table) if table.num_rows else np.empty(0)
    key_values = [table[k].to_pylist() for k in key]
    now = time.time()
    rows = []
    size = 0
    for i in range(table.num_rows):
        code = encode_key([col[i] for col in key_values])
        if code is None:
            continue
        out = scores[i].tolist() if scores.ndim > 1 else float(scores[i])
        payload = orjson.dumps({"o": out, "v": mv.version})
        size += len(code) + len(payload) + 8
        rows.append((code, now, payload))
    owner = name or models.name
    table_name = static_table(owner, mv.version)
    for start in range(0, len(rows), 5000):
        store.put_latest(table_name, rows[start : start + 5000])
    return {
        "model": owner,
        "version": mv.version,
        "table": table_name,
        "keys": len(rows),
        "bytes": size,
        "seconds": round(time.perf_counter() - started, 3),
        "key": list(key),
    }
