"""Readers: invalid UTF-8 in any column of any text format is a row problem (``bad_encoding``),
not a reason to hold the whole file, and never lands in the lake."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from loopml import Project
from loopml.data._infer import infer_schema
from loopml.data._readers import read
from loopml.spec import CsvOptions, SchemaPolicy

BAD_ROWS = (7, 11, 12)  # 1-based record numbers that get a bad byte


def csv_bytes(n: int, start: int = 0, bad_in: str | None = None) -> bytes:
    lines = [b"id,x,name,when"]
    for i in range(start, start + n):
        x, name = b"%d" % (i * 3), b"n%d" % i
        if bad_in is not None and i - start + 1 in BAD_ROWS:
            if bad_in == "x":
                x = b"%d\xff" % (i * 3)
            else:
                name = b"n\xfe%d" % i
        when = b"2024-01-01T%02d:%02d:00Z" % (i // 60 % 24, i % 60)
        lines.append(b"%d,%s,%s,%s" % (i, x, name, when))
    return b"\n".join(lines) + b"\n"


def jsonl_bytes(n: int, start: int = 0, bad_in: str | None = None) -> bytes:
    lines = []
    for i in range(start, start + n):
        x, name = b"%d" % (i * 3), b'"n%d"' % i
        if bad_in is not None and i - start + 1 in BAD_ROWS:
            if bad_in == "x":
                x = b"%d\xff" % (i * 3)
            else:
                name = b'"n\xfe%d"' % i
        lines.append(b'{"id": %d, "x": %s, "name": %s}' % (i, x, name))
    return b"\n".join(lines) + b"\n"


def reasons_by_line(project: Project, entry: str | None) -> dict[int, set[tuple[str, str]]]:
    assert entry is not None
    rows = project.data.quarantine.show(entry).rows
    assert rows is not None
    return {r["line"]: {(x["code"], x["column"]) for x in r["reasons"]} for r in rows.to_pylist()}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("column", ["x", "name"])
@pytest.mark.parametrize("first", [True, False], ids=["new source", "known schema"])
def test_bad_bytes_quarantine_their_rows_and_the_rest_lands(
    make_project: Callable[..., Project], tmp_path: Path, fmt: str, column: str, first: bool
) -> None:
    """Issue 17.13: bad bytes in a numeric column held a whole CSV as unreadable; in a JSON
    Lines text value they landed in the lake as they were."""
    p = make_project("project: t\n")
    make = csv_bytes if fmt == "csv" else jsonl_bytes
    if not first:
        (tmp_path / f"a.{fmt}").write_bytes(make(100))
        (clean,) = p.data.ingest("s", [tmp_path / f"a.{fmt}"])
        assert clean.status == "landed"
    (tmp_path / f"b.{fmt}").write_bytes(make(100, start=1000, bad_in=column))
    (r,) = p.data.ingest("s", [tmp_path / f"b.{fmt}"])

    assert (r.status, r.rows_read, r.rows_accepted, r.rows_quarantined) == ("partial", 100, 97, 3)
    assert r.reasons == [{"code": "bad_encoding", "column": column, "count": 3}]
    header = 1 if fmt == "csv" else 0
    found = reasons_by_line(p, r.quarantine_id)
    assert found == {n + header: {("bad_encoding", column)} for n in BAD_ROWS}
    schema = p.data.schema("s").schema
    # The bad rows do not turn a column of numbers into text, in a new source or a known one.
    assert [(c.name, c.type) for c in schema.columns][:3] == [
        ("id", "int64"),
        ("x", "int64"),
        ("name", "string"),
    ]
    landed = p.data.read_table("s")
    assert landed.num_rows == 97 + (0 if first else 100)
    for value in landed.column("name").to_pylist():
        assert "\ufffd" not in value and "\\x" not in value


def test_the_fast_path_is_kept_for_clean_text() -> None:
    """Reading clean bytes flags nothing (the check must not cost a clean file a slow path)."""
    outcome = read(pa.py_buffer(jsonl_bytes(50)), "jsonl", None, CsvOptions())
    assert not outcome.bad_encoding and not outcome.rejected
    outcome = read(pa.py_buffer(csv_bytes(50)), "csv", None, CsvOptions())
    assert not outcome.bad_encoding and outcome.table.schema.field("x").type == pa.int64()


def test_a_json_line_with_bad_bytes_names_the_key_that_holds_them() -> None:
    lines = [
        b'{"a": 1, "b": "ok", "c": "x\xffy, z"}',  # in a text value after other keys
        b'{"a": 1, "b\xfe": "ok"}',  # in a key's name
        b'{"a": 12\xff, "b": "ok"}',  # in a number: not JSON once decoded either
        b"\xff\xfe",  # no key at all
        b'{"a": 2, "b": "fine"}',
    ]
    outcome = read(pa.py_buffer(b"\n".join(lines) + b"\n"), "jsonl", None, CsvOptions())
    assert outcome.table.num_rows == 1 and outcome.rows_read == 5
    assert [(r.line, r.code, r.column, r.value) for r in outcome.rejected] == [
        (1, "bad_encoding", "c", "x\\xffy, z"),
        (2, "bad_encoding", "b\\xfe", "ok"),
        (3, "bad_encoding", "a", "12\\xff"),
        (4, "bad_encoding", None, None),
    ]


def test_bad_bytes_in_every_typed_column_are_all_rows_not_an_unreadable_file() -> None:
    """Each column may need two more passes (as text, then as bytes): a file whose every
    column holds a bad byte still reads."""
    clean = b"a,b,c\n" + b"".join(b"%d,%d.5,%d\n" % (i, i, i) for i in range(20))
    schema = read(pa.py_buffer(clean), "csv", None, CsvOptions()).table.schema
    typed = infer_schema(
        pa.table({f.name: pa.nulls(0, f.type) for f in schema}), policy=SchemaPolicy()
    )
    bad = clean.replace(b"\n3,3.5,3\n", b"\n3\xff,3.5\xfe,3\xfd\n")
    outcome = read(pa.py_buffer(bad), "csv", typed, CsvOptions())
    assert sorted(outcome.bad_encoding) == ["a", "b", "c"]
    assert [f.type for f in outcome.table.schema] == [pa.int64(), pa.float64(), pa.int64()]
    for decoded in outcome.bad_encoding.values():
        assert decoded.bad is not None and list(decoded.bad.nonzero()[0]) == [3]
