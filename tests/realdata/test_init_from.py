"""`loopml init --from` on real files it has never seen: the Bundesliga matches (1963-2009, an
unnamed row-number column, history before 1970), elec2 (no time column) and Bank Marketing
(anonymised columns, no time). Each draft is valid as written, ingests its own sample, and
says what it chose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopml import Project
from loopml.cli import main
from loopml.spec import load_spec
from tests.bundesliga import raw_csv
from tests.conftest import DATASETS

pytestmark = pytest.mark.realdata


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    code = main([*args, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else {}, captured.err


def _dataset(name: str) -> Path:
    path = DATASETS / name
    if not path.exists():
        pytest.skip(f"the real data sets are not here ({DATASETS}); CI has them")
    return path


@pytest.fixture
def bundesliga(tmp_path: Path) -> Path:
    data = raw_csv()
    path = tmp_path / "matches" / "bundesliga.csv"
    path.parent.mkdir()
    path.write_bytes(data)
    return path


def test_bundesliga(bundesliga: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "league"
    code, summary, err = _run(capsys, "init", str(root), "--from", str(bundesliga))
    assert code == 0, err
    chosen = {c["key"]: c for c in summary["draft"]["choices"]}
    spec = load_spec(root)
    src = spec.sources["bundesliga"]
    assert src.timestamp == "Date"
    assert src.csv.column_names is not None and src.csv.column_names[0] == "row_id"
    assert src.schema_.columns["row_id"].role == "id"
    # A natural key, checked unique on the 14,018 matches; the two without a date are named.
    assert src.primary_key == ["Date", "HomeTeam"]
    assert "2 rows have a null in it" in chosen["sources.bundesliga.primary_key"]["why"]
    assert src.entity_keys == ["HomeTeam", "AwayTeam"]
    # Entity keys are identifiers, never a closed domain: promoted teams keep arriving.
    assert src.schema_.columns["HomeTeam"].role == "id"
    assert src.schema_.columns["HomeTeam"].categories is None
    assert src.checks.not_before is None  # the history goes back to 1963
    assert spec.features is not None and spec.features.label is None
    # About 300 matches a year: a monitoring window of about 200 matches is months, not a day
    # (the monitor chooses it from the prediction log; the draft previews it).
    assert spec.monitoring.window is None
    assert "about 365d" in chosen["monitoring.window"]["value"]

    code, checked, _ = _run(capsys, "spec", "check", "-p", str(root))
    assert code == 0 and checked["features_checked"] is True
    code, ingested, err = _run(capsys, "ingest", "bundesliga", "-p", str(root))
    assert code == 3, err  # the two matches without a date are quarantined, and only they
    assert (ingested["rows_accepted"], ingested["rows_quarantined"]) == (14016, 2)
    assert ingested["reasons"] == [{"code": "null", "column": "Date", "count": 2}]
    with Project.open(root) as p:
        assert (
            p.data.query("SELECT min(Date) AS d FROM bundesliga").to_pylist()[0]["d"].year == 1963
        )


def test_elec2_has_no_time_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = _dataset("elec2.csv")
    root = tmp_path / "market"
    code, summary, err = _run(capsys, "init", str(root), "--from", str(sample))
    assert code == 0, err
    chosen = {c["key"]: c for c in summary["draft"]["choices"]}
    assert chosen["sources.elec2.timestamp"]["value"] == "none"
    assert "date, day named like one" in chosen["sources.elec2.timestamp"]["why"]
    assert chosen["sources.elec2.path"]["value"].endswith("elec2.csv")  # not the folder's *.csv
    spec = load_spec(root)
    assert spec.model is not None and spec.model.split.method == "random"
    assert "class == 'UP'" in (root / "loopml.yaml").read_text()
    code, ingested, err = _run(capsys, "ingest", "elec2", "-p", str(root))
    assert code == 0 and ingested["rows_accepted"] == 45312, err


def test_bank_marketing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = _dataset("bank_marketing.csv")
    root = tmp_path / "bank"
    code, _, err = _run(capsys, "init", str(root), "--from", str(sample))
    assert code == 0, err
    spec = load_spec(root)
    src = spec.sources["bank_marketing"]
    assert src.primary_key == [] and src.timestamp is None
    assert src.schema_.columns["V2"].type == "string" and src.schema_.columns["V1"].type == "int64"
    assert spec.model is not None and "Class" not in spec.model.slices
    text = (root / "loopml.yaml").read_text()
    assert 'expr: "Class == 2"' in text
    code, ingested, err = _run(capsys, "ingest", "bank_marketing", "-p", str(root))
    assert code == 0 and ingested["rows_accepted"] == 45211, err
