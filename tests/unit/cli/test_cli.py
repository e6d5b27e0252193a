"""The loopml command: exit codes, --json summaries, errors that name what was wrong."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from loopml.cli import main
from tests.conftest import FLIGHTS_SPEC, flights_lines


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "loopml.yaml").write_text(FLIGHTS_SPEC.replace("{extra}", ""))
    return root


def test_init_and_spec_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "init", str(tmp_path / "new"), "--json")
    assert code == 0 and json.loads(out)["project"] == "new"
    code, _, err = run(capsys, "init", str(tmp_path / "new"))
    assert code == 1 and "--force" in err
    assert (tmp_path / "new" / ".loopml" / "spec.schema.json").exists()
    code, out, _ = run(capsys, "spec", "check", "-p", str(tmp_path / "new"), "--json")
    assert code == 0 and json.loads(out)["sources"] == []  # the template declares no data
    (tmp_path / "new" / "loopml.yaml").write_text("project: x\nsources:\n  f:\n    formt: csv\n")
    code, out, err = run(capsys, "spec", "check", "-p", str(tmp_path / "new"), "--json")
    assert code == 2
    error = json.loads(out)["error"]
    assert error["code"] == "spec_error" and error["details"]["line"] == 4
    assert "formt" in err


def test_json_schema_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "spec", "json-schema")
    assert code == 0 and json.loads(out)["title"].startswith("loopml")
    code, _, _ = run(capsys, "spec", "json-schema", "--out", str(tmp_path / "s.json"))
    assert code == 0 and json.loads((tmp_path / "s.json").read_text())["properties"]


def test_ingest_exit_codes_and_json_summary(
    project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.csv"
    good.write_text("\n".join(flights_lines()[:501]) + "\n")
    code, out, _ = run(capsys, "ingest", "flights", str(good), "-p", str(project_dir), "--json")
    summary = json.loads(out)
    assert code == 0
    assert {k: summary[k] for k in ("rows_read", "rows_accepted", "rows_quarantined")} == {
        "rows_read": 500,
        "rows_accepted": 500,
        "rows_quarantined": 0,
    }
    assert summary["batch_id"].startswith("b_") and summary["reasons"] == []

    rows = list(flights_lines()[501:601])
    rows[3] = (
        rows[3].replace(rows[3].split(",")[15], "-9", 1)
        if False
        else ",".join(v if i != 15 else "-9" for i, v in enumerate(rows[3].split(",")))
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([flights_lines()[0], *rows]) + "\n")
    code, out, _ = run(capsys, "ingest", "flights", str(bad), "-p", str(project_dir), "--json")
    summary = json.loads(out)
    assert code == 3
    assert summary["rows_read"] == 100 == summary["rows_accepted"] + summary["rows_quarantined"]
    assert summary["reasons"] == [{"code": "out_of_range", "column": "distance", "count": 1}]

    code, out, _ = run(capsys, "ingest", "flights", str(good), "-p", str(project_dir))
    assert code == 0 and "duplicate" in out
    code, _, err = run(
        capsys, "ingest", "flights", str(tmp_path / "missing.csv"), "-p", str(project_dir)
    )
    assert code == 2 and "no such file" in err


def test_quarantine_schema_and_data_commands(
    project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head, body = flights_lines()[0], flights_lines()[1:]
    (tmp_path / "a.csv").write_text("\n".join([head, *body[:1000]]) + "\n")
    rows = list(body[1000:1100])
    rows[5] = ",".join(v if i != 15 else "9999" for i, v in enumerate(rows[5].split(",")))
    (tmp_path / "b.csv").write_text("\n".join([head, *rows]) + "\n")
    (tmp_path / "c.csv").write_text(
        "\n".join([head + ",gate", *(r + ",A1" for r in body[1100:1110])]) + "\n"
    )
    p = str(project_dir)
    assert run(capsys, "ingest", "flights", str(tmp_path / "a.csv"), "-p", p)[0] == 0
    assert (
        run(capsys, "ingest", "flights", str(tmp_path / "b.csv"), "str", "-p", p)[0] == 2
    )  # "str" is no file
    assert run(capsys, "ingest", "flights", str(tmp_path / "b.csv"), "-p", p)[0] == 3
    assert run(capsys, "ingest", "flights", str(tmp_path / "c.csv"), "-p", p)[0] == 3

    code, out, _ = run(capsys, "quarantine", "list", "-p", p, "--json")
    entries = json.loads(out)
    assert code == 0 and sorted(e["kind"] for e in entries) == ["batch", "rows"]
    rows_entry = next(e for e in entries if e["kind"] == "rows")
    code, out, _ = run(capsys, "quarantine", "show", rows_entry["id"], "-p", p)
    assert code == 0 and "line 7" in out and "distance" in out and "above the maximum 6000" in out

    code, out, _ = run(capsys, "schema", "diff", "flights", "-p", p)
    assert code == 0 and "new column 'gate'" in out
    code, out, _ = run(capsys, "schema", "accept", "flights", "--release", "-p", p, "--json")
    accepted = json.loads(out)
    assert code == 0 and accepted["version"] == 2 and accepted["rows_accepted"] == 10
    code, out, _ = run(capsys, "schema", "show", "flights", "-p", p)
    assert code == 0 and "gate" in out
    code, out, _ = run(capsys, "schema", "versions", "flights", "-p", p, "--json")
    assert [v["status"] for v in json.loads(out)] == ["superseded", "active"]

    # Accepting re-checked every held entry: the bad distance is still bad, and as nothing of
    # its entry landed, the entry stays held as it was (no new entry for the same row).
    code, out, _ = run(capsys, "quarantine", "list", "-p", p, "--json")
    (residual,) = json.loads(out)
    assert residual["rows"] == 1 and residual["id"] == rows_entry["id"]
    code, out, _ = run(
        capsys, "quarantine", "drop", residual["id"], "--reason", "bad meter", "-p", p
    )
    assert code == 0
    code, out, _ = run(
        capsys, "data", "query", "SELECT count(*) AS n FROM flights", "-p", p, "--json"
    )
    assert json.loads(out)["rows"] == [{"n": 1000 + 99 + 10}]
    code, out, _ = run(
        capsys,
        "data",
        "query",
        "SELECT * FROM flights",
        "--out",
        str(tmp_path / "o.parquet"),
        "-p",
        p,
    )
    assert code == 0 and (tmp_path / "o.parquet").exists()
    code, out, _ = run(capsys, "data", "snapshot", "--note", "t", "-p", p, "--json")
    assert code == 0 and len(json.loads(out)["batch_ids"]) == 3
    for cmd in (
        ["data", "list"],
        ["data", "sources"],
        ["data", "snapshots"],
        ["data", "recover"],
        ["quarantine", "list", "--status", "all"],
    ):
        assert run(capsys, *cmd, "-p", p)[0] == 0, cmd
    code, _, err = run(capsys, "quarantine", "show", "q_nope", "-p", p)
    assert code == 2 and "q_nope" in err
    code, _, err = run(capsys, "quarantine", "list", "--status", "weird", "-p", p)
    assert code == 2


def test_no_project_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "data", "sources", "-p", str(tmp_path))
    assert code == 2 and "loopml init" in err


def test_export_and_release_fixed(
    project_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_project: Callable[..., object],
) -> None:
    head, body = flights_lines()[0], flights_lines()[1:]
    rows = list(body[:50])
    rows[2] = ",".join(rows[2].split(",")[:4])
    (tmp_path / "a.csv").write_text("\n".join([head, *rows]) + "\n")
    p = str(project_dir)
    code, out, _ = run(capsys, "ingest", "flights", str(tmp_path / "a.csv"), "-p", p, "--json")
    entry = json.loads(out)["batches"][0]["quarantine_id"]
    fix = tmp_path / "fix.csv"
    assert run(capsys, "quarantine", "export", entry, str(fix), "-p", p)[0] == 0
    fix.write_text("\n".join([head, body[2]]) + "\n")
    code, out, _ = run(
        capsys, "quarantine", "release", entry, "--fixed", str(fix), "-p", p, "--json"
    )
    assert code == 0 and json.loads(out)["rows_accepted"] == 1


SMALL_SPEC = "project: t\nsources:\n  s: {format: csv, timestamp: t}\n"


def small_file(path: Path, day: int, n: int) -> Path:
    rows = [f"2024-03-{day:02d}T{i // 60:02d}:{i % 60:02d}:00Z,k{i},{i}" for i in range(n)]
    path.write_text("\n".join(["t,k,v", *rows]) + "\n")
    return path


def test_ingest_prints_its_checks_and_names_files_ingested_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "loopml.yaml").write_text(SMALL_SPEC)
    p = str(tmp_path)
    a = small_file(tmp_path / "a.csv", 1, 50)
    code, out, _ = run(capsys, "ingest", "s", str(a), str(a), "-p", p, "--json")
    summary = json.loads(out)
    assert code == 0 and "duplicates" not in summary
    assert summary["files_already_ingested"] == 1 and summary["rows_read"] == 50
    assert [c["check"] for c in summary["checks"]] == [
        "row_count",
        "null_rate",
        "future_timestamp",
        "timestamp_floor",
    ]
    for day in (2, 3, 4):
        run(
            capsys, "ingest", "s", str(small_file(tmp_path / f"d{day}.csv", day, 40 + day)), "-p", p
        )
    code, out, _ = run(
        capsys, "ingest", "s", str(small_file(tmp_path / "e.csv", 5, 30)), str(a), "-p", p
    )
    assert code == 0
    assert "row count: 4.2 to 500 (auto: 10x beyond the 42 to 50 rows of the last 4 files)" in out
    assert "timestamps: no floor" in out
    assert "1 file(s) ingested before (same content): skipped" in out


def test_release_accept_and_drop_a_selection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "loopml.yaml").write_text(SMALL_SPEC)
    p = str(tmp_path)
    for day in (1, 2, 3):
        run(capsys, "ingest", "s", str(small_file(tmp_path / f"d{day}.csv", day, 200)), "-p", p)
    held = []
    for day in (4, 5, 6):
        code, out, _ = run(
            capsys,
            "ingest",
            "s",
            str(small_file(tmp_path / f"t{day}.csv", day, 2)),
            "-p",
            p,
            "--json",
        )
        assert code == 3
        held.append(json.loads(out)["batches"][0]["quarantine_id"])
    code, out, _ = run(capsys, "quarantine", "show", held[0], "-p", p)
    assert f"release it with: loopml quarantine release {held[0]} --accept-row-count" in out
    code, out, _ = run(capsys, "quarantine", "release", held[0], "-p", p)
    assert code == 3 and f"{held[0]} stays held: 2 rows checked again, none landed" in out
    assert f"loopml quarantine release {held[0]} --accept-row-count" in out
    code, out, _ = run(capsys, "quarantine", "release", held[0], "--accept-row-count", "-p", p)
    assert code == 0 and "2 landed" in out and "accepted its row count" in out
    code, _, err = run(capsys, "quarantine", "release", held[1], "--accept-null-rate", "-p", p)
    assert code == 2 and "not held for null_rate" in err

    args = ["quarantine", "drop", "--all-held", "--code", "row_count", "--reason", "tests"]
    code, out, err = run(capsys, *args, "-p", p)
    assert code == 2 and "nothing dropped" in err and held[1] in out and held[2] in out
    code, out, _ = run(capsys, *args, "--yes", "-p", p)
    assert code == 0 and "dropped 2 entries (4 rows): tests" in out
    code, out, _ = run(capsys, "quarantine", "list", "--status", "dropped", "-p", p, "--json")
    dropped = json.loads(out)
    assert {e["id"] for e in dropped} == set(held[1:])
    assert dropped[0]["resolution"] == {
        "reason": "tests",
        "selection": "--all-held --code row_count",
    }
    code, _, err = run(capsys, "quarantine", "drop", "--reason", "x", "-p", p)
    assert code == 2 and "--all-held" in err


def test_data_query_is_read_only_unless_unsafe(
    project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = str(project_dir)
    (project_dir / "f.csv").write_text("\n".join(flights_lines()[:101]) + "\n")
    assert run(capsys, "ingest", "flights", str(project_dir / "f.csv"), "-p", p)[0] == 0
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n2\n")
    code, _, err = run(capsys, "data", "query", f"SELECT * FROM '{outside}'", "-p", p)
    assert code == 2 and "outside the lake" in err and str(outside) in err and "--unsafe" in err
    written = tmp_path / "copy.csv"
    copy = f"COPY (SELECT carrier FROM flights) TO '{written}'"
    code, _, err = run(capsys, "data", "query", copy, "-p", p)
    assert code == 2 and "COPY statements" in err and not written.exists()
    code, out, _ = run(
        capsys,
        "data",
        "query",
        f"SELECT count(*) AS n FROM '{outside}'",
        "--unsafe",
        "-p",
        p,
        "--json",
    )
    assert code == 0 and json.loads(out)["rows"] == [{"n": 2}]
    assert run(capsys, "data", "query", copy, "--unsafe", "-p", p)[0] == 0 and written.exists()
