"""Schema inference from one file: categories only on evidence, identifiers recognized, empty
columns left untyped until data arrives, nulls allowed unless the column is a key, and the
declarations `role: id` and `categories: open`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from loopml import Project
from loopml.data import infer_schema
from loopml.spec import SchemaPolicy


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _players(start: int, n_players: int, games: int) -> list[str]:
    """Rows of a game log: each player (an id and a name) plays `games` games in one of 4 teams."""
    rows = []
    for g in range(games):
        for p in range(start, start + n_players):
            day = 1 + (g % 28)
            rows.append(
                f"2021-03-{day:02d}T12:00:00Z,P{p:04d},Player {p} Smith,{'ABCD'[p % 4]},{g}"
            )
    return rows


HEAD = "t,player_id,player_name,team,points"


def test_identifier_columns_are_not_categories_and_later_files_land_without_warnings(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project("project: t\nsources:\n  games: {format: csv}\n")
    (first,) = p.data.ingest("games", [_csv(tmp_path / "a.csv", HEAD, _players(0, 40, 25))])
    assert first.status == "landed"
    schema = p.data.schema("games").schema
    for name in ("player_id", "player_name"):
        col = schema.column(name)
        assert col is not None and col.role == "id" and col.categories is None, name
    team = schema.column("team")
    assert team is not None and team.categories == ["A", "B", "C", "D"] and team.role is None
    # New players next month: no warning on any row.
    (second,) = p.data.ingest("games", [_csv(tmp_path / "b.csv", HEAD, _players(40, 30, 10))])
    assert second.status == "landed" and second.warnings == []
    assert p.data.schema_diff("games").changes == []


def test_categories_are_not_inferred_from_a_handful_of_rows_per_value() -> None:
    # 600 rows, 30 values: 20 rows per value on average, but a third of them seen once or twice.
    common = [f"c{i}" for i in range(20) for _ in range(28)]
    rare = [f"r{i}" for i in range(10) for _ in range(4)]
    table = pa.table({"kind": pa.array(common + rare)})
    (kind,) = infer_schema(table, policy=SchemaPolicy()).columns
    assert kind.categories is None
    assert "fewer than" in kind.observed["categories"]


def test_values_still_appearing_late_in_the_file_are_not_a_closed_domain() -> None:
    # Each value is seen 30 times, but new ones keep arriving until the end of the file.
    values = [f"v{i // 30}" for i in range(1200)]
    times = pa.array(range(1200), pa.timestamp("s", tz="UTC"))
    table = pa.table({"t": times, "shop": pa.array(values)})
    schema = infer_schema(table, policy=SchemaPolicy(), timestamp="t")
    shop = schema.column("shop")
    assert shop is not None and shop.categories is None
    assert "later half" in shop.observed["categories"]


def test_a_closed_domain_with_plenty_of_evidence_is_categorical() -> None:
    table = pa.table({"colour": pa.array(["red", "green", "blue"] * 40)})
    (colour,) = infer_schema(table, policy=SchemaPolicy()).columns
    assert colour.categories == ["blue", "green", "red"]


def test_unique_text_and_row_numbers_are_identifiers() -> None:
    table = pa.table(
        {
            "": pa.array(range(1, 101)),  # an unnamed row number, as pandas and R write them
            "ticket": pa.array([f"T-{i * 7919 % 100003}" for i in range(100)]),
            "amount": pa.array([float(i) * 1.5 for i in range(100)]),
        }
    )
    row, ticket, amount = infer_schema(table, policy=SchemaPolicy()).columns
    assert row.role == "id" and (row.min, row.max) == (None, None)  # ids grow: no range
    assert ticket.role == "id"
    assert amount.role is None and amount.max is not None


def test_declared_role_and_open_categories_override_inference() -> None:
    policy = SchemaPolicy.model_validate(
        {"columns": {"team": {"categories": "open"}, "code": {"role": "id"}}}
    )
    table = pa.table({"team": pa.array(["a", "b"] * 50), "code": pa.array([1, 2, 3, 4] * 25)})
    team, code = infer_schema(table, policy=policy).columns
    assert team.categories is None
    assert code.role == "id" and (code.min, code.max) == (None, None)


def test_nulls_are_allowed_unless_the_column_is_a_key(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project(
        "project: t\nsources:\n  s:\n    format: csv\n    timestamp: t\n    primary_key: [k]\n"
    )
    rows = [f"2021-01-01T00:00:{i:02d}Z,{i},{i * 2},x{i % 3}" for i in range(50)]
    p.data.ingest("s", [_csv(tmp_path / "a.csv", "t,k,v,c", rows)])
    schema = p.data.schema("s").schema
    assert {c.name: c.nullable for c in schema.columns} == {
        "t": False,
        "k": False,
        "v": True,
        "c": True,
    }
    # A later gap in v and c is real data: it lands.
    (r,) = p.data.ingest(
        "s",
        [
            _csv(
                tmp_path / "b.csv",
                "t,k,v,c",
                ["2021-01-02T00:00:00Z,100,NA,", "2021-01-02T00:00:01Z,101,4,x1"],
            )
        ],
    )
    assert (r.status, r.rows_accepted, r.rows_quarantined) == ("landed", 2, 0)


def test_an_empty_column_stays_untyped_until_data_arrives(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project("project: t\nsources:\n  s: {format: csv}\n")
    p.data.ingest("s", [_csv(tmp_path / "a.csv", "a,note", [f"{i}," for i in range(30)])])
    note = p.data.schema("s").schema.column("note")
    assert note is not None and note.type == "null" and note.nullable
    (r,) = p.data.ingest("s", [_csv(tmp_path / "b.csv", "a,note", ["31,5", "32,", "33,7"])])
    assert (r.status, r.rows_accepted) == ("landed", 3)
    assert r.schema_changes == ["column 'note' typed int64 by its first values"]
    assert p.data.schema("s").schema.column("note").type == "int64"  # type: ignore[union-attr]
    rows = p.data.query("SELECT a, note FROM s WHERE note IS NOT NULL ORDER BY a").to_pylist()
    assert rows == [{"a": 31, "note": 5}, {"a": 33, "note": 7}]


def test_entity_keys_are_identifiers_not_categories() -> None:
    # A season of a league: 16 teams, each on 15 rows, all seen early. As evidence for a closed
    # domain that is plenty, but the teams are what the rows are about: promoted teams arrive
    # next season, and every one of their rows would be "unseen".
    teams = [f"team {i}" for i in range(16)]
    table = pa.table(
        {
            "home": [teams[i % 16] for i in range(240)],
            "away": [teams[(i + 3) % 16] for i in range(240)],
            "weather": [["sun", "rain"][i % 2] for i in range(240)],
        }
    )
    schema = infer_schema(table, policy=SchemaPolicy(), entity_keys=["home", "away"])
    home, away, weather = (schema.column(n) for n in ("home", "away", "weather"))
    assert home.role == "id" and home.categories is None
    assert away.role == "id" and away.categories is None
    assert weather.role is None and weather.categories == ["rain", "sun"]
