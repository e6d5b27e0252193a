"""Type checking: a parsed tree and the column types in, a tree of concrete typed operations out.

Overloads are resolved here, once: ``a + b`` becomes ``add_i``, ``add_f``, ``concat`` or a
timestamp shift; an int meeting a float gets an explicit ``float_of_int``; ``clip`` becomes
``least(greatest(...))``. Both evaluators then implement each operation without looking at types
again. A literal ``null`` has the internal type ``"null"`` until its context gives it a type, and a
strict operation on a null literal is folded to a typed null; so is any operation whose operands are
all literals (computed once, by the row evaluator).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from loopml.errors import ExpressionError
from loopml.features._expr import EXPR_TYPES, KEYWORDS, Node, error_at
from loopml.features._expr_row import compile_row

NON_STRICT = frozenset({"if", "coalesce", "is_null", "and", "or"})
_NUMERIC = frozenset({"int", "float"})
_ORDERED = frozenset({"int", "float", "string", "timestamp", "duration"})
_HASHABLE = frozenset({"int", "float", "bool", "string"})
_UTC_NAMES = frozenset({"UTC", "Etc/UTC"})

_US = {"seconds": 1_000_000, "minutes": 60_000_000, "hours": 3_600_000_000, "days": 86_400_000_000}
_DATE_PARTS = ("year", "month", "day", "hour", "minute", "day_of_week", "day_of_year")
_INT_OPS = {"+": "add_i", "-": "sub_i", "*": "mul_i", "//": "floordiv_i", "%": "mod_i"}
_FLOAT_OPS = {"+": "add_f", "-": "sub_f", "*": "mul_f", "//": "floordiv_f", "%": "mod_f"}
_CMP_OPS = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_MISMATCH = {
    "+": "{l} is {lt}, cannot be added to {rt}",
    "-": "{l} is {lt}, cannot subtract {rt} from it",
    "*": "{l} is {lt}, cannot be multiplied by {rt}",
    "/": "{l} is {lt}, cannot be divided by {rt}",
    "//": "{l} is {lt}, cannot be divided by {rt}",
    "%": "{l} is {lt}, cannot take the remainder of dividing by {rt}",
}

# name: (fewest arguments, most arguments or None for any number, how it is called)
SIGNATURES: dict[str, tuple[int, int | None, str]] = {
    "if": (3, 3, "if(condition, value_if_true, value_otherwise)"),
    "coalesce": (1, None, "coalesce(a, b, ...)"),
    "is_null": (1, 1, "is_null(x)"),
    "abs": (1, 1, "abs(number or duration)"),
    "floor": (1, 1, "floor(number)"),
    "ceil": (1, 1, "ceil(number)"),
    "round": (1, 2, "round(number[, digits])"),
    "sqrt": (1, 1, "sqrt(number)"),
    "exp": (1, 1, "exp(number)"),
    "log": (1, 1, "log(number)"),
    "log1p": (1, 1, "log1p(number)"),
    "clip": (3, 3, "clip(x, lo, hi)"),
    "least": (1, None, "least(a, b, ...)"),
    "greatest": (1, None, "greatest(a, b, ...)"),
    "bucketize": (2, 2, "bucketize(number, [edge, ...])"),
    "hash_bucket": (2, 2, "hash_bucket(x, n)"),
    "cross": (1, None, "cross(a, b, ...)"),
    "lower": (1, 1, "lower(string)"),
    "upper": (1, 1, "upper(string)"),
    "length": (1, 1, "length(string)"),
    "int": (1, 1, "int(x)"),
    "float": (1, 1, "float(x)"),
    "string": (1, 1, "string(x)"),
    **{p: (1, 2, f"{p}(timestamp[, 'Time/Zone'])") for p in _DATE_PARTS},
    **{u: (1, 1, f"{u}(number)") for u in _US},
    **{f"to_{u}": (1, 1, f"to_{u}(duration)") for u in _US},
}


def check(tree: Node, types: Mapping[str, str], text: str) -> Node:
    """The typed operation tree of a parsed ``tree``, reading columns of the given ``types``."""
    for name, t in types.items():
        if t not in EXPR_TYPES:
            raise ExpressionError(
                f"column '{name}' has type {t!r}; expression types are {', '.join(EXPR_TYPES)}",
                details={"expression": text, "column": name, "type": str(t)},
            )
    typed = _Checker(text, types).visit(tree)
    if typed.type == "null":
        raise error_at(
            text,
            tree.pos,
            "the expression is always null, so it has no type; write e.g. float(null)",
        )
    return typed


def lit(value: Any, type_: str, src: Node) -> Node:
    return Node("lit", (), value, type_, src.pos, src.end)


def make(op: str, type_: str, args: Sequence[Node], src: Node, value: Any = None) -> Node:
    """An operation node, folded to a literal when its result is known before seeing any data."""
    if op not in NON_STRICT and any(a.op == "lit" and a.value is None for a in args):
        return lit(None, type_, src)
    node = Node(op, tuple(args), value, type_, src.pos, src.end)
    if args and all(a.op == "lit" for a in args):
        return lit(compile_row(node)({}), type_, src)
    return node


class _Checker:
    def __init__(self, text: str, types: Mapping[str, str]) -> None:
        self.text = text
        self.types = types

    # reporting

    def error(
        self, node: Node, message: str, at: int | None = None, **details: Any
    ) -> ExpressionError:
        return error_at(self.text, node.pos if at is None else at, message, **details)

    def what(self, node: Node) -> str:
        snippet = self.text[node.pos : node.end]
        return repr(snippet if len(snippet) <= 40 else snippet[:37] + "...")

    def blame(self, *nodes: Node) -> dict[str, Any]:
        for n in nodes:
            if n.op == "col":
                return {"column": n.value}
        return {}

    # types

    def unify(self, nodes: Sequence[Node], what: str) -> str:
        t, first = "null", None
        for n in nodes:
            if n.type == "null" or n.type == t:
                continue
            if t == "null":
                t, first = n.type, n
            elif {t, n.type} == {"int", "float"}:
                t = "float"
            else:
                assert first is not None
                raise self.error(
                    n,
                    f"{self.what(n)} is {n.type}, but {what} needs values of one type and "
                    f"{self.what(first)} is {t}",
                    **self.blame(n, first),
                )
        return t

    def coerce(self, n: Node, t: str) -> Node:
        if n.type == t or t == "null":
            return n
        if n.type == "null":
            return lit(None, t, n)
        if n.type == "int" and t == "float":
            return make("float_of_int", "float", [n], n)
        raise AssertionError(f"cannot coerce {n.type} to {t}")  # pragma: no cover

    def expect(self, n: Node, allowed: frozenset[str], fname: str, what: str) -> None:
        if n.type != "null" and n.type not in allowed:
            raise self.error(
                n,
                f"{fname}() needs {what}, but {self.what(n)} is {n.type}",
                function=fname,
                **self.blame(n),
            )

    # nodes

    def visit(self, node: Node) -> Node:
        op = node.op
        if op == "lit":
            return lit(node.value, node.type, node)
        if op == "col":
            return self.column(node)
        if op == "call":
            return self.call(node)
        if op == "list":
            raise self.error(node, "a list can only follow 'in' or be the edges of bucketize()")
        if op in ("and", "or", "not"):
            args = [self.visit(a) for a in node.args]
            for a in args:
                if a.type not in ("bool", "null"):
                    raise self.error(
                        a, f"{self.what(a)} is {a.type}, but '{op}' needs bool", **self.blame(a)
                    )
            return make(op, "bool", [self.coerce(a, "bool") for a in args], node)
        if op == "neg":
            arg = self.visit(node.args[0])
            if arg.type == "null":
                return arg
            if arg.type not in ("int", "float", "duration"):
                raise self.error(
                    node, f"{self.what(arg)} is {arg.type} and cannot be negated", **self.blame(arg)
                )
            return make("neg_f" if arg.type == "float" else "neg_i", arg.type, [arg], node)
        if op in _CMP_OPS:
            return self.compare(node)
        if op in ("in", "not in"):
            return self.membership(node)
        return self.arithmetic(node)

    def column(self, node: Node) -> Node:
        name = node.value
        if name in self.types:
            return Node("col", (), name, self.types[name], node.pos, node.end)
        hint = ""
        close = difflib.get_close_matches(name, list(self.types), n=1, cutoff=0.6)
        if name.lower() in KEYWORDS:
            hint = f"; keywords are lowercase: {name.lower()}"
        elif name in SIGNATURES:
            hint = f"; {name} is a function, call it as {SIGNATURES[name][2]}"
        elif close:
            hint = f"; did you mean '{close[0]}'?"
        elif self.types:
            known = ", ".join(sorted(self.types)[:10])
            hint = f"; known columns: {known}{', ...' if len(self.types) > 10 else ''}"
        raise self.error(node, f"unknown column '{name}'{hint}", column=name)

    def arithmetic(self, node: Node) -> Node:
        op = node.op
        a, b = (self.visit(x) for x in node.args)
        if a.type == "null" and b.type == "null":
            return lit(None, "null", node)
        if "null" in (a.type, b.type):
            known = b.type if a.type == "null" else a.type
            for partner in dict.fromkeys((known, "duration", "int")):
                lt = partner if a.type == "null" else a.type
                rt = partner if b.type == "null" else b.type
                found = _arithmetic_result(op, lt, rt)
                if found is not None:
                    return lit(None, found[1], node)
        found = _arithmetic_result(op, a.type, b.type)
        if found is None:
            message = _MISMATCH[op].format(l=self.what(a), lt=a.type, rt=b.type)
            if {a.type, b.type} & {"string", "bool"} and {a.type, b.type} & _NUMERIC:
                message += "; convert with int(), float() or string()"
            raise self.error(node, message, at=node.value, **self.blame(a, b))
        name, type_ = found
        if name == "div" or name.endswith("_f"):
            a = make("float_of_int", "float", [a], a) if a.type != "float" else a
            b = make("float_of_int", "float", [b], b) if b.type != "float" else b
        return make(name, type_, [a, b], node)

    def compare(self, node: Node) -> Node:
        a, b = (self.visit(x) for x in node.args)
        if "null" in (a.type, b.type):
            return lit(None, "bool", node)
        types = {a.type, b.type}
        ok = types <= _NUMERIC or len(types) == 1
        if types == {"bool"} and node.op not in ("==", "!="):
            ok = False
        if not ok:
            hint = "; only == and != apply to bool" if types == {"bool"} else ""
            raise self.error(
                node,
                f"{self.what(a)} is {a.type}, cannot be compared with {b.type}{hint}",
                at=node.value,
                **self.blame(a, b),
            )
        if types == {"int", "float"}:
            a, b = self.coerce(a, "float"), self.coerce(b, "float")
        return make(_CMP_OPS[node.op], "bool", [a, b], node)

    def membership(self, node: Node) -> Node:
        x = self.visit(node.args[0])
        items = [lit(i.value, i.type, i) for i in node.args[1].args]
        for i in items:
            if i.type == "null":
                raise self.error(
                    i, "null in a list never matches anything; test is_null(x) instead"
                )
        if x.type not in _HASHABLE and x.type != "null":
            raise self.error(
                x, f"{self.what(x)} is {x.type}; 'in' works on int, float, bool and string"
            )
        t = self.unify([x, *items], "'in'")
        if x.type == "null":
            return lit(None, "bool", node)
        convert = float if t == "float" else (lambda v: v)
        # + 0.0 makes -0.0 and 0.0 one member, as == does.
        values = frozenset(convert(i.value) + 0.0 if t == "float" else i.value for i in items)
        found = make("in", "bool", [self.coerce(x, t)], node, value=values)
        return make("not", "bool", [found], node) if node.op == "not in" else found

    # functions

    def call(self, node: Node) -> Node:
        name = node.value
        if name not in SIGNATURES:
            close = difflib.get_close_matches(name, list(SIGNATURES), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}()?" if close else ""
            if name in self.types:
                hint += f" ('{name}' is a column: drop the parentheses)"
            raise self.error(node, f"unknown function {name}(){hint}", function=name)
        least, most, usage = SIGNATURES[name]
        n = len(node.args)
        if n < least or (most is not None and n > most):
            if most is None:
                need = f"at least {least} argument{'s' if least > 1 else ''}"
            elif least == most:
                need = f"{least} argument{'s' if least > 1 else ''}"
            else:
                need = f"{least} to {most} arguments"
            raise self.error(node, f"{name}() takes {need}, got {n}: {usage}", function=name)
        handler = _HANDLERS.get(name) or _family(name)
        return handler(self, node, node.args)

    def values(self, node: Node, raw: Sequence[Node]) -> list[Node]:
        for r in raw:
            if r.op == "list":
                raise self.error(
                    r, f"{node.value}() does not take a list here", function=node.value
                )
        return [self.visit(r) for r in raw]

    def literal(self, node: Node, raw: Node, kind: str, what: str) -> Any:
        if raw.op != "lit" or raw.type != kind:
            raise self.error(raw, f"{node.value}() needs {what}", function=node.value)
        return raw.value

    def fn_if(self, node: Node, raw: Sequence[Node]) -> Node:
        cond, a, b = self.values(node, raw)
        if cond.type not in ("bool", "null"):
            raise self.error(
                cond, f"the condition of if() must be bool, not {cond.type}", function="if"
            )
        t = self.unify([a, b], "if()")
        a, b = self.coerce(a, t), self.coerce(b, t)
        if cond.op == "lit":
            return a if cond.value else b
        return make("if", t, [cond, a, b], node) if t != "null" else lit(None, "null", node)

    def fn_coalesce(self, node: Node, raw: Sequence[Node]) -> Node:
        args = [a for a in self.values(node, raw) if a.type != "null"]
        t = self.unify(args, "coalesce()")
        args = [self.coerce(a, t) for a in args]
        if not args:
            return lit(None, "null", node)
        return args[0] if len(args) == 1 else make("coalesce", t, args, node)

    def fn_is_null(self, node: Node, raw: Sequence[Node]) -> Node:
        (x,) = self.values(node, raw)
        return lit(True, "bool", node) if x.type == "null" else make("is_null", "bool", [x], node)

    def fn_abs(self, node: Node, raw: Sequence[Node]) -> Node:
        (x,) = self.values(node, raw)
        self.expect(x, frozenset({"int", "float", "duration"}), "abs", "a number or a duration")
        if x.type == "null":
            return x
        return make("abs_f" if x.type == "float" else "abs_i", x.type, [x], node)

    def fn_floor(self, node: Node, raw: Sequence[Node]) -> Node:
        (x,) = self.values(node, raw)
        self.expect(x, _NUMERIC, node.value, "a number")
        return make(node.value, "float", [x], node) if x.type == "float" else x

    fn_ceil = fn_floor

    def fn_round(self, node: Node, raw: Sequence[Node]) -> Node:
        x = self.values(node, raw[:1])[0]
        self.expect(x, _NUMERIC, "round", "a number")
        digits = 0
        if len(raw) == 2:
            digits = self.literal(node, raw[1], "int", "its digits as an integer literal")
            if not -20 <= digits <= 20:
                raise self.error(raw[1], "round() takes digits from -20 to 20", function="round")
        if x.type == "int" and len(raw) == 1:
            return x
        if x.type == "null":
            return lit(None, "float", node)
        return make("round", "float", [self.coerce(x, "float")], node, value=digits)

    def fn_math(self, node: Node, raw: Sequence[Node]) -> Node:
        (x,) = self.values(node, raw)
        self.expect(x, _NUMERIC, node.value, "a number")
        return make(node.value, "float", [self.coerce(x, "float")], node)

    def fn_extreme(self, node: Node, raw: Sequence[Node]) -> Node:
        name = node.value
        args = self.values(node, raw)
        for a in args:
            self.expect(a, _ORDERED, name, "numbers, strings, timestamps or durations")
        t = self.unify(args, f"{name}()")
        args = [self.coerce(a, t) for a in args]
        result = args[0]
        for a in args[1:]:
            result = make(name, t, [result, a], node)
        return result

    def fn_clip(self, node: Node, raw: Sequence[Node]) -> Node:
        x, lo, hi = self.values(node, raw)
        for a in (x, lo, hi):
            self.expect(a, _ORDERED, "clip", "numbers, strings, timestamps or durations")
        t = self.unify([x, lo, hi], "clip()")
        x, lo, hi = (self.coerce(a, t) for a in (x, lo, hi))
        return make("least", t, [make("greatest", t, [x, lo], node), hi], node)

    def fn_bucketize(self, node: Node, raw: Sequence[Node]) -> Node:
        x = self.values(node, raw[:1])[0]
        self.expect(x, _NUMERIC, "bucketize", "a number")
        edges_node = raw[1]
        if edges_node.op != "list":
            raise self.error(
                edges_node,
                "bucketize() needs its edges as a list, e.g. [0, 10, 100]",
                function="bucketize",
            )
        edges = []
        for e in edges_node.args:
            if e.type not in _NUMERIC:
                raise self.error(e, "bucketize() edges must be numbers", function="bucketize")
            edges.append(e.value)
        if any(b < a for a, b in pairwise(edges)):
            raise self.error(
                edges_node,
                "bucketize() edges must be sorted in increasing order",
                function="bucketize",
            )
        t = "float" if x.type == "float" or any(isinstance(e, float) for e in edges) else "int"
        value = tuple(float(e) for e in edges) if t == "float" else tuple(edges)
        return make("bucketize", "int", [self.coerce(x, t)], node, value=value)

    def fn_hash_bucket(self, node: Node, raw: Sequence[Node]) -> Node:
        x = self.values(node, raw[:1])[0]
        self.expect(x, _HASHABLE, "hash_bucket", "an int, float, bool or string")
        n = self.literal(node, raw[1], "int", "the number of buckets as an integer literal")
        if n < 1:
            raise self.error(
                raw[1], "hash_bucket() needs at least 1 bucket", function="hash_bucket"
            )
        return make("hash_bucket", "int", [self.as_string(x)], node, value=n)

    def fn_cross(self, node: Node, raw: Sequence[Node]) -> Node:
        args = self.values(node, raw)
        for a in args:
            self.expect(a, _HASHABLE, "cross", "ints, floats, bools or strings")
        return make("cross", "string", [self.as_string(a) for a in args], node)

    def fn_string_op(self, node: Node, raw: Sequence[Node]) -> Node:
        (x,) = self.values(node, raw)
        self.expect(x, frozenset({"string"}), node.value, "a string")
        return make(node.value, "int" if node.value == "length" else "string", [x], node)

    def fn_int(self, node: Node, raw: Sequence[Node]) -> Node:
        (x,) = self.values(node, raw)
        self.expect(x, frozenset(EXPR_TYPES), "int", "a value")
        if x.type == "int":
            return x
        if x.type in ("timestamp", "duration"):
            return make("retype", "int", [x], node)
        return (
            make(f"int_of_{x.type}", "int", [x], node) if x.type != "null" else lit(None, "int", x)
        )

    def fn_float(self, node: Node, raw: Sequence[Node]) -> Node:
        (x,) = self.values(node, raw)
        self.expect(
            x, _HASHABLE, "float", "an int, bool or string (to_seconds() converts durations)"
        )
        if x.type == "float":
            return x
        return (
            make(f"float_of_{x.type}", "float", [x], node)
            if x.type != "null"
            else lit(None, "float", x)
        )

    def fn_string(self, node: Node, raw: Sequence[Node]) -> Node:
        (x,) = self.values(node, raw)
        self.expect(x, _HASHABLE, "string", "an int, float or bool")
        return self.as_string(x)

    def as_string(self, x: Node) -> Node:
        if x.type in ("string", "null"):
            return self.coerce(x, "string")
        return make(f"string_of_{x.type}", "string", [x], x)

    def fn_date_part(self, node: Node, raw: Sequence[Node]) -> Node:
        name = node.value
        ts = self.values(node, raw[:1])[0]
        self.expect(ts, frozenset({"timestamp"}), name, "a timestamp")
        zone = None
        if len(raw) == 2:
            zone = self.literal(node, raw[1], "string", "its time zone as a string literal")
            zone = None if zone in _UTC_NAMES else self.zone(raw[1], zone, name)
        return make(name, "int", [ts], node, value=zone)

    def zone(self, raw: Node, name: str, fname: str) -> str:
        try:
            ZoneInfo(name)
        except (KeyError, ValueError, OSError):
            close = difflib.get_close_matches(name, _zone_names(), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise self.error(raw, f"unknown time zone '{name}'{hint}", function=fname) from None
        return name

    def fn_duration(self, node: Node, raw: Sequence[Node]) -> Node:
        (x,) = self.values(node, raw)
        self.expect(x, _NUMERIC, node.value, "a number")
        op = "dur_from_float" if x.type == "float" else "dur_from_int"
        return make(op, "duration", [x], node, value=_US[node.value])

    def fn_to_unit(self, node: Node, raw: Sequence[Node]) -> Node:
        (x,) = self.values(node, raw)
        self.expect(x, frozenset({"duration"}), node.value, "a duration")
        return make("dur_to_float", "float", [x], node, value=float(_US[node.value[3:]]))


Handler = Callable[[_Checker, Node, Sequence[Node]], Node]

_HANDLERS: dict[str, Handler] = {
    "if": _Checker.fn_if,
    "coalesce": _Checker.fn_coalesce,
    "is_null": _Checker.fn_is_null,
    "abs": _Checker.fn_abs,
    "floor": _Checker.fn_floor,
    "ceil": _Checker.fn_ceil,
    "round": _Checker.fn_round,
    "clip": _Checker.fn_clip,
    "bucketize": _Checker.fn_bucketize,
    "hash_bucket": _Checker.fn_hash_bucket,
    "cross": _Checker.fn_cross,
    "int": _Checker.fn_int,
    "float": _Checker.fn_float,
    "string": _Checker.fn_string,
}


def _family(name: str) -> Handler:
    if name in ("sqrt", "exp", "log", "log1p"):
        return _Checker.fn_math
    if name in ("least", "greatest"):
        return _Checker.fn_extreme
    if name in ("lower", "upper", "length"):
        return _Checker.fn_string_op
    if name in _DATE_PARTS:
        return _Checker.fn_date_part
    if name in _US:
        return _Checker.fn_duration
    return _Checker.fn_to_unit


def _arithmetic_result(op: str, lt: str, rt: str) -> tuple[str, str] | None:
    """The operation and result type of ``lt op rt``, or None when the types do not combine."""
    if lt in _NUMERIC and rt in _NUMERIC:
        if op == "/":
            return "div", "float"
        if lt == rt == "int":
            return _INT_OPS[op], "int"
        return _FLOAT_OPS[op], "float"
    pair = (lt, rt)
    if op == "+":
        if pair == ("string", "string"):
            return "concat", "string"
        if pair in (("timestamp", "duration"), ("duration", "timestamp")):
            return "add_i", "timestamp"
        if pair == ("duration", "duration"):
            return "add_i", "duration"
    if op == "-":
        if pair == ("timestamp", "duration"):
            return "sub_i", "timestamp"
        if pair in (("timestamp", "timestamp"), ("duration", "duration")):
            return "sub_i", "duration"
    if op == "*" and pair in (("duration", "int"), ("int", "duration")):
        return "mul_i", "duration"
    if op == "/" and pair == ("duration", "duration"):
        return "div", "float"
    return None


@cache
def _zone_names() -> list[str]:
    return sorted(available_timezones())
