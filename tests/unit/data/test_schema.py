"""Schema inference and evolution: changes are held until accepted, then held batches land."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from loopml import Project
from loopml.data import infer_schema
from loopml.errors import SchemaError
from loopml.spec import SchemaPolicy
from tests.conftest import flights_lines


def test_inference_types_nullability_ranges_categories() -> None:
    table = pa.table(
        {
            "n": pa.array([1, 2, None] * 30),
            "x": pa.array([0.5, -2.0, 3.0] * 30),
            "c": pa.array(["a", "b", "a"] * 30),
            "id": pa.array([f"u{i}" for i in range(90)]),
            "t": pa.array([0, 3600, 7200] * 30, pa.timestamp("s", tz="UTC")),
        }
    )
    s = infer_schema(table, policy=SchemaPolicy(), timestamp="t", primary_key=["id"])
    n, x, c, id_, t = s.columns
    assert (n.type, n.nullable, n.min, n.max) == ("int64", True, -200.0, 200.0)
    # No null in the first batch is no proof there will never be one (issue 16, item 20).
    assert (x.type, x.nullable, x.min, x.max) == ("float64", True, -300.0, 300.0)
    assert c.categories == ["a", "b"] and id_.categories is None  # 90 distinct ids: not categorical
    assert id_.role == "id" and c.role is None
    assert (t.type, t.unit, t.tz, t.nullable) == ("timestamp", "s", "UTC", False)
    assert s.timestamp == "t" and s.primary_key == ["id"]


def test_declarations_override_inference() -> None:
    policy = SchemaPolicy.model_validate(
        {
            "columns": {
                "n": {"nullable": False, "min": 0, "max": 10},
                "c": {"categories": ["a", "b", "c"], "unseen": "quarantine"},
            }
        }
    )
    table = pa.table({"n": pa.array([1, None]), "c": pa.array(["a", "b"])})
    n, c = infer_schema(table, policy=policy).columns
    assert (n.nullable, n.min, n.max) == (False, 0, 10)
    assert (c.categories, c.unseen) == (["a", "b", "c"], "quarantine")


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_new_column_is_held_then_accepted_and_released(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project()
    head, body = flights_lines()[0], flights_lines()[1:]
    p.data.ingest("flights", [_csv(tmp_path / "a.csv", head, list(body[:1000]))])
    (held,) = p.data.ingest(
        "flights", [_csv(tmp_path / "b.csv", head + ",gate", [r + ",B7" for r in body[1000:1200]])]
    )
    assert held.status == "held" and "new column 'gate'" in held.batch_reasons[0]["message"]
    # Later batches without the change still land while the proposal waits.
    (ok,) = p.data.ingest("flights", [_csv(tmp_path / "c.csv", head, list(body[1200:1300]))])
    assert ok.status == "landed"

    diff = p.data.schema_diff("flights")
    assert diff.active_version == 1 and diff.proposed_version == 2
    assert {"column": "gate", "change": "added", "old": None, "new": "string"} in diff.columns

    version, released = p.data.accept_schema("flights", release=True)
    assert version == 2 and len(released) == 1
    assert released[0].rows_accepted == 200 and released[0].rows_quarantined == 0
    assert p.data.schema("flights").schema.column("gate") is not None
    gates = p.data.query("SELECT count(gate) AS n, count(*) AS total FROM flights").to_pylist()[0]
    assert gates == {"n": 200, "total": 1300}
    entry = p.data.quarantine.list(status="released")[0]
    assert entry.resolution["batch"] == released[0].batch_id  # type: ignore[index]
    with pytest.raises(SchemaError, match="no pending schema change"):
        p.data.accept_schema("flights")


def test_lossless_widening_is_accepted_as_a_new_version(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project()
    head = "k,t,v"
    p.data.ingest(
        "s",
        [
            _csv(
                tmp_path / "a.csv",
                head,
                [f"{i},2013-01-01T00:00:0{i % 10}Z,{i % 3}" for i in range(40)],
            )
        ],
    )
    assert p.data.schema("s").schema.column("v").type == "int64"  # type: ignore[union-attr]
    (r,) = p.data.ingest(
        "s",
        [
            _csv(
                tmp_path / "b.csv",
                head,
                ["50,2013-01-02T00:00:00Z,0", "51,2013-01-02T00:00:01Z,0.25"],
            )
        ],
    )
    assert r.status == "landed" and r.schema_version == 2
    assert r.schema_changes == ["column 'v' widened from int64 to float64"]
    assert p.data.query("SELECT sum(v) AS s FROM s").to_pylist()[0]["s"] == pytest.approx(39 + 0.25)
    assert [v.status for v in p.data.schema_versions("s")] == ["superseded", "active"]


def test_policy_reject_makes_no_proposal(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project(
        "project: t\nsources:\n  s:\n    format: csv\n    schema: {on_change: reject}\n"
    )
    p.data.ingest("s", [_csv(tmp_path / "a.csv", "a,b", ["1,x", "2,y"])])
    (r,) = p.data.ingest("s", [_csv(tmp_path / "b.csv", "a,b,c", ["3,z,1"])])
    assert r.status == "held" and "on_change is reject" in r.batch_reasons[0]["message"]
    assert p.data.schema_diff("s").proposed_version is None


def test_policy_accept_evolves_at_once(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project(
        "project: t\nsources:\n  s:\n    format: csv\n    schema: {on_change: accept}\n"
    )
    p.data.ingest("s", [_csv(tmp_path / "a.csv", "a,b", ["1,x", "2,y"])])
    (r,) = p.data.ingest("s", [_csv(tmp_path / "b.csv", "a,b,c", ["3,z,1"])])
    assert r.status == "landed" and r.schema_version == 2
    assert p.data.query("SELECT a, c FROM s ORDER BY a").to_pylist() == [
        {"a": 1, "c": None},
        {"a": 2, "c": None},
        {"a": 3, "c": 1},
    ]


def test_nullable_column_may_be_absent(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project("project: t\nsources:\n  s: {format: csv}\n")
    p.data.ingest("s", [_csv(tmp_path / "a.csv", "a,b", ["1,x", "2,NA"])])
    (r,) = p.data.ingest("s", [_csv(tmp_path / "b.csv", "a", ["3"])])
    assert r.status == "landed"
    assert p.data.query("SELECT b FROM s WHERE a = 3").to_pylist() == [{"b": None}]


def test_unseen_categories_warn_and_propose(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project("project: t\nsources:\n  s: {format: csv}\n")
    p.data.ingest(
        "s", [_csv(tmp_path / "a.csv", "a,c", [f"{i},{'xy'[i % 2]}" for i in range(100)])]
    )
    (r,) = p.data.ingest("s", [_csv(tmp_path / "b.csv", "a,c", ["1,x", "2,z"])])
    assert r.status == "landed"
    assert r.warnings[0]["code"] == "unseen_category" and r.warnings[0]["values"] == ["z"]
    assert p.data.schema_diff("s").changes == ["column 'c' gains categories z"]
    p.data.accept_schema("s")
    assert p.data.schema("s").schema.column("c").categories == ["x", "y", "z"]  # type: ignore[union-attr]


def test_nulls_in_a_column_inferred_non_nullable_make_a_clear_proposal(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    # Schemas inferred before nulls were allowed by default hold columns inferred non-nullable:
    # a later null there is held, and the ingest says what accepting it would do.
    from loopml.data import _catalog as cat

    p = make_project("project: t\nsources:\n  s: {format: csv}\n")
    p.data.ingest("s", [_csv(tmp_path / "a.csv", "a,b", ["1,x", "2,y"])])
    with p.data.store.write() as conn:
        legacy = cat.active_schema(conn, "s")
        assert legacy is not None
        strict = legacy.schema.model_copy(deep=True)
        for col in strict.columns:
            col.nullable = False
        cat.add_schema(conn, "s", strict, status="active", by="old loopml", note="legacy")
    (r,) = p.data.ingest("s", [_csv(tmp_path / "b.csv", "a,b", ["3,NA", "4,z"])])
    assert (r.rows_accepted, r.rows_quarantined) == (1, 1)
    assert r.proposed_changes == ["column 'b' becomes nullable"]
    assert p.data.schema_diff("s").changes == ["column 'b' becomes nullable"]
    _, released = p.data.accept_schema("s", release=True)
    assert [(x.rows_accepted, x.rows_quarantined) for x in released] == [(1, 0)]
    assert p.data.query("SELECT count(*) AS n FROM s").to_pylist() == [{"n": 4}]
