"""Flags: what an answer says about the values it used, when they are not what a point-in-time
computation at the request's event time would have used, or where they came from.

A computed row carries them under ``_flags`` as ``{name: [flag, ...]}``, the name being a lookup
or window (for the values it supplies) or a feature (for a category); the serving response
returns them as ``flags`` and ``/metrics`` counts them.

- ``newer_than_event``: the online store's value of a lookup is from after the request's event
  time (the store holds the latest value; the value as of that time is not there). It is not
  used: the lookup's features are null, as they would be for an entity with no value yet.
- ``older_than_ttl``: the lookup's value is older than its TTL at the event time: null, as in
  training.
- ``from_cache``: the lookup's row or the window's values came from the worker's feature cache
  (``serving.feature_cache``). The cache is checked against the store's generations on every
  request, so these are the values the store holds.
- ``stale_store``: the online store holds nothing for the lookup or window (it was never
  materialized): its features are null, its counts zero. Checked when serving starts and then
  every second until the store holds something.
- ``unseen_category``: a categorical model input holds a value the model never saw in training.
- ``missing_category``: a categorical model input is null.
"""

from __future__ import annotations

NEWER_THAN_EVENT = "newer_than_event"
OLDER_THAN_TTL = "older_than_ttl"
FROM_CACHE = "from_cache"
STALE_STORE = "stale_store"
UNSEEN_CATEGORY = "unseen_category"
MISSING_CATEGORY = "missing_category"

FLAGS = (
    NEWER_THAN_EVENT,
    OLDER_THAN_TTL,
    FROM_CACHE,
    STALE_STORE,
    UNSEEN_CATEGORY,
    MISSING_CATEGORY,
)

Flags = dict[str, list[str]]


def add_flag(row: dict[str, object], name: str, flag: str) -> None:
    """Record ``flag`` for ``name`` in ``row["_flags"]`` (created on the first flag)."""
    flags = row.get("_flags")
    if flags is None:
        row["_flags"] = {name: [flag]}
    else:
        assert isinstance(flags, dict)
        flags.setdefault(name, []).append(flag)
