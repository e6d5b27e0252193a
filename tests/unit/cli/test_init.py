"""`loopml init --from FILE`: a whole loopml.yaml drafted from a sample of the user's data, valid
as written, that says what it chose and what the user must decide; and the schema file it
points at."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from loopml import Project
from loopml.cli import main
from loopml.spec import load_spec, spec_json_schema


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _orders(n: int = 600) -> list[dict[str, object]]:
    """Orders of 30 customers in 4 countries over 60 days, one every 2.4 hours."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        rows.append(
            {
                "order_id": f"O{100000 + i * 7}",
                "created_at": (start + timedelta(hours=2.4 * i)).isoformat(),
                "customer_id": f"C{(i * 7) % 30:03d}",
                "country": ["FR", "DE", "ES", "IT"][i % 4],
                "amount": round(10 + (i * 37) % 200 + 0.5, 2),
                "returned": "yes" if i % 9 == 0 else "no",
                "comment": None,
            }
        )
    return rows


def _csv(path: Path, rows: list[dict[str, object]], *, index: bool = False) -> Path:
    cols = list(rows[0])
    lines = [(",".join(['""', *cols]) if index else ",".join(cols))]
    for i, r in enumerate(rows):
        values = ["" if r[c] is None else str(r[c]) for c in cols]
        lines.append(",".join([str(i + 1), *values] if index else values))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_init_from_a_csv_drafts_a_valid_spec_and_says_what_it_chose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = _csv(tmp_path / "orders.csv", _orders())
    code, out, err = run(capsys, "init", str(tmp_path / "shop"), "--from", str(sample), "--json")
    assert code == 0, err
    summary = json.loads(out)
    chosen = {c["key"]: c for c in summary["draft"]["choices"]}
    root = tmp_path / "shop"
    spec = load_spec(root)
    src = spec.sources["orders"]
    assert src.timestamp == "created_at" and src.format == "csv"
    assert src.primary_key == ["order_id"]  # unique on the sample, and said so
    assert "unique on the sample's 600 rows" in chosen["sources.orders.primary_key"]["why"]
    assert src.entity_keys == ["customer_id"]
    cols = src.schema_.columns
    assert cols["order_id"].role == "id" and cols["customer_id"].role == "id"
    assert cols["amount"].type == "float64" and cols["country"].type == "string"
    assert "comment" not in cols  # no value in the sample: left untyped, said in a comment
    assert spec.entities["customer"].keys == ["customer_id"]
    features = spec.features
    assert features is not None and features.label is None  # the user decides it
    assert "order_id" not in features.request and "customer_id" in features.request
    (window,) = features.windows.values()
    # 20 orders of a customer take about 20 * 30 * 2.4 h = 60 days: windows of that order.
    sizes = [w.total_seconds() / 86400 for w in window.windows]
    assert 5 <= sizes[0] < sizes[1] <= 45  # bounded by half the sample's span
    assert {"day_of_week", "hour"} <= set(features.derived)
    # The monitor chooses its window from the prediction log (one logic, with the log's real
    # rate); the draft previews it: 200 events at one every 2.4 hours is 20 days, so 30d.
    assert spec.monitoring.window is None
    assert "about 30d" in chosen["monitoring.window"]["value"]
    assert spec.loop.triggers.alerts == ["inputs_moved", "decay"]
    assert set(spec.monitoring.alerts) == {"inputs_moved", "decay"}
    assert spec.model is not None and spec.model.split.method == "time"
    text = (root / "loopml.yaml").read_text()
    assert "TO DECIDE" in text and "# label:" in text and "returned ==" in text
    # It writes the JSON Schema its first lines point at: the same as `spec json-schema`.
    assert (root / ".loopml" / "spec.schema.json").read_text() == spec_json_schema() + "\n"
    assert "$schema=.loopml/spec.schema.json" in text
    # spec check passes on the untouched draft, naming the one thing left to decide.
    code, out, _ = run(capsys, "spec", "check", "-p", str(root), "--json")
    checked = json.loads(out)
    line = text.splitlines().index("  # label:") + 1
    assert code == 0 and checked["notes"] == [
        "features.label is not set: `loopml train` needs it (what the model predicts); "
        f"fill in the placeholder at loopml.yaml:{line}"
    ]
    assert checked["features_checked"] is True  # against the declared types, before any data


