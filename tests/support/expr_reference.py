"""A pure-Python reference for DynamoDB condition expressions: an AST, its text, its checks, and
what it evaluates to on an item (wire dicts, `{"N": "1.50"}`), written from the AWS Developer
Guide ("Condition and filter expressions, operators, and functions"), independently of the
Rust core it is compared with in test_expr_differential.py.

Semantics, as DynamoDB has them:

- A document path that names nothing (absent key, index past the end, a key into a list, an
  index into a map) is *missing*. A missing operand equals nothing, so `a = :v` is false and
  `a <> :v` is TRUE; every ordering comparison, BETWEEN and IN are false on it.
- `=` / `<>` compare deeply: numbers by value (`1.50` = `1.5`), binaries by bytes, sets as sets,
  maps by key, lists in order; different types are never equal.
- `<`, `<=`, `>`, `>=` and BETWEEN order only N with N (numerically), S with S (by UTF-8
  bytes) and B with B (by unsigned bytes); any other pairing is false.
- `size(path)`: a string's length in UTF-16 code units (as DynamoDB counts), a binary's bytes,
  the members of a set, list or map; other types have no size and read as missing.
- `begins_with` takes S/S or B/B; `contains` a substring (S/S, B/B), a member of a set of the
  operand's type, or an element of a list (deep equality).

What DynamoDB refuses when it receives the expression (before any item) is `refusal`: a
`:value` of a type an operator cannot take, BETWEEN bounds of different types or out of order,
a function used where only a path fits, `attribute_type` with no type name, and so on.
"""

from __future__ import annotations

import base64
import json
import random
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

Wire = dict[str, Any]

TYPES = ("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS")
ORDERED = ("N", "S", "B")
KEYWORDS = ("and", "or", "not", "between", "in")
COMPARATORS = ("=", "<>", "<", "<=", ">", ">=")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# --------------------------------------------------------------------------------------------
# The AST


@dataclass(frozen=True)
class Path:
    steps: tuple[str | int, ...]  # first step a name; then names (map keys) or list indexes


@dataclass(frozen=True)
class Lit:
    value: Wire


@dataclass(frozen=True)
class Size:
    arg: Operand  # a Path; anything else is refused


Operand = Path | Lit | Size


@dataclass(frozen=True)
class Cmp:
    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True)
class Between:
    value: Operand
    low: Operand
    high: Operand


@dataclass(frozen=True)
class In:
    value: Operand
    options: tuple[Operand, ...]


@dataclass(frozen=True)
class Func:
    name: str  # attribute_exists, attribute_not_exists, attribute_type, begins_with, contains
    args: tuple[Operand, ...]


@dataclass(frozen=True)
class Not:
    inner: Cond


@dataclass(frozen=True)
class And:
    left: Cond
    right: Cond


@dataclass(frozen=True)
class Or:
    left: Cond
    right: Cond


Cond = Cmp | Between | In | Func | Not | And | Or


# --------------------------------------------------------------------------------------------
# Parse-time checks


def refusal(c: Cond) -> str | None:
    """Why DynamoDB would refuse the expression before evaluating it, or None."""
    if isinstance(c, Not):
        return refusal(c.inner)
    if isinstance(c, And | Or):
        return refusal(c.left) or refusal(c.right)
    if isinstance(c, Cmp):
        reason = _operand_refusal(c.left) or _operand_refusal(c.right)
        if reason is None and c.op not in ("=", "<>"):
            reason = _literal_type(c.left, ORDERED) or _literal_type(c.right, ORDERED)
        return reason
    if isinstance(c, Between):
        for o in (c.value, c.low, c.high):
            if reason := _operand_refusal(o) or _literal_type(o, ORDERED):
                return reason
        if isinstance(c.low, Lit) and isinstance(c.high, Lit):
            ordered = order(c.low.value, c.high.value)
            if ordered is None:
                return "BETWEEN bounds of different types"
            if ordered > 0:
                return "BETWEEN lower bound above the upper bound"
        return None
    if isinstance(c, In):
        if not 1 <= len(c.options) <= 100:
            return "IN takes 1 to 100 values"
        for o in (c.value, *c.options):
            if reason := _operand_refusal(o):
                return reason
        return None
    return _function_refusal(c)


