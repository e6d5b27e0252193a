"""A compiled expression: parsed and type-checked once, then run on columns or on one row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import pyarrow as pa

from loopml.errors import ExpressionError
from loopml.features._expr import ExprType, Node, parse
from loopml.features._expr_check import check
from loopml.features._expr_row import compile_row
from loopml.features._expr_vector import evaluate


def compile_expression(text: str, types: Mapping[str, ExprType]) -> Expression:
    """Parse and type-check ``text`` against the column ``types``; raise
    :class:`~loopml.errors.ExpressionError` naming what is wrong and where.

    >>> e = compile_expression("if(amount > 100, 'large', country)", {"amount": "int",
    ...                        "country": "string"})
    >>> e.type, sorted(e.columns)
    ('string', ['amount', 'country'])
    >>> e.row({"amount": 250, "country": "FR"}), e.row({"amount": None, "country": "FR"})
    ('large', 'FR')
    """
    tree = parse(text)
    typed = check(tree, types, text)
    columns = typed.columns()
    return Expression(text, typed, {c: types[c] for c in sorted(columns)})


class Expression:
    """A checked expression: ``evaluate`` runs it over Arrow columns, ``row`` over one row.

    Both give the same values. Build it with :func:`compile_expression`.
    """

    __slots__ = ("_row", "_tree", "columns", "input_types", "text", "type")

    text: str
    type: ExprType
    columns: frozenset[str]
    input_types: dict[str, ExprType]

    def __init__(self, text: str, tree: Node, input_types: Mapping[str, ExprType]) -> None:
        self.text = text
        self.type = cast(ExprType, tree.type)
        self.columns = frozenset(input_types)
        self.input_types = dict(input_types)
        self._tree = tree
        self._row = compile_row(tree)

    def evaluate(self, columns: Mapping[str, pa.Array | pa.ChunkedArray], n_rows: int) -> pa.Array:
        """The values for ``n_rows`` rows, as an Arrow array of :func:`arrow_type` (self.type).

        Columns may be any Arrow array of a matching kind (any integer width, any timestamp unit
        and zone, dictionary-encoded strings, ...); only the columns the expression reads are used.
        """
        return evaluate(self._tree, columns, n_rows, self.input_types, self.text)

    def row(self, values: Mapping[str, Any]) -> Any:
        """The value for one row of Python scalars (timestamps and durations as int microseconds).

        >>> compile_expression("x // 2", {"x": "int"}).row({"x": -7})
        -4
        """
        try:
            return self._row(values)
        except KeyError as exc:
            missing = exc.args[0] if exc.args else "?"
            raise ExpressionError(
                f"column '{missing}' is missing from the row given to expression {self.text!r}",
                details={"expression": self.text, "column": missing},
            ) from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise self._bad_row(values, exc) from None

    def _bad_row(self, values: Mapping[str, Any], exc: Exception) -> ExpressionError:
        expected = {
            "int": (int,),
            "float": (float, int),
            "bool": (bool,),
            "string": (str,),
            "timestamp": (int,),
            "duration": (int,),
        }
        for name, t in self.input_types.items():
            v = values.get(name)
            if v is not None and not isinstance(v, expected[t]):
                return ExpressionError(
                    f"column '{name}' is {t} in expression {self.text!r}, but the row has "
                    f"{type(v).__name__} {v!r}",
                    details={"expression": self.text, "column": name},
                )
        return ExpressionError(  # pragma: no cover - every value had its declared type
            f"expression {self.text!r} failed on the row: {exc}", details={"expression": self.text}
        )

    def to_dict(self) -> dict[str, Any]:
        """The expression as plain data: its text, result type and the columns it reads."""
        return {"expression": self.text, "type": self.type, "columns": dict(self.input_types)}

    def __repr__(self) -> str:
        return f"Expression({self.text!r}, type={self.type!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Expression):
            return NotImplemented
        return (self.text, self.input_types) == (other.text, other.input_types)

    def __hash__(self) -> int:
        return hash((self.text, tuple(sorted(self.input_types.items()))))

    def __reduce__(self) -> tuple[Any, ...]:
        # Closures do not pickle; recompiling from the text does (e.g. to ship to Ray workers).
        return compile_expression, (self.text, self.input_types)
