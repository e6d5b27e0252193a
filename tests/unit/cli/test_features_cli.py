"""`loopml features` and `loopml events` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from loopml.cli import main
from tests.unit.features.test_point_in_time import PROFILES, SPEC, TRIPS, USERS


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    root.mkdir()
    (root / "loopml.yaml").write_text(SPEC)
    for name, text in (("profiles", PROFILES), ("users", USERS), ("trips", TRIPS)):
        (tmp_path / f"{name}.csv").write_text(text)
    return root


def test_features_commands(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = str(root)
    for name in ("profiles", "users", "trips"):
        assert run(capsys, "ingest", name, str(tmp_path / f"{name}.csv"), "-p", p)[0] == 0
    code, out, _ = run(capsys, "features", "show", "-p", p, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["label"] == "fraud" and "avg_1h" in shown["vector"]
    out_file = tmp_path / "train.parquet"
    code, out, _ = run(capsys, "features", "build", "--out", str(out_file), "-p", p, "--json")
    summary = json.loads(out)
    assert code == 0 and summary["rows"] == 5 and summary["label"] == "fraud"
    assert pq.read_metadata(out_file).num_rows == 5
    code, out, _ = run(
        capsys,
        "features",
        "build",
        "--out",
        str(out_file),
        "--as-of",
        "2024-05-01T12:30",
        "-p",
        p,
        "--json",
    )
    assert json.loads(out)["rows"] == 4
    code, out, _ = run(
        capsys,
        "features",
        "build",
        "--out",
        str(out_file),
        "--sample",
        "random:0.5",
        "-p",
        p,
        "--json",
    )
    assert code == 0 and json.loads(out)["rows"] == 3  # half of 5, rounded half up
    code, _, err = run(
        capsys, "features", "build", "--out", str(out_file), "--sample", "sometimes", "-p", p
    )
    assert code == 2 and "--sample" in err
    code, _, err = run(
        capsys, "features", "build", "--out", str(out_file), "--as-of", "soon", "-p", p
    )
    assert code == 2 and "--as-of" in err
    code, out, _ = run(
        capsys, "features", "get", "id=3", "user=a", "t=2024-05-01T10:35:00Z", "amount=10", "-p", p
    )
    assert code == 0 and "user_trips: stale_store (the online store holds nothing" in out
    code, out, _ = run(capsys, "features", "materialize", "-p", p, "--json")
    assert code == 0 and json.loads(out)["lookups"]["info"] == 2
    code, out, _ = run(
        capsys,
        "features",
        "get",
        "id=3",
        "user=a",
        "t=2024-05-01T10:35:00Z",
        "amount=10",
        "-p",
        p,
        "--json",
    )
    vector = json.loads(out)
    assert code == 0 and vector["n_1h"] == 2 and vector["info_country"] == "FR"
    # The store's profile of user a is from 12:00, after this request: not used, and said so.
    assert vector["profile_score"] is None
    assert vector["_flags"] == {"profile": ["newer_than_event"]}
    code, out, _ = run(
        capsys, "features", "get", "id=3", "user=a", "t=2024-05-01T10:35:00Z", "amount=10", "-p", p
    )
    assert code == 0 and "profile: newer_than_event (the store's value is from after" in out
    code, _, err = run(capsys, "features", "get", "amount=lots", "-p", p)
    assert code == 2 and "amount" in err


def test_events_commands(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = str(root)
    code, out, _ = run(
        capsys, "events", "publish", "trips", str(tmp_path / "trips.csv"), "-p", p, "--json"
    )
    assert code == 0 and json.loads(out)["events"] == 6
    code, out, _ = run(capsys, "events", "consume", "trips", "-p", p, "--json")
    summary = json.loads(out)
    assert code == 0 and summary["events"] == 6 and summary["rows_accepted"] == 6
    code, out, _ = run(capsys, "events", "consume", "trips", "-p", p, "--json")
    assert code == 0 and json.loads(out)["events"] == 0
