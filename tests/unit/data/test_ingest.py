"""Ingestion: formats, idempotency, undeclared sources, snapshots and SQL over the lake."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml import Project
from loopml.errors import NotFoundError, ReadError, UsageError
from tests.conftest import flights_lines


def test_same_file_twice_is_a_no_op(
    make_project: Callable[..., Project], flights_csv: Callable[..., Path]
) -> None:
    p = make_project()
    path = flights_csv(stop=500)
    (a,) = p.data.ingest("flights", [path])
    (b,) = p.data.ingest("flights", [path])
    assert a.status == "landed" and b.status == "duplicate" and b.batch_id == a.batch_id
    assert b.rows_read == 0 and "ingested already" in b.warnings[0]["message"]
    assert len(p.data.batches("flights")) == 1


def test_gzip_csv_and_crlf(make_project: Callable[..., Project], tmp_path: Path) -> None:
    p = make_project()
    text = "\r\n".join(flights_lines()[:301]) + "\r\n"
    (tmp_path / "f.csv.gz").write_bytes(gzip.compress(text.encode()))
    (r,) = p.data.ingest("flights", [tmp_path / "f.csv.gz"])
    assert (r.status, r.rows_accepted) == ("landed", 300)
    bad = text.replace(flights_lines()[5], flights_lines()[5].replace(",UA,", ",,"), 1)
    (tmp_path / "g.csv.gz").write_bytes(gzip.compress(bad.encode()))
    (tmp_path / "notgz.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(ReadError, match="gzip"):
        p.data.ingest("flights", [tmp_path / "notgz.csv.gz"])


def test_undeclared_source_is_created_from_its_file(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project("project: t\n")
    path = tmp_path / "planes.parquet"
    pq.write_table(
        pa.table(
            {
                "tailnum": ["N1", "N2"],
                "seen": pa.array([1_600_000_000, 1_600_000_060], pa.timestamp("s", tz="UTC")),
                "seats": [100, 150],
            }
        ),
        path,
    )
    (r,) = p.data.ingest("planes", [path])
    assert r.status == "landed"
    schema = p.data.schema("planes").schema
    assert schema.timestamp == "seen"  # the first time column of an undeclared source
    sources = {s["source"]: s for s in p.data.sources()}
    assert sources["planes"]["declared"] is False and sources["planes"]["format"] == "parquet"
    assert p.data.source_spec("planes").format == "parquet"


def test_json_lines(make_project: Callable[..., Project], tmp_path: Path) -> None:
    p = make_project("project: t\n")
    (tmp_path / "e.jsonl").write_text('{"id": 1, "kind": "a"}\n\n{"id": 2, "kind": "b"}\n')
    (r,) = p.data.ingest("events", [tmp_path / "e.jsonl"])
    assert (r.rows_read, r.rows_accepted) == (2, 2)


def test_bad_usage_is_reported(make_project: Callable[..., Project], tmp_path: Path) -> None:
    p = make_project()
    with pytest.raises(ReadError, match="no such file"):
        p.data.ingest("flights", [tmp_path / "missing.csv"])
    (tmp_path / "x.weird").write_text("a\n1\n")
    with pytest.raises(UsageError, match="format"):
        p.data.ingest("other", [tmp_path / "x.weird"])
    with pytest.raises(UsageError, match="source name"):
        p.data.ingest("bad name", [tmp_path / "x.weird"])
    with pytest.raises(UsageError, match="no files given"):
        p.data.ingest("flights", [])
    with pytest.raises(NotFoundError, match="no source"):
        p.data.schema("nothing")


def test_source_path_glob(make_project: Callable[..., Project], tmp_path: Path) -> None:
    p = make_project("project: t\nsources:\n  f:\n    format: csv\n    path: in/*.csv\n")
    (p.root / "in").mkdir()
    for i in range(3):
        (p.root / "in" / f"{i}.csv").write_text(f"a\n{i}\n")
    results = p.data.ingest("f")
    assert [r.rows_accepted for r in results] == [1, 1, 1]


def test_snapshots_pin_a_set_of_batches(
    make_project: Callable[..., Project], flights_csv: Callable[..., Path]
) -> None:
    p = make_project()
    p.data.ingest("flights", [flights_csv("a.csv", 0, 100)])
    snap = p.data.snapshot(note="first")
    p.data.ingest("flights", [flights_csv("b.csv", 100, 250)])
    count = "SELECT count(*) AS n FROM flights"
    assert p.data.query(count, snapshot=snap.id).to_pylist() == [{"n": 100}]
    assert p.data.query(count).to_pylist() == [{"n": 250}]
    assert [s.id for s in p.data.snapshots()] == [snap.id]
    assert p.data.read_table("flights", snapshot=snap.id).num_rows == 100
    with pytest.raises(NotFoundError):
        p.data.query(count, snapshot="s_nope")
    with pytest.raises(NotFoundError, match="the lake has: flights"):
        p.data.query("SELECT * FROM nothing")
    with pytest.raises(UsageError, match="query failed"):
        p.data.query("SELEC 1")


def test_lake_files_carry_the_batch(
    make_project: Callable[..., Project], flights_csv: Callable[..., Path]
) -> None:
    p = make_project()
    (r,) = p.data.ingest("flights", [flights_csv(stop=50)])
    rows = p.data.query("SELECT DISTINCT _batch FROM flights").to_pylist()
    assert rows == [{"_batch": r.batch_id}]


def test_csv_column_names_replace_the_header_names(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    # pandas and R write a row number under an empty header name: name it in loopml.yaml.
    p = make_project(
        "project: t\nsources:\n  s:\n    format: csv\n"
        "    csv: {column_names: [row_id, team, goals]}\n"
    )
    path = tmp_path / "m.csv"
    path.write_text('"","team","goals"\n"1","A",2\n"2","B",0\n')
    (r,) = p.data.ingest("s", [path])
    assert (r.status, r.rows_accepted) == ("landed", 2)
    assert p.data.query("SELECT row_id, team, goals FROM s ORDER BY row_id").to_pylist() == [
        {"row_id": 1, "team": "A", "goals": 2},
        {"row_id": 2, "team": "B", "goals": 0},
    ]
    bad = make_project(
        "project: t\nsources:\n  s:\n    format: csv\n    csv: {column_names: [a, b]}\n",
        folder="other",
    )
    (held,) = bad.data.ingest("s", [path])
    assert held.status == "held"
    assert "csv.column_names has 2 names, the header has 3" in held.batch_reasons[0]["message"]


def test_concurrent_ingests_of_the_same_keys_land_them_once(tmp_path: Path) -> None:
    """Two processes ingesting different files with the same primary keys at once: the duplicate
    check and the commit are serialized per source, so one lands and the other is quarantined."""
    from tests.conftest import FLIGHTS_SPEC
    from tests.helpers import check_race, ingest_race

    for trial in range(3):  # unserialized, 7 trials in 8 land both files
        root = tmp_path / f"p{trial}"
        check_race(root, ingest_race(root, FLIGHTS_SPEC.replace("{extra}", "")))


def test_an_ingest_that_waits_too_long_for_the_source_says_who_holds_it(
    make_project: Callable[..., Project], flights_csv: Callable[..., Path]
) -> None:
    import os
    import threading

    from loopml.errors import ConflictError

    storage = "storage:\n  metadata: {type: sqlite, path: meta.db, lock_timeout_s: 0.3}\n"
    p = make_project(extra=storage)
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with p.data.store.lock("ingest:flights"):
            taken.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(10)
        with pytest.raises(
            ConflictError, match=rf"another ingest of source 'flights'.*pid {os.getpid()}"
        ):
            p.data.ingest("flights", [flights_csv(stop=100)])
    finally:
        release.set()
        holder.join()
    assert not p.data.batches("flights", status="pending")  # the waiting batch was undone
    assert not p.data.batches("flights")
    (r,) = p.data.ingest("flights", [flights_csv(stop=100)])  # and the file can come again
    assert r.status == "landed"


def test_a_batch_records_the_event_time_range_of_its_accepted_rows(
    make_project: Callable[..., Project], flights_csv: Callable[..., Path], tmp_path: Path
) -> None:
    # The dashboard finds the batches behind a monitoring window by this range: only the rows
    # that landed count, so a quarantined row's (far later) time is left out.
    lines = list(flights_lines()[1:301])
    fields = lines[-1].split(",")
    fields[15], fields[18] = "99999", "2013-12-31T23:00:00Z"  # distance out of range: quarantined
    lines[-1] = ",".join(fields)
    p = make_project()
    (r,) = p.data.ingest("flights", [flights_csv(lines=lines)])
    assert (r.rows_accepted, r.rows_quarantined) == (299, 1)
    times = sorted(line.split(",")[18] for line in lines[:-1])
    (batch,) = p.data.batches("flights")
    assert batch.stats is not None
    assert batch.stats["time_min"] == times[0].replace("Z", "+00:00")
    assert batch.stats["time_max"] == times[-1].replace("Z", "+00:00")
    # A source without a timestamp records no range.
    q = make_project("project: u\nsources:\n  plain:\n    format: csv\n", folder="plain")
    (tmp_path / "plain.csv").write_text("a,b\n1,x\n2,y\n")
    q.data.ingest("plain", [tmp_path / "plain.csv"])
    (plain,) = q.data.batches("plain")
    assert plain.stats is not None and "time_min" not in plain.stats
