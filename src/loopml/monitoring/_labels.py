"""Labels in one spelling from training to monitoring.

A model's labels are profiled at training, sent back as feedback and compared in every window;
each step must read them alike, or a boolean profiled as ``false/true`` meets feedback read as
``0/1`` and every window shows label drift that is not there. So:

- a binary label is ``0`` or ``1`` everywhere (profile bins ``"0"``/``"1"``, the feedback log's
  number). Feedback may spell it as a boolean, 0/1, or the words true/false and yes/no, in any
  case; anything else is refused at the door with the reason.
- a multiclass label is the model's class, spelled as the class is (``str`` of an integer class
  without a decimal point); feedback must name one of the model's classes (a different case is
  read as the class when that is unambiguous).
- a regression label is a finite number; a ranking label a relevance grade (a number >= 0).

>>> LabelDomain("binary").read("Yes"), LabelDomain("binary").read(False)
(1, 0)
>>> LabelDomain("multiclass", ("DOWN", "UP")).read("up")
'UP'
>>> LabelDomain("regression").read("seven")
Traceback (most recent call last):
...
ValueError: 'seven' is not a number: the model predicts a number (regression)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

TRUE_WORDS = ("1", "1.0", "true", "yes")
FALSE_WORDS = ("0", "0.0", "false", "no")
_BINARY = {**dict.fromkeys(TRUE_WORDS, 1), **dict.fromkeys(FALSE_WORDS, 0)}
TASKS = ("binary", "multiclass", "regression", "ranking")


def class_name(value: Any) -> str:
    """The spelling of a class: integers (also integral floats) without a decimal point, as
    Arrow casts a class column to text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return str(value).strip() if isinstance(value, str) else str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class LabelDomain:
    """What a label of the model may be, and its one spelling (``read``)."""

    task: str
    # the model's classes: multiclass (None: not known yet), or a binary model's two names when
    # they are words (the second is the positive class)
    classes: tuple[str, ...] | None = None

    def describe(self) -> str:
        if self.task == "binary":
            named = _named(self.classes or ())
            words = f"{self.classes[1]} or {self.classes[0]}, " if named and self.classes else ""
            return f"{words}true or false (also 1/0, yes/no)"
        if self.task == "multiclass":
            return (
                "one of the classes " + ", ".join(self.classes) if self.classes else "a class name"
            )
        if self.task == "ranking":
            return "a relevance grade (a number, 0 or more)"
        return "a number"

    def read(self, value: Any) -> int | float | str:
        """The label in its one spelling; a :class:`ValueError` says why it is not a label."""
        if isinstance(value, dict | list):
            raise ValueError(f"a label is a single value, not {type(value).__name__}")
        if self.task == "binary":
            return self._binary(value)
        if self.task == "multiclass":
            return self._class(value)
        number = (
            _number(value)
            if not (self.task == "ranking" and isinstance(value, bool))
            else (float(value))
        )
        if number is None or not math.isfinite(number):
            what = "a finite number" if number is not None else "a number"
            raise ValueError(
                f"{value!r} is not {what}: the model predicts "
                + (
                    "a relevance grade (ranking)"
                    if self.task == "ranking"
                    else "a number (regression)"
                )
            )
        if self.task == "ranking" and number < 0:
            raise ValueError(f"{value!r}: a relevance grade is 0 or more")
        return number

    def _binary(self, value: Any) -> int:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int | float) and value in (0, 1):
            return int(value)
        if isinstance(value, str):
            key = value.strip().lower()
            named = _named(self.classes or ())
            if named is not None and key in named:
                return named.index(key)
            if key in _BINARY:
                return _BINARY[key]
        raise ValueError(f"{value!r} is not a binary label: send {self.describe()}")

    def _class(self, value: Any) -> str:
        name = class_name(value)
        if not name:
            raise ValueError("the label is empty")
        if self.classes is None or name in self.classes:
            return name
        folded = [c for c in self.classes if c.lower() == name.lower()]
        if len(folded) == 1:
            return folded[0]
        raise ValueError(f"{value!r} is not a class of this model: send {self.describe()}")


def binary_strings(values: pa.Array | pa.ChunkedArray, classes: Sequence[Any] = ()) -> pa.Array:
    """Binary labels as the profile spells them, ``"0"``/``"1"`` (null where there is none or
    it cannot be read), from booleans, numbers (above 0.5 is positive), the words
    :class:`LabelDomain` reads, or the model's own two class names (the second is positive)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    t = values.type
    if pa.types.is_boolean(t):
        truth = values
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        truth = pc.greater(pc.cast(values, pa.float64()), 0.5)
    else:
        text = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(values, pa.string())))
        yes, no = list(TRUE_WORDS), list(FALSE_WORDS)
        named = _named(classes)
        if named is not None:
            no.append(named[0])
            yes.append(named[1])
        positive = pc.is_in(text, value_set=pa.array(yes))
        negative = pc.is_in(text, value_set=pa.array(no))
        truth = pc.if_else(positive, True, pc.if_else(negative, False, None))
    return pc.if_else(truth, "1", "0")


def binary_truth(label: Any, classes: Sequence[Any]) -> Any:
    """Which binary labels are the positive class (null where there is no label), however
    they are spelled: 1/0, true/false, yes/no, or the model's two class names (the feedback log
    holds 1/0)."""
    return pc.equal(binary_strings(label, classes), "1")


def binary_name(name: str, classes: Sequence[Any] = ()) -> str:
    """A profile's spelling of a binary class (``"true"``, ``"1.0"``, a class name) as
    ``"0"``/``"1"``."""
    key = name.strip().lower()
    named = _named(classes)
    if named is not None and key in named:
        return str(named.index(key))
    return str(_BINARY.get(key, name))


def _named(classes: Sequence[Any]) -> tuple[str, str] | None:
    """A binary model's two class names in lower case (negative, positive), when they are
    words rather than 0/1."""
    if len(classes) != 2:
        return None
    names = tuple(class_name(c).lower() for c in classes)
    if set(names) <= set(_BINARY):
        return None
    return names[0], names[1]
