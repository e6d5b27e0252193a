"""The expression language of derived features and labels: types, syntax tree, tokens and parser.

An expression is parsed here into a tree of :class:`Node`, type-checked and lowered by
``_expr_check`` into a tree of typed operations, and then run by ``_expr_vector`` (whole Arrow
columns) or ``_expr_row`` (one row of Python scalars). Nothing is ever passed to ``eval``.

Grammar, loosest binding first::

    expr     := expr 'or' expr | expr 'and' expr | 'not' expr
              | sum (('==' | '!=' | '<' | '<=' | '>' | '>=') sum | ['not'] 'in' list)?
    sum      := product (('+' | '-') product)*
    product  := unary (('*' | '/' | '//' | '%') unary)*
    unary    := '-' unary | primary
    primary  := number | string | 'true' | 'false' | 'null' | name | `any name`
              | function '(' (expr | list) (',' (expr | list))* ')' | '(' expr ')'
    list     := '[' literal (',' literal)* ']' | '(' literal (',' literal)* ')'

>>> parse("clip(log1p(distance) * 2, 0, 20)").op
'call'
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from loopml.errors import ExpressionError

ExprType = Literal["int", "float", "bool", "string", "timestamp", "duration"]
EXPR_TYPES: tuple[ExprType, ...] = ("int", "float", "bool", "string", "timestamp", "duration")

MAX_LENGTH = 10_000
# Every evaluator recurses once per level of the tree; these keep far below Python's stack limit.
MAX_DEPTH = 100
MAX_NESTING = 100

KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
_INT64_MAX = 2**63 - 1

_ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "duration": pa.duration("us"),
}


def arrow_type(t: ExprType) -> pa.DataType:
    """The Arrow type of an expression type.

    >>> arrow_type("timestamp")
    TimestampType(timestamp[us, tz=UTC])
    """
    try:
        return _ARROW_TYPES[t]
    except KeyError:
        raise ExpressionError(
            f"unknown expression type {t!r}; use one of {', '.join(EXPR_TYPES)}",
            details={"type": str(t)},
        ) from None


def expr_type_of(t: pa.DataType) -> ExprType:
    """The expression type that an Arrow column of type ``t`` is read as.

    >>> expr_type_of(pa.int32()), expr_type_of(pa.timestamp("ns", tz="Europe/Paris"))
    ('int', 'timestamp')
    """
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    if pa.types.is_duration(t):
        return "duration"
    raise ExpressionError(
        f"Arrow type {t} has no expression type; expressions read integers, floats, booleans, "
        "strings, timestamps, dates and durations",
        details={"type": str(t)},
    )


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """One node of an expression tree.

    Parsed trees use ``op`` for the syntax (``"lit"``, ``"col"``, ``"+"``, ``"call"``, ...); checked
    trees use one op per concrete operation (``"add_i"``, ``"log1p"``, ...) and set ``type``.
    ``value`` holds the literal, column name, function name or parameter (for a parsed operator:
    the position of its symbol); ``pos`` and ``end`` the span of source text the node came from.
    """

    op: str
    args: tuple[Node, ...] = ()
    value: Any = None
    type: str = ""
    pos: int = 0
    end: int = 0
    depth: int = 1

    def walk(self) -> Iterator[Node]:
        """This node and every node below it."""
        yield self
        for a in self.args:
            yield from a.walk()

    def columns(self) -> frozenset[str]:
        """The names of the columns this tree reads."""
        return frozenset(n.value for n in self.walk() if n.op == "col")


def error_at(text: str, pos: int, message: str, **details: Any) -> ExpressionError:
    """An :class:`ExpressionError` whose message ends with the line of ``text`` and a caret."""
    return ExpressionError(
        f"{message} (position {pos})\n{caret(text, pos)}",
        details={"expression": text, "position": pos, **details},
    )


def caret(text: str, pos: int, width: int = 70) -> str:
    """The line of ``text`` holding ``pos``, cut to ``width`` characters, and a caret under it."""
    start = text.rfind("\n", 0, pos) + 1
    stop = text.find("\n", pos)
    line = text[start : len(text) if stop < 0 else stop]
    col = pos - start
    if len(line) > width:
        left = max(0, min(col - width // 2, len(line) - width))
        shown = line[left : left + width]
        prefix = "..." if left else ""
        suffix = "..." if left + width < len(line) else ""
        line, col = prefix + shown + suffix, col - left + len(prefix)
    return f"  {line}\n  {' ' * col}^"


# --- tokens ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "num", "str", "name", "quoted", "kw", "op", "end"
    value: Any
    pos: int
    end: int


_OPERATORS = (
    "//",
    "==",
    "!=",
    "<=",
    ">=",
    "<",
    ">",
    "+",
    "-",
    "*",
    "/",
    "%",
    "(",
    ")",
    "[",
    "]",
    ",",
)
_MISTAKES = {
    "=": "'=' is not an operator; compare with '=='",
    "&&": "use 'and' instead of '&&'",
    "||": "use 'or' instead of '||'",
    "<>": "use '!=' instead of '<>'",
    "!": "use 'not' instead of '!'",
    "&": "use 'and' instead of '&'",
    "|": "use 'or' instead of '|'",
    "**": "there is no power operator; use exp(), log() or sqrt()",
}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"', "`": "`"}


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an ``"end"`` token."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            tokens.append(_number(text, i))
            i = tokens[-1].end
        elif c in "'\"`":
            value, end = _quoted(text, i)
            tokens.append(Token("quoted" if c == "`" else "str", value, i, end))
            i = end
        elif c.isascii() and (c.isalpha() or c == "_"):
            j = i + 1
            while j < n and text[j].isascii() and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            tokens.append(Token("kw" if word in KEYWORDS else "name", word, i, j))
            i = j
        else:
            for mistake in ("&&", "||", "<>", "**"):
                if text.startswith(mistake, i):
                    raise error_at(text, i, _MISTAKES[mistake])
            op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
            if op is None:
                hint = _MISTAKES.get(c, f"unexpected character {c!r}")
                raise error_at(text, i, hint)
            tokens.append(Token("op", op, i, i + len(op)))
            i += len(op)
    tokens.append(Token("end", None, n, n))
    return tokens


def _number(text: str, i: int) -> Token:
    n, j = len(text), i
    while j < n and text[j].isdigit():
        j += 1
    is_float = False
    if j < n and text[j] == ".":
        is_float, j = True, j + 1
        while j < n and text[j].isdigit():
            j += 1
    if j < n and text[j] in "eE":
        k = j + 1
        if k < n and text[k] in "+-":
            k += 1
        if k < n and text[k].isdigit():
            is_float, j = True, k
            while j < n and text[j].isdigit():
                j += 1
    if j < n and (text[j].isalpha() or text[j] == "_"):
        raise error_at(text, j, f"unexpected {text[j]!r} after the number {text[i:j]!r}")
    raw = text[i:j]
    if not is_float:
        return Token("num", int(raw), i, j)
    value = float(raw)
    if value in (float("inf"), float("-inf")):
        raise error_at(text, i, f"the number {raw} is too large for a float")
    return Token("num", value, i, j)


def _quoted(text: str, i: int) -> tuple[str, int]:
    quote, n, j = text[i], len(text), i + 1
    out: list[str] = []
    while j < n:
        c = text[j]
        if c == quote:
            return "".join(out), j + 1
        if c == "\\":
            if j + 1 >= n:
                break
            e = text[j + 1]
            if e == "u":
                digits = text[j + 2 : j + 6]
                if len(digits) < 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                    raise error_at(text, j, "\\u needs four hexadecimal digits")
                out.append(chr(int(digits, 16)))
                j += 6
                continue
            if e not in _ESCAPES:
                raise error_at(text, j, f"unknown escape \\{e}; write \\\\ for a backslash")
            out.append(_ESCAPES[e])
            j += 2
            continue
        out.append(c)
        j += 1
    what = "name" if quote == "`" else "string"
    raise error_at(text, i, f"unterminated {what}: no closing {quote}")


# --- parser ------------------------------------------------------------------------------------

_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
# Binding powers: a higher number binds tighter.
_INFIX = {"or": 1, "and": 2, "in": 4, "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6}
_INFIX.update(dict.fromkeys(_COMPARISONS, 4))
_NOT_BP, _CMP_BP, _UNARY_BP = 3, 4, 7


def parse(text: str) -> Node:
    """The syntax tree of ``text``; raises :class:`ExpressionError` with the position of a mistake.

    >>> tree = parse("a + 2 * b")
    >>> tree.op, [n.op for n in tree.args]
    ('+', ['col', '*'])
    """
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"the expression is {len(text):,} characters long; the limit is {MAX_LENGTH:,}",
            details={"expression": text[:200] + "...", "position": MAX_LENGTH},
        )
    if not text.strip():
        raise error_at(text, 0, "the expression is empty")
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.nesting = 0

    def parse(self) -> Node:
        node = self.expr(0)
        tok = self.peek()
        if tok.kind != "end":
            hint = ""
            if tok.kind == "name" and tok.value.lower() in KEYWORDS:
                hint = f"; keywords are lowercase: {tok.value.lower()}"
            raise self.error(tok, f"unexpected {self.show(tok)} after a complete expression{hint}")
        return node

    # helpers

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def is_op(self, tok: Token, *ops: str) -> bool:
        return tok.kind == "op" and tok.value in ops

    def is_kw(self, tok: Token, word: str) -> bool:
        return tok.kind == "kw" and tok.value == word

    def expect(self, op: str, opener: Token) -> Token:
        tok = self.peek()
        if not self.is_op(tok, op):
            raise self.error(
                tok,
                f"expected {op!r} to close the {opener.value!r} at position {opener.pos}, "
                f"found {self.show(tok)}",
            )
        return self.take()

    def show(self, tok: Token) -> str:
        return (
            "the end of the expression" if tok.kind == "end" else repr(self.text[tok.pos : tok.end])
        )

    def error(self, tok: Token, message: str, **details: Any) -> ExpressionError:
        return error_at(self.text, tok.pos, message, **details)

    def node(
        self,
        op: str,
        args: tuple[Node, ...],
        value: Any,
        pos: int,
        end: int,
        type: str = "",
        at: int | None = None,
    ) -> Node:
        depth = 1 + max((a.depth for a in args), default=0)
        if depth > MAX_DEPTH:
            raise error_at(
                self.text,
                pos if at is None else at,
                f"the expression is nested more than {MAX_DEPTH} levels deep "
                "(each operator in a chain like a + b + c counts as a level)",
            )
        return Node(op, args, value, type, pos, end, depth)

    def number(self, tok: Token, value: int | float) -> int | float:
        if isinstance(value, int) and not -_INT64_MAX - 1 <= value <= _INT64_MAX:
            raise self.error(tok, f"the integer {value} does not fit in 64 bits")
        return value

    def enter(self, tok: Token) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise self.error(tok, f"the expression is nested more than {MAX_NESTING} levels deep")

    # grammar

    def expr(self, min_bp: int) -> Node:
        self.enter(self.peek())
        left = self.prefix()
        while True:
            tok = self.peek()
            negated = tok.kind == "kw" and tok.value == "not" and self.is_kw(self.peek(1), "in")
            key = "in" if negated else tok.value
            if tok.kind not in ("op", "kw") or key not in _INFIX:
                break
            bp = _INFIX[key]
            if bp <= min_bp:
                break
            self.take()
            if negated:
                self.take()
            if key == "in":
                items = self.literal_list("in")
                op = "not in" if negated else "in"
                left = self.node(op, (left, items), tok.pos, left.pos, items.end, at=tok.pos)
            else:
                right = self.expr(bp)
                left = self.node(key, (left, right), tok.pos, left.pos, right.end, at=tok.pos)
            if bp == _CMP_BP:
                nxt = self.peek()
                chained = nxt.kind in ("op", "kw") and (
                    nxt.value in _COMPARISONS
                    or nxt.value == "in"
                    or (nxt.value == "not" and self.is_kw(self.peek(1), "in"))
                )
                if chained:
                    raise self.error(
                        nxt, "comparisons cannot be chained; write 'a < b and b < c' instead"
                    )
        self.nesting -= 1
        return left

    def prefix(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            value = self.number(tok, tok.value)
            return self.node("lit", (), value, tok.pos, tok.end, _literal_type(value))
        if tok.kind == "str":
            return self.node("lit", (), tok.value, tok.pos, tok.end, "string")
        if tok.kind == "quoted":
            if not tok.value:
                raise self.error(tok, "an empty `` is not a column name")
            return self.node("col", (), tok.value, tok.pos, tok.end)
        if tok.kind == "kw":
            if tok.value in ("true", "false"):
                return self.node("lit", (), tok.value == "true", tok.pos, tok.end, "bool")
            if tok.value == "null":
                return self.node("lit", (), None, tok.pos, tok.end, "null")
            if tok.value == "not":
                operand = self.expr(_NOT_BP)
                return self.node("not", (operand,), None, tok.pos, operand.end)
            raise self.error(tok, f"unexpected {tok.value!r}; it needs a value on its left")
        if tok.kind == "name":
            if self.is_op(self.peek(), "("):
                return self.call(tok)
            return self.node("col", (), tok.value, tok.pos, tok.end)
        if self.is_op(tok, "-"):
            nxt = self.peek()
            if nxt.kind == "num":
                self.take()
                value = self.number(tok, -nxt.value)
                return self.node("lit", (), value, tok.pos, nxt.end, _literal_type(value))
            operand = self.expr(_UNARY_BP)
            return self.node("neg", (operand,), None, tok.pos, operand.end)
        if self.is_op(tok, "("):
            inner = self.expr(0)
            if self.is_op(self.peek(), ","):
                return self.list_rest(tok, inner, ")")
            self.expect(")", tok)
            return inner
        if self.is_op(tok, "["):
            return self.list_rest(tok, None, "]")
        if tok.kind == "end":
            raise self.error(tok, "the expression ends where a value was expected")
        raise self.error(tok, f"unexpected {self.show(tok)} where a value was expected")

    def call(self, name: Token) -> Node:
        opener = self.take()
        args: list[Node] = []
        if not self.is_op(self.peek(), ")"):
            while True:
                args.append(self.expr(0))
                if not self.is_op(self.peek(), ","):
                    break
                self.take()
        close = self.expect(")", opener)
        return self.node("call", tuple(args), name.value, name.pos, close.end)

    def literal_list(self, after: str) -> Node:
        tok = self.take()
        if not self.is_op(tok, "(", "["):
            raise self.error(tok, f"'{after}' needs a list of values, e.g. x in ('a', 'b')")
        if self.is_op(self.peek(), ")", "]"):
            raise self.error(self.peek(), "the list is empty")
        first = self.expr(0)
        if self.is_op(self.peek(), ","):
            return self.list_rest(tok, first, ")" if tok.value == "(" else "]")
        close = self.expect(")" if tok.value == "(" else "]", tok)
        self.check_literal(first)
        return self.node("list", (first,), None, tok.pos, close.end)

    def list_rest(self, opener: Token, first: Node | None, closer: str) -> Node:
        if first is None:
            if self.is_op(self.peek(), closer):
                raise self.error(self.peek(), "the list is empty")
            first = self.expr(0)
        items = [first]
        while self.is_op(self.peek(), ","):
            self.take()
            if self.is_op(self.peek(), closer):
                break  # a trailing comma
            items.append(self.expr(0))
        close = self.expect(closer, opener)
        for item in items:
            self.check_literal(item)
        return self.node("list", tuple(items), None, opener.pos, close.end)

    def check_literal(self, item: Node) -> None:
        if item.op != "lit":
            raise error_at(
                self.text,
                item.pos,
                "list elements must be literal values (numbers, strings, true or false)",
            )


def _literal_type(value: int | float) -> str:
    return "int" if isinstance(value, int) else "float"
