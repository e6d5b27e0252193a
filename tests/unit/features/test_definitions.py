"""Resolving feature definitions: errors that name the feature, the column and the valid
names; features shown from declared types before any data; a label named like a column."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from loopml import Project
from loopml.cli import main
from loopml.errors import SpecError

DECLARED = """\
project: t
sources:
  matches:
    format: csv
    timestamp: date
    schema:
      columns:
        home: {type: string}
        away: {type: string}
        home_goals: {type: int64}
        away_goals: {type: int64}
        note: {type: string}
entities:
  team: [home]
features:
  event: {source: matches}
  request: [date, home, away]
  windows:
    form:
      source: matches
      entity: team
      windows: [24h, 365d]
      tile: 1h
      aggregates: {played: count, scored: mean(home_goals)}
  derived:
    derby: "home == away"
  label:
    name: home_win
    expr: "home_goals > away_goals"
"""

ROWS = """\
date,home,away,home_goals,away_goals,note
2001-08-01T15:00:00Z,A,B,2,1,
2001-08-08T15:00:00Z,B,A,0,0,
2001-08-15T15:00:00Z,A,C,3,1,
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_features_show_works_before_the_first_ingest_from_declared_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "loopml.yaml").write_text(DECLARED)
    code, out, err = run(capsys, "features", "show", "-p", str(tmp_path), "--json")
    assert code == 0, err
    shown = {f["feature"]: f for f in json.loads(out)["features"]}
    assert shown["form_played_24h"]["type"] == "int"  # the window keeps its spelling
    assert shown["form_scored_365d"]["type"] == "float"
    assert shown["derby"]["type"] == "bool" and json.loads(out)["label"] == "home_win"


def test_a_label_named_like_a_column_is_a_clear_error_at_spec_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = DECLARED.replace("name: home_win", "name: home_goals").replace(
        "home_goals > away_goals", "home_goals"
    )
    (tmp_path / "loopml.yaml").write_text(spec)
    code, _, err = run(capsys, "spec", "check", "-p", str(tmp_path))
    assert code == 2
    assert "home_goals" in err and "label" in err and "home_goals_label" in err


def test_a_label_named_like_a_column_fails_the_feature_set_not_the_build(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    spec = DECLARED.replace("name: home_win", "name: home_goals")
    p = make_project(spec)
    (tmp_path / "m.csv").write_text(ROWS)
    p.data.ingest("matches", [tmp_path / "m.csv"])
    with pytest.raises(SpecError) as info:
        p.features.build()
    assert info.value.details["key"] == "features.label.name"
    assert "column 'home_goals'" in info.value.message


def test_unknown_columns_list_the_valid_ones(make_project: Callable[..., Project]) -> None:
    p = make_project(DECLARED.replace("request: [date, home, away]", "request: [date, home, zzz]"))
    with pytest.raises(SpecError) as info:
        p.features.feature_set  # noqa: B018
    message = info.value.message
    assert "'zzz'" in message and "only its declared columns" in message
    assert "away_goals" in message and "home_goals" in message  # the valid names


def test_a_column_with_no_value_yet_says_to_declare_its_type(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    spec = DECLARED.replace("        note: {type: string}\n", "").replace(
        "request: [date, home, away]", "request: [date, home, away, note]"
    )
    p = make_project(spec)
    (tmp_path / "m.csv").write_text(ROWS)
    p.data.ingest("matches", [tmp_path / "m.csv"])
    with pytest.raises(SpecError, match=r"has held no value yet.*schema\.columns\.note\.type"):
        p.features.feature_set  # noqa: B018


def test_spec_check_checks_features_against_the_data_and_says_what_is_not_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = DECLARED.replace("        home: {type: string}\n", "").split("    schema:")[0]
    spec += "features:\n  event: {source: matches}\n  request: [date, home]\n"
    (tmp_path / "loopml.yaml").write_text(spec)
    code, out, _ = run(capsys, "spec", "check", "-p", str(tmp_path), "--json")
    checked = json.loads(out)
    assert code == 0 and checked["valid"] is True
    assert checked["features_checked"] is False
    assert any("matches" in n and "no schema yet" in n for n in checked["notes"])
    assert any("features.label is not set" in n for n in checked["notes"])


def test_a_training_set_before_any_data_says_to_ingest_first(
    make_project: Callable[..., Project],
) -> None:
    from loopml.errors import UsageError

    p = make_project(DECLARED)
    with pytest.raises(UsageError, match=r"no rows of source .matches.*loopml ingest matches"):
        p.features.build()


def test_a_label_computed_only_from_model_inputs_is_refused(
    make_project: Callable[..., Project],
) -> None:
    leaky = DECLARED.replace(
        "request: [date, home, away]", "request: [date, home, away, home_goals, away_goals]"
    )
    p = make_project(leaky)
    with pytest.raises(SpecError) as info:
        p.features.feature_set  # noqa: B018
    assert info.value.details["key"] == "features.label.expr"
    assert "away_goals, home_goals" in info.value.message and "the answer" in info.value.message
    # Kept as request columns but out of the model's inputs, they are fine.
    fine = leaky.replace("  label:", "  vector: [home, away, derby]\n  label:")
    assert make_project(fine, folder="fine").features.feature_set.label is not None