def _function_refusal(c: Func) -> str | None:
    for o in c.args:
        if isinstance(o, Size):
            return f"{c.name} takes no size() argument"
    if c.name in ("attribute_exists", "attribute_not_exists"):
        return None if isinstance(c.args[0], Path) else f"{c.name} needs a path"
    if c.name == "attribute_type":
        t = c.args[1]
        if not isinstance(t, Lit) or list(t.value) != ["S"] or t.value["S"] not in TYPES:
            return "attribute_type needs a :value naming a type"
        return None
    if c.name == "begins_with":
        return _literal_type(c.args[0], ("S", "B")) or _literal_type(c.args[1], ("S", "B"))
    return None  # contains: paths and :values of any type


def _operand_refusal(o: Operand) -> str | None:
    if isinstance(o, Size) and not isinstance(o.arg, Path):
        return "size() needs a path"
    return None


def _literal_type(o: Operand, allowed: tuple[str, ...]) -> str | None:
    if isinstance(o, Lit) and tag(o.value) not in allowed:
        return f"a {tag(o.value)} :value where only {'/'.join(allowed)} fit"
    return None


# --------------------------------------------------------------------------------------------
# Evaluation


def tag(v: Wire) -> str:
    (t,) = v
    return t


def resolve(item: Wire, steps: tuple[str | int, ...]) -> Wire | None:
    cur: Wire = {"M": item}
    for step in steps:
        if isinstance(step, int):
            if tag(cur) != "L" or step >= len(cur["L"]):
                return None
            cur = cur["L"][step]
        else:
            if tag(cur) != "M" or step not in cur["M"]:
                return None
            cur = cur["M"][step]
    return cur


def size_of(v: Wire) -> int | None:
    t, x = tag(v), v[tag(v)]
    if t == "S":
        return len(x.encode("utf-16-le")) // 2
    if t == "B":
        return len(base64.b64decode(x))
    if t in ("SS", "NS", "BS", "L", "M"):
        return len(x)
    return None


def operand(o: Operand, item: Wire) -> Wire | None:
    if isinstance(o, Lit):
        return o.value
    if isinstance(o, Path):
        return resolve(item, o.steps)
    assert isinstance(o.arg, Path)
    v = resolve(item, o.arg.steps)
    n = size_of(v) if v is not None else None
    return None if n is None else {"N": str(n)}


def _bytes(text: str) -> bytes:
    return base64.b64decode(text)


def equal(a: Wire | None, b: Wire | None) -> bool:
    if a is None or b is None or tag(a) != tag(b):
        return False
    t, x, y = tag(a), a[tag(a)], b[tag(b)]
    if t == "N":
        return Decimal(x) == Decimal(y)
    if t == "B":
        return _bytes(x) == _bytes(y)
    if t in ("S", "BOOL", "NULL"):
        return bool(x == y)
    if t == "SS":
        return set(x) == set(y)
    if t == "NS":
        return {Decimal(m) for m in x} == {Decimal(m) for m in y}
    if t == "BS":
        return {_bytes(m) for m in x} == {_bytes(m) for m in y}
    if t == "L":
        return len(x) == len(y) and all(equal(p, q) for p, q in zip(x, y, strict=True))
    return x.keys() == y.keys() and all(equal(x[k], y[k]) for k in x)  # M


def order(a: Wire | None, b: Wire | None) -> int | None:
    """-1, 0 or 1; None when the two cannot be ordered."""
    if a is None or b is None or tag(a) != tag(b) or tag(a) not in ORDERED:
        return None
    t, x, y = tag(a), a[tag(a)], b[tag(b)]
    if t == "N":
        p, q = Decimal(x), Decimal(y)
    elif t == "S":
        p, q = x.encode(), y.encode()
    else:
        p, q = _bytes(x), _bytes(y)
    return (p > q) - (p < q)


def begins_with(a: Wire | None, b: Wire | None) -> bool:
    if a is None or b is None or tag(a) != tag(b):
        return False
    if tag(a) == "S":
        return bool(a["S"].startswith(b["S"]))
    if tag(a) == "B":
        return _bytes(a["B"]).startswith(_bytes(b["B"]))
    return False


def contains(a: Wire | None, b: Wire | None) -> bool:
    if a is None or b is None:
        return False
    t, u = tag(a), tag(b)
    if (t, u) == ("S", "S"):
        return b["S"] in a["S"]
    if (t, u) == ("B", "B"):
        return _bytes(b["B"]) in _bytes(a["B"])
    if (t, u) in (("SS", "S"), ("NS", "N"), ("BS", "B")):
        return any(equal({u: m}, b) for m in a[t])
    if t == "L":
        return any(equal(e, b) for e in a["L"])
    return False


