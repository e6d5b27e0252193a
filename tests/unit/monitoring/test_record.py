"""The prediction log's entry: one encoder, one decoder, and the entries written before the
record existed (by four hand-built dicts) read back as they did."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from loopml.monitoring._log import _prediction_table
from loopml.monitoring._record import PredictionRecord
from loopml.serving._engine import Prediction
from loopml.storage import Event

AT = 1_700_000_000_000_000

# Written by the code before PredictionRecord, byte for byte: Prediction.log_entry (a dynamic
# answer with flags; a fallback routed by an experiment), Runtime._score_shadow (the entry of the
# answer updated: "of" last), Ranking (every item with "of" and "rollout", null outside an
# experiment) and Monitoring.log_scored (a batch row; a shadow row of an experiment).
OLD = [
    b'{"id":"srv-1","at":1700000000000000,"model":"flights","version":3,"mode":"dynamic",'
    b'"fallback":null,"output":0.125,"latency_us":85.4,"features":{"dep_hour":7,"carrier":"UA",'
    b'"_at":1700000000000000},"flags":{"weather":["older_than_ttl"]}}',
    b'{"id":"srv-2","at":1700000000000001,"model":"flights","version":null,"mode":"fallback",'
    b'"fallback":"breaker_open","output":[0.2,0.8],"latency_us":12.0,"features":{"dep_hour":9},'
    b'"rollout":4,"propensity":0.5}',
    b'{"id":"srv-1:shadow","at":1700000000000000,"model":"flights","version":4,"mode":"shadow",'
    b'"fallback":null,"output":0.5,"latency_us":40.3,"features":{"dep_hour":7,"carrier":"UA",'
    b'"_at":1700000000000000},"flags":{"weather":["older_than_ttl"]},"of":"srv-1"}',
    b'{"id":"r-1:0","at":1700000000000002,"model":"flights","version":2,"mode":"rank",'
    b'"fallback":null,"output":1.5,"latency_us":3.2,"features":{"dep_hour":8},"of":"r-1",'
    b'"rollout":null}',
    b'{"id":"batch-2-0","at":1700000000000003,"model":"flights","version":2,"mode":"batch",'
    b'"fallback":null,"output":0.3,"latency_us":0.87,"features":{"dep_hour":10}}',
    b'{"id":"exp-0:shadow","at":1700000000000004,"model":"flights","version":5,"mode":"shadow",'
    b'"fallback":null,"output":0.7,"latency_us":1.25,"features":{"dep_hour":11},'
    b'"of":"exp-0","rollout":6,"propensity":0.25}',
]


def _events(payloads: list[bytes]) -> list[Event]:
    return [Event(id=f"1700000000000-{i}", payload=p) for i, p in enumerate(payloads)]


def test_old_entries_read_back_identically() -> None:
    records = [PredictionRecord.decode(p) for p in OLD]
    assert records[0] == PredictionRecord(
        id="srv-1",
        at=AT,
        model="flights",
        version=3,
        mode="dynamic",
        output=0.125,
        latency_us=85.4,
        features={"dep_hour": 7, "carrier": "UA", "_at": AT},
        flags={"weather": ["older_than_ttl"]},
    )
    assert (records[1].version, records[1].fallback, records[1].output) == (
        None,
        "breaker_open",
        [0.2, 0.8],
    )
    assert (records[1].rollout, records[1].propensity) == (4, 0.5)
    assert (records[2].of, records[2].mode, records[2].flags) == (
        "srv-1",
        "shadow",
        {"weather": ["older_than_ttl"]},
    )
    assert (records[3].of, records[3].rollout) == ("r-1", None)
    assert (records[4].latency_us, records[5].of, records[5].propensity) == (0.87, "exp-0", 0.25)
    # Written again by the record, each lands as the old bytes did: the same table, column by
    # column (the multiclass entry is landed apart: its outputs make a "proba" column).
    for group in (OLD[:1] + OLD[2:], OLD[1:2]):
        old, _ = _prediction_table(_events(group))
        new, _ = _prediction_table(_events([PredictionRecord.decode(p).encode() for p in group]))
        assert new.equals(old), group
    landed, rejected = _prediction_table(_events(OLD[:1] + OLD[2:]))
    assert rejected == []
    assert landed["of"].to_pylist() == [None, "srv-1", "r-1", None, "exp-0"]
    assert landed["latency_us"].to_pylist() == [85.4, 40.3, 3.2, 0.87, 1.25]


def test_an_entry_without_optional_parts_keeps_the_old_bytes() -> None:
    record = PredictionRecord.decode(OLD[4])
    assert record.encode() == OLD[4]
    # A served answer's entry is the one Prediction.log_entry wrote (its latency now kept to
    # 0.01 us, as batch rows' were, rather than 0.1 us).
    pred = Prediction(
        id="srv-1",
        model="flights",
        version=3,
        mode="dynamic",
        output=np.float64(0.125),
        task="binary",
        latency_us=85.4,
        features={"dep_hour": 7, "carrier": "UA", "_at": AT},
        at=AT,
        flags={"weather": ["older_than_ttl"]},
    )
    assert pred.record().encode() == OLD[0]
    routed = Prediction(
        id="srv-2",
        model="flights",
        version=None,
        mode="fallback",
        output=np.array([0.2, 0.8]),
        task="multiclass",
        fallback="breaker_open",
        latency_us=12.0,
        features={"dep_hour": 9},
        at=AT + 1,
        rollout=4,
        propensity=0.5,
    )
    assert PredictionRecord.decode(routed.record().encode()) == PredictionRecord.decode(OLD[1])


def test_numpy_outputs_and_features_are_written_as_plain_json() -> None:
    record = PredictionRecord(
        id="p",
        at=AT,
        model="m",
        version=1,
        mode="dynamic",
        output=np.array([0.25, 0.75]),
        latency_us=1.0 / 3,
        features={"x": np.float32(0.5), "n": np.int64(3)},
    )
    back = PredictionRecord.decode(record.encode())
    assert back.output == [0.25, 0.75]
    assert back.features == {"x": 0.5, "n": 3}
    assert back.latency_us == 0.33
    assert (back.of, back.rollout, back.propensity, back.flags) == (None, None, None, None)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "unexpected"),
        (b"[1, 2]", "no id"),
        (b'{"at": 1}', "no id"),
        (b'{"id": 7, "at": 1}', "no id"),
        (b'{"id": "p"}', "no at"),
        (b'{"id": "p", "at": [1]}', "at:"),
        (b'{"id": "p", "at": "soon"}', "invalid literal"),
        (b'{"id": "p", "at": 1, "features": [1, 2]}', "features is not an object"),
    ],
)
def test_what_is_not_a_prediction_entry_is_refused_with_the_reason(
    payload: bytes, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        PredictionRecord.decode(payload)
    landed, rejected = _prediction_table(_events([payload, OLD[4]]))
    assert landed.num_rows == 1 and isinstance(landed, pa.Table)
    assert [r["event_id"] for r in rejected] == ["1700000000000-0"]
    assert reason.lower() in rejected[0]["error"].lower() or reason == "unexpected"
