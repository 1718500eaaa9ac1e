"""Static type check of a rule's CEL condition against the facts' declared types (case C27).

``rules check`` used to run each condition once on example facts. A guard (``a < 1.25 && …``) that is
false on those facts hides everything behind it, and CEL never converts between ``int`` and
``double``: ``loan.outstanding / 10`` is a run-time error (the CEL language definition, "Numeric
values": no automatic arithmetic conversions; cel-rust/cel-rust#280). This module parses the
condition and types **every** sub-expression, reached or not, from the types of the example facts
(:func:`rules.rulebook.example_facts`: a Python ``float`` is a CEL ``double``, ``int`` is ``int``), so
such a rule is refused with its file and line before it is deployed.

What is checked: arithmetic (``+ - * / %``, unary ``-``) needs operands of one type (``int`` with
``int``, ``double`` with ``double``; ``string`` and ``list`` concatenation; ``timestamp`` ± ``duration``);
ordering (``< <= > >=``) needs comparable operands (numbers with numbers, which CEL allows across
``int``/``double``, strings, timestamps, durations); ``&&``, ``||``, ``!`` and the condition of ``?:``
need ``bool``; a field of a fact that does not exist is an error wherever it is. Equality, ``in`` and
calls of functions the checker does not know are typed ``dyn`` and pass: the checker refuses only what
is certainly wrong, and the example-fact evaluation stays as the second check.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cel

__all__ = ["CelTypeError", "check_types", "fact_types"]

#: A CEL type: a name (``int``, ``double``, ``string``, ``bool``, ``null``, ``bytes``, ``uint``,
#: ``timestamp``, ``duration``, ``list``, ``dyn``) or, for a fact map, ``{field: type}``.
CelType = str | dict[str, Any]

NUMERIC = {"int", "uint", "double"}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>[rR]?[bB]?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"))
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[uU]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|\||&&|==|!=|<=|>=|[-+*/%!<>?:.,()\[\]{}])
    """,
    re.VERBOSE,
)


class CelTypeError(ValueError):
    """A sub-expression whose operand types CEL refuses; the message quotes it and names the types."""