def evaluate(c: Cond, item: Wire) -> bool:
    """Whether `item` (a wire attribute map) satisfies the (accepted) condition `c`."""
    if isinstance(c, Not):
        return not evaluate(c.inner, item)
    if isinstance(c, And):
        return evaluate(c.left, item) and evaluate(c.right, item)
    if isinstance(c, Or):
        return evaluate(c.left, item) or evaluate(c.right, item)
    if isinstance(c, Cmp):
        a, b = operand(c.left, item), operand(c.right, item)
        if c.op == "=":
            return equal(a, b)
        if c.op == "<>":
            return not equal(a, b)
        o = order(a, b)
        return (
            o is not None
            and {
                "<": o < 0,
                "<=": o <= 0,
                ">": o > 0,
                ">=": o >= 0,
            }[c.op]
        )
    if isinstance(c, Between):
        v = operand(c.value, item)
        lo, hi = order(v, operand(c.low, item)), order(v, operand(c.high, item))
        return lo is not None and hi is not None and lo >= 0 and hi <= 0
    if isinstance(c, In):
        v = operand(c.value, item)
        return any(equal(v, operand(o, item)) for o in c.options)
    args = [operand(o, item) for o in c.args]
    if c.name == "attribute_exists":
        return args[0] is not None
    if c.name == "attribute_not_exists":
        return args[0] is None
    if c.name == "attribute_type":
        assert args[1] is not None
        return args[0] is not None and tag(args[0]) == args[1]["S"]
    if c.name == "begins_with":
        return begins_with(args[0], args[1])
    assert c.name == "contains", c.name
    return contains(args[0], args[1])


# --------------------------------------------------------------------------------------------
# Rendering to text


def needs_placeholder(name: str) -> bool:
    return not _IDENT.fullmatch(name) or name.lower() in KEYWORDS


PREC = {Or: 1, And: 2, Not: 3}


class Renderer:
    """Writes a condition as DynamoDB text with `#name` and `:value` maps. Cosmetic choices
    (keyword case, spacing, redundant parentheses, optional placeholders) come from `rng`;
    parentheses are added only where precedence needs them, so precedence is what is tested."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.names: dict[str, str] = {}
        self.values: dict[str, str] = {}
        self._name_of: dict[str, str] = {}

    def render(self, c: Cond) -> str:
        return self.cond(c, 0)

    def kw(self, word: str) -> str:
        return self.rng.choice([word.upper(), word.lower(), word.capitalize()])

    def cond(self, c: Cond, min_prec: int) -> str:
        text = self._cond(c)
        if PREC.get(type(c), 4) < min_prec or self.rng.random() < 0.08:
            text = f"({text})"
        return text

    def _cond(self, c: Cond) -> str:
        if isinstance(c, Or):
            return f"{self.cond(c.left, 1)} {self.kw('or')} {self.cond(c.right, 1)}"
        if isinstance(c, And):
            return f"{self.cond(c.left, 2)} {self.kw('and')} {self.cond(c.right, 2)}"
        if isinstance(c, Not):
            return f"{self.kw('not')} {self.cond(c.inner, 3)}"
        if isinstance(c, Cmp):
            sp = self.rng.choice([" ", "", "  "])
            return f"{self.operand(c.left)}{sp}{c.op}{sp}{self.operand(c.right)}"
        if isinstance(c, Between):
            v, lo, hi = (self.operand(o) for o in (c.value, c.low, c.high))
            return f"{v} {self.kw('between')} {lo} {self.kw('and')} {hi}"
        if isinstance(c, In):
            options = ", ".join(self.operand(o) for o in c.options)
            return f"{self.operand(c.value)} {self.kw('in')} ({options})"
        return f"{c.name}({', '.join(self.operand(o) for o in c.args)})"

    def operand(self, o: Operand) -> str:
        if isinstance(o, Lit):
            ph = f":v{len(self.values)}"
            self.values[ph] = json.dumps(o.value, ensure_ascii=self.rng.random() < 0.5)
            return ph
        if isinstance(o, Size):
            return f"size({self.operand(o.arg)})"
        out = ""
        for i, step in enumerate(o.steps):
            if isinstance(step, int):
                out += f"[{step}]"
            else:
                out += ("." if i else "") + self.name(step)
        return out

    def name(self, name: str) -> str:
        if not needs_placeholder(name) and self.rng.random() < 0.7:
            return name
        if name not in self._name_of:
            ph = f"#n{len(self._name_of)}"
            self._name_of[name] = ph
            self.names[ph] = name
        return self._name_of[name]
