"""Hostile YAML: alias bombs, recursive aliases and deep nesting are refused fast, naming the
file and the line, before anything expands them."""

from __future__ import annotations

import time

import pytest

from loopml.errors import SpecError
from loopml.spec import parse_spec
from loopml.spec._yaml import MAX_ALIAS_VALUES, MAX_DEPTH, load_yaml

# "Billion laughs": 354 bytes that expand to 9**9 strings.
BOMB = """\
project: x
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_an_alias_bomb_is_refused_fast_naming_file_and_line() -> None:
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        parse_spec(BOMB, file="bomb.yaml")
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, elapsed
    err = info.value
    # Line 7 holds the first alias whose expansion passes the limit: *e, 66,430 values each.
    assert err.message.startswith("bomb.yaml:7: "), err.message
    assert "*e" in err.message and f"{MAX_ALIAS_VALUES:,}" in err.message
    assert err.details == {"file": "bomb.yaml", "line": 7, "key": None}


def test_aliases_within_the_limit_still_share_values() -> None:
    doc = load_yaml(
        "base: &cols {type: float64, min: 0}\nnested:\n  a: *cols\n  b: *cols\n", "f.yaml"
    )
    assert doc.data["nested"] == {"a": {"type": "float64", "min": 0}, "b": doc.data["base"]}
    # Lines are those of the keys where the alias is used.
    assert doc.lines[("nested", "b")] == 4


@pytest.mark.parametrize(
    ("text", "line", "anchor"),
    [
        ("project: x\nsources: &s\n  f: *s\n", 3, "s"),
        ("project: x\nl: &l [1, [2, *l]]\n", 2, "l"),
        ("project: x\n? &k [*k]\n: 1\n", 2, "k"),
    ],
)
def test_a_recursive_alias_is_an_error_naming_the_line(text: str, line: int, anchor: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert info.value.message.startswith(f"loopml.yaml:{line}: "), info.value.message
    assert f"*{anchor}" in info.value.message and "recursive" in info.value.message


def test_deep_nesting_is_an_error_not_a_recursion_error() -> None:
    deep = "project: x\nn: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(SpecError) as info:
        parse_spec(deep)
    assert info.value.message.startswith("loopml.yaml:2: "), info.value.message
    assert f"{MAX_DEPTH}" in info.value.message
    # A depth far beyond any real spec is still fine.
    ok = "project: x\nn: " + "[" * 20 + "]" * 20 + "\n"
    assert load_yaml(ok, "f").data["n"] == [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]


def test_complex_keys_are_refused_before_they_are_built() -> None:
    with pytest.raises(SpecError, match="keys must be plain scalars"):
        parse_spec("project: x\n? [a, b]\n: 1\n")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2024-13-45", "month must be in 1..12"),
        ("!!python/object:os.system x", "could not determine a constructor"),
        ("!!binary xyz", "base64"),
        ("!!int abc", "invalid literal"),
        ("!!bool maybe", "'maybe' cannot be read: not a valid !!bool"),
        ("!!timestamp x", "'x' cannot be read: not a valid !!timestamp"),
    ],
)
def test_a_scalar_its_tag_cannot_hold_is_an_error_naming_key_and_line(
    value: str, problem: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(f"project: x\nsources:\n  f:\n    checks:\n      not_before: {value}\n")
    assert info.value.message.startswith("loopml.yaml:5: key 'sources.f.checks.not_before': "), (
        info.value.message
    )
    assert problem in info.value.message
    assert info.value.details["key"] == "sources.f.checks.not_before"


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b"])
def test_a_control_character_is_an_error_naming_the_line(char: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(f"project: x\nsources:\n  f: {{format: csv{char}}}\n")
    assert info.value.message.startswith("loopml.yaml:3: invalid YAML: character "), info.value
    assert "\n" not in info.value.message