@dataclass(slots=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(expr: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise CelTypeError(f"cannot read {expr[pos : pos + 10]!r} at column {pos + 1}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    out.append(_Tok("end", "", len(expr)))
    return out


def fact_types(facts: Any) -> CelType:
    """The CEL type of an example fact value; a mapping becomes ``{field: type}``.

    Examples
    --------
    >>> fact_types({"loan": {"outstanding": 7e6, "id": "L1", "days": 3, "ok": True}})
    {'loan': {'outstanding': 'double', 'id': 'string', 'days': 'int', 'ok': 'bool'}}
    """
    if isinstance(facts, dict):
        return {str(k): fact_types(v) for k, v in facts.items()}
    if isinstance(facts, bool):
        return "bool"
    if isinstance(facts, int):
        return "int"
    if isinstance(facts, float):
        return "double"
    if isinstance(facts, str):
        return "string"
    if isinstance(facts, dt.datetime):
        return "timestamp"
    if isinstance(facts, dt.timedelta):
        return "duration"
    if isinstance(facts, list | tuple):
        return "list"
    return "dyn"


def _name(t: CelType) -> str:
    return "map" if isinstance(t, dict) else t


# functions and methods with a known result type; the rest are dyn
_RESULTS = {
    "int": "int",
    "uint": "uint",
    "double": "double",
    "string": "string",
    "bytes": "bytes",
    "bool": "bool",
    "size": "int",
    "has": "bool",
    "duration": "duration",
    "timestamp": "timestamp",
    "matches": "bool",
    "startsWith": "bool",
    "endsWith": "bool",
    "contains": "bool",
    "exists": "bool",
    "all": "bool",
    "exists_one": "bool",
    "map": "list",
    "filter": "list",
    "type": "dyn",
    "dyn": "dyn",
}


class _Checker:
    """Recursive-descent parser of CEL's grammar (the language definition's precedence) that types as it goes."""

    def __init__(self, expr: str, env: dict[str, Any]) -> None:
        self.expr = expr
        self.toks = _tokens(expr)
        self.i = 0
        self.env = env
        self.errors: list[str] = []

    # --- helpers
    def peek(self, text: str | None = None) -> bool:
        tok = self.toks[self.i]
        return tok.kind != "end" and (text is None or (tok.text == text and tok.kind in ("op", "ident")))

    def take(self, text: str | None = None) -> _Tok:
        tok = self.toks[self.i]
        if text is not None and tok.text != text:
            raise CelTypeError(f"expected {text!r} at column {tok.pos + 1}, got {tok.text or 'the end'!r}")
        self.i += 1
        return tok

    def src(self, start: int) -> str:
        end = self.toks[self.i].pos if self.i < len(self.toks) else len(self.expr)
        return self.expr[start:end].strip()

    def fail(self, start: int, message: str) -> CelType:
        self.errors.append(f"`{self.src(start)}` {message}")
        return "dyn"

    # --- grammar (lowest precedence first)
    def expr_(self) -> CelType:
        start = self.toks[self.i].pos
        cond = self.or_()
        if self.peek("?"):
            self.take("?")
            self._want_bool(cond, start, "the condition of ?:")
            a = self.or_()
            self.take(":")
            b = self.expr_()
            x, y = _name(a), _name(b)
            if x != y and "dyn" not in (x, y) and "null" not in (x, y):
                return self.fail(start, f"has branches of two types, {x} and {y}: CEL needs one type for ?:")
            return a if x == y else "dyn"
        return cond

    def _want_bool(self, t: CelType, start: int, what: str) -> None:
        if _name(t) not in ("bool", "dyn"):
            self.fail(start, f"is {_name(t)}, {what} needs bool")

    def _logical(self, op: str, sub: Callable[[], CelType]) -> CelType:
        start = self.toks[self.i].pos
        left = sub()
        if not self.peek(op):
            return left
        self._want_bool(left, start, f"an operand of {op}")
        while self.peek(op):
            self.take(op)
            rstart = self.toks[self.i].pos
            self._want_bool(sub(), rstart, f"an operand of {op}")
        return "bool"

    def or_(self) -> CelType:
        return self._logical("||", self.and_)

    def and_(self) -> CelType:
        return self._logical("&&", self.relation)

    def relation(self) -> CelType:
        start = self.toks[self.i].pos
        left = self.addition()
        while self.peek() and self.toks[self.i].text in ("<", "<=", ">", ">=", "==", "!=", "in"):
            op = self.take().text
            right = self.addition()
            if op in ("<", "<=", ">", ">="):
                a, b = _name(left), _name(right)
                ok = "dyn" in (a, b) or (a in NUMERIC and b in NUMERIC) or (a == b and a in _ORDERED)
                if not ok:
                    self.fail(start, f"compares {a} with {b}: CEL orders numbers, strings, timestamps, durations")
            left = "bool"
        return left

    def _arith(self, start: int, op: str, left: CelType, right: CelType) -> CelType:
        a, b = _name(left), _name(right)
        if "dyn" in (a, b):
            return "dyn"
        if a in NUMERIC and b in NUMERIC:
            if a != b:
                return self.fail(
                    start,
                    f"mixes {a} and {b} in {op}: CEL never converts between numeric types; give a number "
                    "literal the other's type (10 -> 10.0) or convert with double(...) / int(...)",
                )
            return a
        if op == "+" and a == b and a in ("string", "list", "bytes", "duration"):
            return a
        if op == "+" and {a, b} == {"timestamp", "duration"}:
            return "timestamp"
        if op == "-" and a == "timestamp" and b in ("timestamp", "duration"):
            return "duration" if b == "timestamp" else "timestamp"
        if op == "-" and a == b == "duration":
            return "duration"
        return self.fail(start, f"applies {op} to {a} and {b}, which CEL does not define")

    def addition(self) -> CelType:
        start = self.toks[self.i].pos
        left = self.multiplication()
        while self.peek() and self.toks[self.i].text in ("+", "-"):
            op = self.take().text
            left = self._arith(start, op, left, self.multiplication())
        return left

    def multiplication(self) -> CelType:
        start = self.toks[self.i].pos
        left = self.unary()
        while self.peek() and self.toks[self.i].text in ("*", "/", "%"):
            op = self.take().text
            left = self._arith(start, op, left, self.unary())
        return left

    def unary(self) -> CelType:
        start = self.toks[self.i].pos
        if self.peek("!"):
            self.take()
            self._want_bool(self.unary(), start, "the operand of !")
            return "bool"
        if self.peek("-"):
            self.take()
            t = self.unary()
            if _name(t) not in (*NUMERIC, "duration", "dyn"):
                return self.fail(start, f"negates a {_name(t)}")
            return t
        return self.member()

    def member(self) -> CelType:
        t, path = self.primary()
        while self.peek() and self.toks[self.i].text in (".", "["):
            if self.take().text == "[":
                first = self.i
                self.expr_()
                key = self.toks[first]
                literal = self.i == first + 1 and key.kind == "string"
                self.take("]")
                t, path = self._index(t, _unquote(key.text) if literal else None), None
                continue
            name = self.take().text
            if self.peek("("):
                self._known_function(name)
                self.args(name)
                t, path = _RESULTS.get(name, "dyn"), None
                continue
            if isinstance(t, dict):
                if name not in t:  # the message the example-fact evaluation gives, for the same fault
                    self.errors.append(f"refers to fact '{name}' that does not exist")
                    return "dyn"
                t, path = t[name], f"{path}.{name}" if path else name
            else:
                t, path = "dyn", None
        return t

    def _index(self, t: CelType, key: str | None) -> CelType:
        """The type of ``t[key]``: a fact map's field by a literal key, else the type all its values share."""
        if not isinstance(t, dict):
            return "dyn"
        if key is not None:
            if key not in t:
                self.errors.append(f"refers to fact '{key}' that does not exist")
                return "dyn"
            found: CelType = t[key]
            return found
        kinds = {_name(v) for v in t.values()}
        return next(iter(kinds)) if len(kinds) == 1 else "dyn"

    def _known_function(self, name: str) -> None:
        if name not in _RESULTS and not _cel_defines(name):
            self.errors.append(f"calls '{name}', which CEL does not define (it would fail at run time)")

    def args(self, fn: str) -> None:
        self.take("(")
        if fn in ("has",):  # a macro over a field selection: its argument is a path, not a value
            depth = 1
            while depth:
                tok = self.take()
                if tok.kind == "end":
                    raise CelTypeError("unclosed ( of has(...)")
                depth += (tok.text == "(") - (tok.text == ")")
            return
        if fn in ("exists", "all", "exists_one", "map", "filter"):  # comprehension macros bind a variable
            saved = dict(self.env)
            if self.toks[self.i].kind == "ident" and self.toks[self.i + 1].text == ",":
                self.env[self.take().text] = "dyn"
                self.take(",")
            self.items(")")
            self.env = saved
            return
        self.items(")")

    def items(self, close: str) -> None:
        """Comma-separated expressions up to and including ``close`` (arguments, list elements)."""
        while not self.peek(close):
            self.expr_()
            if self.peek(","):
                self.take(",")
        self.take(close)

    def primary(self) -> tuple[CelType, str | None]:
        tok = self.take()
        if tok.kind == "number":
            text = tok.text.lower()
            if text.endswith("u"):
                return "uint", None
            if text.startswith("0x") or not any(c in text for c in ".e"):
                return "int", None
            return "double", None
        if tok.kind == "string":
            prefix = tok.text[: min(i for i in (tok.text.find("'"), tok.text.find('"')) if i >= 0)]
            return ("bytes" if "b" in prefix.lower() else "string"), None
        if tok.text == "(":
            t = self.expr_()
            self.take(")")
            return t, None
        if tok.text == "[":
            self.items("]")
            return "list", None
        if tok.text == "{":
            while not self.peek("}"):
                self.expr_()
                self.take(":")
                self.expr_()
                if self.peek(","):
                    self.take(",")
            self.take("}")
            return "map", None
        if tok.text == ".":
            return self.primary()
        if tok.kind == "ident":
            if tok.text in ("true", "false"):
                return "bool", None
            if tok.text == "null":
                return "null", None
            if self.peek("("):
                self._known_function(tok.text)
                self.args(tok.text)
                return _RESULTS.get(tok.text, "dyn"), None
            if tok.text not in self.env:
                self.errors.append(f"refers to fact '{tok.text}' that does not exist")
                return "dyn", None
            return self.env[tok.text], tok.text
        raise CelTypeError(f"unexpected {tok.text or 'end'!r} at column {tok.pos + 1}")


_ORDERED = {"string", "timestamp", "duration", "bytes", "bool"}


def _unquote(text: str) -> str:
    body = text.lstrip("rRbB")
    quote = 3 if body[:3] in ("'''", '"""') else 1
    return body[quote:-quote]


_RECEIVERS = (
    "",
    "'' .",
    "0 .",
    "0.0 .",
    "b'' .",
    "[] .",
    "{} .",
    "timestamp('2024-01-01T00:00:00Z') .",
    "duration('1s') .",
)


@functools.cache
def _cel_defines(name: str) -> bool:
    """Whether the CEL implementation in use defines a function or method ``name``: asked of CEL itself.

    A call without arguments fails with "Undefined variable or function" only when the name is unknown
    (for a method: unknown on that receiver's type); a known function fails on its arguments instead.
    """
    for receiver in _RECEIVERS:
        try:
            cel.evaluate(f"{receiver.replace(' ', '')}{name}()", {})
        except Exception as exc:  # noqa: BLE001 - any other failure means the name exists
            if "Undefined variable or function" not in str(exc):
                return True
            continue
        return True
    return False


def check_types(expr: str, facts: dict[str, Any]) -> list[str]:
    """Type every sub-expression of the CEL condition ``expr`` against the types of ``facts``.

    Parameters
    ----------
    expr
        A CEL expression that already compiles.
    facts
        Example facts of the rule's scope (:func:`rules.rulebook.example_facts`); only their types matter.

    Returns
    -------
    list of str
        One problem per refused sub-expression, quoting it (empty when every sub-expression types).

    Raises
    ------
    CelTypeError
        When the expression uses syntax this checker does not read (the caller reports it as such).

    Examples
    --------
    >>> facts = {"loan": {"coverage_ratio": 1.43, "outstanding": 7e6, "required_top_up_collateral": 0.0}}
    >>> expr = "loan.coverage_ratio < 1.25 && loan.required_top_up_collateral > loan.outstanding / 10"
    >>> print(*check_types(expr, facts))  # doctest: +ELLIPSIS
    `loan.outstanding / 10` mixes double and int in /: CEL never converts between numeric types; ...
    >>> check_types("loan.outstanding >= 1000000000 && loan.coverage_ratio < 2", facts)
    []
    """
    env = fact_types(facts)
    assert isinstance(env, dict)
    checker = _Checker(expr, dict(env))
    checker.expr_()
    if checker.peek():
        tok = checker.toks[checker.i]
        raise CelTypeError(f"unexpected {tok.text!r} at column {tok.pos + 1}")
    return checker.errors
