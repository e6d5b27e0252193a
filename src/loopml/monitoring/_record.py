"""One entry of the prediction log: what a served, ranked, shadow or batch prediction leaves
in ``predictions.<model>`` for monitoring, rollouts and the serving advisor to read.

Built in one place (:meth:`PredictionRecord.encode`) and read back in one place
(:meth:`PredictionRecord.decode`). The bytes are a JSON object with the keys ``id``, ``at``,
``model``, ``version``, ``mode``, ``fallback``, ``output``, ``latency_us`` and ``features``,
then ``of``, ``rollout``, ``propensity`` and ``flags`` only where they hold something: logs
written before this type existed read back the same (a key written as ``null`` and a key left
out mean the same thing).

>>> r = PredictionRecord(id="p1", at=5, model="m", version=2, mode="dynamic", output=0.25,
...                      latency_us=12.34, features={"x": 1})
>>> r.encode()
b'{"id":"p1","at":5,"model":"m","version":2,"mode":"dynamic","fallback":null,"output":0.25,"latency_us":12.34,"features":{"x":1}}'
>>> PredictionRecord.decode(r.encode()).latency_us
12.34
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

# {lookup, window or feature: [flag, ...]} (loopml.features._flags), kept as logged
Flags = dict[str, list[str]]

# Looked up once: encode runs once per request.
_ARRAY = np.ndarray
_DUMPS = orjson.dumps
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


@dataclass(slots=True)
class PredictionRecord:
    """One logged prediction. Slotted: one is made per request on the serving path."""

    id: str
    at: int  # microseconds since the epoch: when the request was made (or the row's event)
    model: str | None  # None (as the fields below) only in an entry read back without it
    version: int | None  # None for an answer without the model (a default fallback)
    mode: str | None  # dynamic | static | consistent | fallback | rank | shadow | batch | ...
    output: Any  # a score, a list of class probabilities, or None
    latency_us: float | None
    features: dict[str, Any]
    fallback: str | None = None  # why the model did not answer
    of: str | None = None  # the prediction a shadow one shadows, the ranking an item is in
    rollout: int | None = None  # the experiment or rollout that routed it
    propensity: float | None = None  # the probability its arm had of being chosen
    flags: Flags | None = None

    def encode(self) -> bytes:
        """The entry's bytes in the prediction log."""
        output, latency = self.output, self.latency_us
        entry: dict[str, Any] = {
            "id": self.id,
            "at": self.at,
            "model": self.model,
            "version": self.version,
            "mode": self.mode,
            "fallback": self.fallback,
            "output": output.tolist() if isinstance(output, _ARRAY) else output,
            # a hundredth of a microsecond: a batch's time per row is often below one
            "latency_us": None if latency is None else round(latency, 2),
            "features": self.features,
        }
        # Most entries carry none of these: left out rather than written as nulls.
        if self.of is not None:
            entry["of"] = self.of
        if self.rollout is not None:
            entry["rollout"] = self.rollout
        if self.propensity is not None:
            entry["propensity"] = self.propensity
        if self.flags:
            entry["flags"] = self.flags
        # numpy scalars (a score, a feature read from an array) are written as plain numbers
        return _DUMPS(entry, option=_NUMPY)

    @classmethod
    def decode(cls, payload: bytes | str) -> PredictionRecord:
        """The record in ``payload``; ValueError when it is not a prediction entry (not JSON,
        no string ``id``, no integer ``at``). Other fields are taken as they were logged."""
        entry = orjson.loads(payload)
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise ValueError("not a prediction entry (no id)")
        try:
            at = int(entry["at"])
        except KeyError:
            raise ValueError("not a prediction entry (no at)") from None
        except TypeError as exc:
            raise ValueError(f"not a prediction entry (at: {exc})") from None
        get = entry.get
        features = get("features") or {}
        if not isinstance(features, dict):
            raise ValueError("not a prediction entry (features is not an object)")
        return cls(
            id=entry["id"],
            at=at,
            model=get("model"),
            version=get("version"),
            mode=get("mode"),
            output=get("output"),
            latency_us=get("latency_us"),
            features=features,
            fallback=get("fallback"),
            of=get("of"),
            rollout=get("rollout"),
            propensity=get("propensity"),
            flags=get("flags"),
        )
