from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from loopml.errors import SpecError
from loopml.spec import example_spec, load_spec, parse_duration, parse_spec, spec_json_schema


def error_of(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    return info.value


def test_the_init_example_is_valid() -> None:
    spec = parse_spec(example_spec("flights"))
    assert spec.project == "flights"
    src = spec.sources["flights"]
    assert src.primary_key == ["time_hour", "carrier", "flight"]
    assert src.schema_.columns["carrier"].unseen == "quarantine"
    assert src.checks.max_future == timedelta(days=1)
    assert spec.storage.metadata.type == "sqlite"


def test_unknown_key_names_key_line_and_suggestion() -> None:
    err = error_of("project: x\nsources:\n  flights:\n    formt: csv\n")
    assert err.details["line"] == 4
    assert err.details["key"] == "sources.flights.formt"
    assert "did you mean 'format'" in err.message
    assert err.message.startswith("loopml.yaml:4:")


def test_bad_value_names_key_and_line() -> None:
    err = error_of("project: x\nsources:\n  f:\n    checks:\n      max_future: soon\n")
    assert (err.details["key"], err.details["line"]) == ("sources.f.checks.max_future", 5)
    assert "duration" in err.message


def test_model_rule_errors_name_the_column() -> None:
    err = error_of(
        "project: x\nsources:\n  f:\n    schema:\n      columns:\n        a: {min: 5, max: 1}\n"
    )
    assert err.details["key"] == "sources.f.schema.columns.a"
    assert err.details["line"] == 6
    assert "greater than max" in err.message


def test_storage_url_errors_name_the_role() -> None:
    err = error_of("project: x\nstorage:\n  metadata: mysql://host/db\n")
    assert err.details["key"] == "storage.metadata" and err.details["line"] == 3


def test_all_problems_are_listed() -> None:
    err = error_of("project: 1bad\nsources:\n  f:\n    formt: csv\n")
    assert len(err.details["problems"]) == 2
    assert "also" in err.message


def test_yaml_syntax_error_has_line() -> None:
    err = error_of("project: x\n  bad: [\n")
    assert err.details["line"] == 2


def test_duplicate_key_is_an_error() -> None:
    assert "appears twice" in error_of("project: x\nproject: y\n").message


def test_missing_project_key() -> None:
    assert "required key is missing" in error_of("sources: {}\n").message


def test_source_names_must_be_table_names() -> None:
    err = error_of("project: x\nsources:\n  _hidden: {}\n")
    assert "source name" in err.message


def test_environment_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST_T", "db.internal")
    spec = parse_spec("project: x\nstorage:\n  metadata: postgresql://u@${PGHOST_T}/db?schema=s1\n")
    assert spec.storage.metadata.type == "postgres"
    assert spec.storage.metadata.url == "postgresql://u@db.internal/db"  # type: ignore[union-attr]
    assert spec.storage.metadata.schema_ == "s1"  # type: ignore[union-attr]
    default = parse_spec("project: x\nstorage:\n  lake: ${NOT_SET_T:-/data/lake}\n")
    assert default.storage.lake.url == "/data/lake"
    err = error_of("project: x\nstorage:\n  lake: ${NOT_SET_T}\n")
    assert err.details["line"] == 3 and "NOT_SET_T" in err.message


def test_urls_select_backends() -> None:
    spec = parse_spec(
        "project: x\nstorage:\n  online: redis://127.0.0.1:6379/2?prefix=p\n"
        "  events: sqlite:///ev.db\n  artifacts: s3://bucket/models\n"
    )
    assert spec.storage.online.type == "redis" and spec.storage.online.prefix == "p"  # type: ignore[union-attr]
    assert spec.storage.events.type == "sqlite" and spec.storage.events.path == "ev.db"  # type: ignore[union-attr]
    assert spec.storage.artifacts.url == "s3://bucket/models"


def test_load_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="loopml init"):
        load_spec(tmp_path)
    (tmp_path / "loopml.yaml").write_bytes(b"project: \xff\n")
    with pytest.raises(SpecError, match="UTF-8"):
        load_spec(tmp_path)


def test_durations() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("2w") == timedelta(weeks=2)
    assert parse_duration(30) == timedelta(seconds=30)
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_json_schema_is_valid_json_with_every_section() -> None:
    schema = json.loads(spec_json_schema())
    assert schema["title"].startswith("loopml")
    assert {"project", "storage", "sources"} <= set(schema["properties"])
    assert "SourceSpec" in schema["$defs"]
