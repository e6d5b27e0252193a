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


def test_the_init_template_is_valid_and_generic() -> None:
    text = example_spec("shop")
    spec = parse_spec(text)
    assert spec.project == "shop" and spec.sources == {}  # nothing declared it has not seen
    assert spec.storage.metadata.type == "sqlite"
    assert "flight" not in text.lower()


def test_the_template_examples_parse() -> None:
    # The commented sections are a reference: they must be valid once a user uncomments them.
    from loopml.spec._template import EXAMPLE_SECTIONS, commented

    assert commented(EXAMPLE_SECTIONS) in example_spec("shop").replace("{{", "{")
    spec = parse_spec("project: shop\n" + EXAMPLE_SECTIONS)
    src = spec.sources["orders"]
    assert src.schema_.columns["order_id"].role == "id"
    assert src.schema_.columns["country"].categories == "open"
    assert src.checks.max_future == timedelta(days=1)
    assert spec.features is not None and spec.features.label is not None


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


def _defaults(node: object, path: str = "") -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []
    if isinstance(node, dict):
        if "default" in node:
            found.append((path, node["default"]))
        for k, v in node.items():
            found += _defaults(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _defaults(v, f"{path}[{i}]")
    return found


def test_json_schema_shows_durations_as_the_spec_spells_them_and_the_spec_reads_them() -> None:
    import re

    schema = json.loads(spec_json_schema())
    check = schema["$defs"]["CheckSpec"]["properties"]["max_future"]
    assert check["default"] == "1d"
    durations = [
        (path, value)
        for path, value in _defaults(schema)
        if isinstance(value, str) and re.fullmatch(r"P[0-9TDWHMS.]+|[0-9.]+(ms|s|m|h|d|w)", value)
    ]
    assert len(durations) > 10
    for path, value in durations:
        assert not str(value).startswith("P"), (path, value)  # no ISO 8601 in the schema
        parse_duration(value)  # every default shown is a duration the spec reads
    # A duration field's schema admits the spelling and says how to write it.
    assert re.search(check["pattern"], "36h") and re.search(check["pattern"], "PT6H")
    assert not re.search(check["pattern"], "soon")


def test_iso_durations_are_read_too() -> None:
    assert parse_duration("P1D") == timedelta(days=1)
    assert parse_duration("PT0.2S") == timedelta(seconds=0.2)
    assert parse_duration("P1DT12H") == timedelta(hours=36)
    spec = parse_spec("project: x\nsources:\n  f:\n    checks: {max_future: PT6H}\n")
    assert spec.sources["f"].checks.max_future == timedelta(hours=6)
    for bad in ("P", "PT", "P1DT", "1 day"):
        with pytest.raises(ValueError):
            parse_duration(bad)


WINDOW_SPEC = """\
project: x
sources:
  s: {format: csv, timestamp: t}
entities:
  who: [k]
features:
  event: {source: s}
  request: [t, k]
  windows:
    recent:
      source: s
      entity: who
      windows: [24h, 90m, 1d]
      tile: 30m
      aggregates: {n: count}
"""


def test_window_features_keep_the_users_spelling_of_the_window() -> None:
    spec = parse_spec(WINDOW_SPEC.replace("[24h, 90m, 1d]", "[24h, 90m, 2w]"))
    assert spec.features is not None
    assert spec.features.all_names() == ["t", "k", "recent_n_24h", "recent_n_90m", "recent_n_2w"]
    # The spelling survives a round trip through the spec's JSON form.
    dumped = spec.features.model_dump(mode="json")
    assert dumped["windows"]["recent"]["windows"] == ["24h", "90m", "2w"]


def test_two_spellings_of_one_window_are_refused() -> None:
    err = error_of(WINDOW_SPEC)
    assert err.details["key"] == "features.windows.recent"
    assert "24h and 1d are the same length" in err.message


def test_unknown_model_features_list_the_valid_names() -> None:
    spec = (
        WINDOW_SPEC.replace("[24h, 90m, 1d]", "[24h]") + "model:\n  name: m\n  features: [k, kk]\n"
    )
    err = error_of(spec)
    assert err.details["key"] == "model.features"
    assert "'kk' is not a feature (features: t, k, recent_n_24h)" in err.message
