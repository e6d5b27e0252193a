"""Spec numbers have bounds: no infinities or NaNs that silently turn a check off, no durations
that overflow, and every error names the file, line, key and the whole allowed range."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import loopml.spec as spec_module
from loopml.errors import SpecError
from loopml.spec import parse_spec, spec_json_schema


def error_of(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(text, file="p/loopml.yaml")
    return info.value


CHECKS = "project: x\nsources:\n  f:\n    checks:\n      {line}\n"


@pytest.mark.parametrize("value", ["1e999", ".inf", ".Inf", "-.inf", ".nan", ".NaN", "0.5", "-1"])
def test_row_count_ratio_out_of_range_is_refused_with_the_range(value: str) -> None:
    err = error_of(CHECKS.format(line=f"row_count_ratio: {value}"))
    assert err.message.startswith("p/loopml.yaml:5: sources.f.checks.row_count_ratio: ")
    assert "allowed auto, 0 (off) or a number from 1 to 1,000,000" in err.message
    assert err.details["key"] == "sources.f.checks.row_count_ratio"
    assert len(err.details["problems"]) == 1  # one problem, not one per branch of the union


def test_row_count_ratio_within_range_is_kept() -> None:
    for value, expected in (("auto", "auto"), ("0", 0), ("1", 1), ("2.5", 2.5), ("1e6", 1e6)):
        spec = parse_spec(CHECKS.format(line=f"row_count_ratio: {value}"))
        assert spec.sources["f"].checks.row_count_ratio == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("null_rate_increase: .nan", ".nan is out of range: allowed a number from 0 to 1"),
        ("null_rate_increase: 2", "2 is out of range: allowed a number from 0 to 1"),
        (
            "history_batches: 99999999999999999999999",
            "99999999999999999999999 is out of range: allowed a whole number from 1 to 10,000",
        ),
        ("max_future: -5", "-5.0s is out of range: allowed a duration from 0s to 36525d"),
        ("max_future: 200000d", "200000d is out of range: allowed a duration from 0s to 36525d"),
        ("max_future: 99999999999d", "out of range: a duration is at most 36525d (100 years)"),
        ("max_future: 1.0e+30", "out of range: a duration is at most 36525d (100 years)"),
        ("max_future: .nan", ".nan is not a duration"),
        ("max_future: -.inf", "-.inf is not a duration"),
    ],
)
def test_a_number_out_of_range_names_file_line_key_and_range(line: str, message: str) -> None:
    err = error_of(CHECKS.format(line=line))
    key = line.split(":")[0]
    assert err.message.startswith(f"p/loopml.yaml:5: sources.f.checks.{key}: "), err.message
    assert message in err.message, err.message
    assert (err.details["file"], err.details["line"]) == ("p/loopml.yaml", 5)


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        (
            "loop:\n  triggers:\n    new_rows: 0\n",
            "loop.triggers.new_rows",
            "0 is out of range: allowed a whole number from 1 to 1,000,000,000,000, auto or null",
        ),
        (
            "loop:\n  triggers:\n    schedule: 0\n",
            "loop.triggers.schedule",
            "allowed a duration greater than 0s and at most 36525d",
        ),
        (
            "gate:\n  backtest: -1\n",
            "gate.backtest",
            "allowed a duration greater than 0s and at most 36525d",
        ),
        (
            "serving:\n  fallback:\n    value: .inf\n",
            "serving.fallback.value",
            ".inf is out of range: allowed a finite number",
        ),
        (
            "serving:\n  breaker:\n    cooldown: -1\n",
            "serving.breaker.cooldown",
            "allowed a duration from 0s",
        ),
        (
            "storage:\n  metadata:\n    type: sqlite\n    path: m.db\n    busy_timeout_s: .inf\n",
            "storage.metadata.busy_timeout_s",  # no union tag (".sqlite") in the key
            "allowed a number greater than 0 and at most 3,600",
        ),
        (
            "model:\n  name: m\n  split:\n    seed: -1\n",
            "model.split.seed",
            "allowed a whole number from 0 to 4,294,967,295",
        ),
        (
            "monitoring:\n  alerts:\n    a:\n      metric: error_rate\n      threshold: .nan\n",
            "monitoring.alerts.a.threshold",
            ".nan is out of range: allowed a finite number",
        ),
    ],
)
def test_bounds_hold_in_every_section(text: str, key: str, message: str) -> None:
    err = error_of("project: x\n" + text)
    assert message in err.message, err.message
    assert err.details["key"] == key
    assert err.details["line"] == text.count("\n") + 1  # the last line holds the value
    assert len(err.details["problems"]) == 1


def test_min_history_beyond_history_batches_is_refused() -> None:
    err = error_of(CHECKS.format(line="min_history: 30"))
    assert "min_history (30) is greater than history_batches (20)" in err.message


def test_a_declared_column_range_must_be_finite() -> None:
    text = "project: x\nsources:\n  f:\n    schema:\n      columns:\n        a: {min: .inf}\n"
    err = error_of(text)
    assert err.details["key"] == "sources.f.schema.columns.a.min" and err.details["line"] == 6


def _models() -> list[type[BaseModel]]:
    return [
        v
        for v in vars(spec_module).values()
        if isinstance(v, type) and issubclass(v, BaseModel) and v.__module__.startswith("loopml")
    ]


def _numeric_fields() -> list[tuple[type[BaseModel], str]]:
    found = []
    for model in _models():
        schema = model.model_json_schema(by_alias=True)
        for name, prop in schema.get("properties", {}).items():
            kinds = [prop.get("type")] + [b.get("type") for b in prop.get("anyOf", [])]
            if {"number", "integer"} & {k for k in kinds if isinstance(k, str)}:
                found.append((model, name))
    return found


def test_the_spec_has_numeric_fields_to_check() -> None:
    assert len(_numeric_fields()) > 40


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_no_numeric_field_accepts_an_infinity_or_nan(bad: float) -> None:
    accepted = []
    for model, name in _numeric_fields():
        try:
            model.model_validate({name: bad})
        except ValidationError as exc:
            if any(e["loc"][:1] == (name,) for e in exc.errors()):
                continue
        accepted.append(f"{model.__name__}.{name}")
    assert accepted == []


# Fields whose values are the user's own numbers (a column's range, a metric's bound, an alert's
# threshold, a fallback answer, a seed of the estimator): finite, with no range of their own.
UNBOUNDED = {
    "ColumnSpec.min",
    "ColumnSpec.max",
    "MetricBound.min",
    "MetricBound.max",
    "MetricBound.min_change",
    "MetricBound.max_change",
    "MetricBound.min_change_rel",
    "MetricBound.max_change_rel",
    "AlertRule.threshold",
    "FallbackSpec.value",
}


# Differences in the units of a metric (an RMSE may be in the thousands): never negative.
LOW_ONLY = {"GateSpec.max_slice_regression", "PerformanceSpec.max_drop"}


def _bounds(prop: dict[str, Any]) -> set[str]:
    keys = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
    found = keys & set(prop)
    for branch in prop.get("anyOf", []):
        found |= _bounds(branch)
    return found


def test_every_other_numeric_field_is_bounded_on_both_sides_in_the_json_schema() -> None:
    unbounded = []
    for model, name in _numeric_fields():
        prop = model.model_json_schema(by_alias=True)["properties"][name]
        bounds = _bounds(prop)
        has_low = bool(bounds & {"minimum", "exclusiveMinimum"})
        has_high = bool(bounds & {"maximum", "exclusiveMaximum"})
        qualified = f"{model.__name__}.{name}"
        if qualified in UNBOUNDED or (qualified in LOW_ONLY and has_low):
            continue
        if not (has_low and has_high):
            unbounded.append(qualified)
    assert unbounded == []


def test_the_json_schema_shows_the_bounds() -> None:
    defs = json.loads(spec_json_schema())["$defs"]
    ratio = defs["CheckSpec"]["properties"]["row_count_ratio"]["anyOf"]
    assert {"type": "number", "minimum": 1, "maximum": 1_000_000} in ratio
    nulls = defs["CheckSpec"]["properties"]["null_rate_increase"]
    assert (nulls["minimum"], nulls["maximum"]) == (0, 1)
    future = defs["CheckSpec"]["properties"]["max_future"]
    assert (future["minimum"], future["maximum"]) == (0, timedelta(days=36525).total_seconds())
    assert defs["LoopSpec"]["properties"]["interval"]["exclusiveMinimum"] == 0