def test_init_from_prints_its_choices_and_what_to_decide(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = _csv(tmp_path / "orders.csv", _orders())
    code, out, _ = run(capsys, "init", str(tmp_path / "shop"), "--from", str(sample))
    assert code == 0
    assert "what the draft chose" in out and "monitoring.window" in out
    assert "to decide before training" in out and "features.label" in out
    assert "loopml ingest orders" in out


def test_the_draft_ingests_its_sample_and_builds_a_training_set_once_the_label_is_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = _csv(tmp_path / "orders.csv", _orders())
    root = tmp_path / "shop"
    assert run(capsys, "init", str(root), "--from", str(sample))[0] == 0
    assert run(capsys, "features", "show", "-p", str(root))[0] == 0  # before any data
    code, out, err = run(capsys, "ingest", "orders", "-p", str(root), "--json")
    assert code == 0, err + out
    assert json.loads(out)["rows_accepted"] == 600
    text = (root / "loopml.yaml").read_text()
    label = "  label:\n    name: was_returned\n    expr: \"returned == 'yes'\"\n    delay: 1d\n"
    text = text.replace("  # label:\n", label, 1)
    assert "returned" in yaml.safe_load(text)["features"]["label"]["expr"]
    (root / "loopml.yaml").write_text(text)
    # The label reads `returned`, a request column: the draft's own check refuses the leak.
    code, _, err = run(capsys, "spec", "check", "-p", str(root))
    assert code == 2 and "the model would be given the answer" in err
    request = yaml.safe_load(text)["features"]["request"]
    kept = ", ".join(c for c in request if c != "returned")
    (root / "loopml.yaml").write_text(text.replace(f"[{', '.join(request)}]", f"[{kept}]"))
    code, out, err = run(capsys, "spec", "check", "-p", str(root), "--json")
    assert code == 0 and json.loads(out)["notes"] == [], err
    with Project.open(root) as p:
        training = p.features.build()
    assert training.table.num_rows > 500 and "was_returned" in training.table.column_names


def test_an_unnamed_leading_index_column_is_named_and_not_a_feature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = _csv(tmp_path / "orders.csv", _orders(), index=True)  # as pandas writes it
    root = tmp_path / "shop"
    code, out, err = run(capsys, "init", str(root), "--from", str(sample), "--json")
    assert code == 0, err
    src = load_spec(root).sources["orders"]
    assert src.csv.column_names is not None and src.csv.column_names[0] == "row_id"
    assert src.schema_.columns["row_id"].role == "id"
    assert src.primary_key == ["order_id"]  # a natural key before a row number
    features = load_spec(root).features
    assert features is not None and "row_id" not in features.request
    code, out, _ = run(capsys, "ingest", "orders", "-p", str(root), "--json")
    assert code == 0 and json.loads(out)["rows_accepted"] == 600
    with Project.open(root) as p:
        assert p.data.query("SELECT max(row_id) AS n FROM orders").to_pylist() == [{"n": 600}]


def test_jsonl_and_parquet_samples_and_data_with_no_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _orders(300)
    jsonl = tmp_path / "orders.jsonl"
    jsonl.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    assert run(capsys, "init", str(tmp_path / "a"), "--from", str(jsonl))[0] == 0
    assert load_spec(tmp_path / "a").sources["orders"].format == "jsonl"

    untimed = [{k: v for k, v in r.items() if k != "created_at"} for r in rows]
    pq.write_table(pa.Table.from_pylist(untimed), tmp_path / "clients.parquet")
    code, out, _ = run(
        capsys, "init", str(tmp_path / "b"), "--from", str(tmp_path / "clients.parquet"), "--json"
    )
    assert code == 0
    chosen = {c["key"]: c for c in json.loads(out)["draft"]["choices"]}
    assert chosen["sources.clients.timestamp"]["value"] == "none"
    spec = load_spec(tmp_path / "b")
    assert spec.sources["clients"].timestamp is None
    assert spec.model is not None and spec.model.split.method == "random"
    assert spec.features is not None and spec.features.windows == {}


def test_init_from_never_overwrites_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = _csv(tmp_path / "orders.csv", _orders())
    root = tmp_path / "shop"
    assert run(capsys, "init", str(root))[0] == 0
    before = (root / "loopml.yaml").read_text()
    code, _, err = run(capsys, "init", str(root), "--from", str(sample))
    assert code == 1 and "--force" in err
    assert (root / "loopml.yaml").read_text() == before
    assert run(capsys, "init", str(root), "--from", str(sample), "--force")[0] == 0
    assert "drafted by `loopml init --from`" in (root / "loopml.yaml").read_text()
    code, _, err = run(capsys, "init", str(tmp_path / "x"), "--from", str(tmp_path / "nope.csv"))
    assert code == 2 and "no such file" in err
