"""A type declared in loopml.yaml after ingestion retypes the rows already in the lake, or says
clearly why it cannot and what to do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from loopml import Project
from loopml.errors import SchemaError

SPEC = "project: t\nsources:\n  s:\n    format: jsonl\n    timestamp: t\n{columns}"


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path


def _rows(start: int, level: object) -> list[dict[str, object]]:
    return [
        {"t": f"2021-01-01T00:{i // 60:02d}:{i % 60:02d}Z", "k": i, "level": level}
        for i in range(start, start + 30)
    ]


def _declare(columns: str) -> str:
    return SPEC.format(columns=f"    schema:\n      columns:\n{columns}")


def test_a_type_declared_after_ingestion_retypes_the_batches_in_the_lake(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project(SPEC.format(columns=""))
    p.data.ingest("s", [_jsonl(tmp_path / "a.jsonl", _rows(0, "3"))])
    assert p.data.schema("s").schema.column("level").type == "string"  # type: ignore[union-attr]

    p = make_project(_declare("        level: {type: int64}\n"))
    assert p.data.schema("s").schema.column("level").type == "int64"  # type: ignore[union-attr]
    (r,) = p.data.ingest("s", [_jsonl(tmp_path / "b.jsonl", _rows(100, 4))])
    assert r.status == "landed"
    table = p.data.query("SELECT level, count(*) AS n FROM s GROUP BY level ORDER BY level")
    assert str(table.schema.field("level").type) == "int64"
    assert table.to_pylist() == [{"level": 3, "n": 30}, {"level": 4, "n": 30}]


def test_values_in_the_lake_that_do_not_fit_the_declared_type_are_named(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project(SPEC.format(columns=""))
    p.data.ingest("s", [_jsonl(tmp_path / "a.jsonl", _rows(0, "3") + _rows(30, "high"))])
    p = make_project(_declare("        level: {type: int64}\n"))
    with pytest.raises(SchemaError) as info:
        p.data.query("SELECT count(*) FROM s")
    message = info.value.message
    assert "level" in message and "int64" in message and "30 rows" in message
    assert "'high'" in message and "loopml data reset s" in message


def test_a_declaration_that_cannot_recover_the_original_text_says_to_reset(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project(SPEC.format(columns=""))
    p.data.ingest("s", [_jsonl(tmp_path / "a.jsonl", _rows(0, 7))])
    p = make_project(_declare("        level: {type: string}\n"))
    with pytest.raises(SchemaError) as info:
        p.data.query("SELECT level FROM s")
    message = info.value.message
    assert "int64" in message and "string" in message and "loopml data reset s" in message
