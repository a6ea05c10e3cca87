"""The reference every parser test compares ddbshard with: boto3, plus DynamoDB's stricter rules.

What a DynamoDB-JSON value *means* is what boto3's `TypeDeserializer` returns for it once B and BS
members are base64-decoded, the way botocore decodes blobs off the wire (the deserializer itself
raises TypeError on a base64 str). Whether DynamoDB would *store* it is a different question:
boto3 is laxer than DynamoDB (it takes "NaN", empty sets, duplicate set members, `{"NULL": false}`,
JSON numbers, `{"S": null}`, anything nested), so `dynamodb_refuses` states DynamoDB's rules on
their own, and returns the reason code ddbshard uses for the first rule broken in document order.

Also here: where the shared real data lives (`REALDATA`), a JSON loader that keeps duplicate keys
visible, and `exact`, the comparison key that tells `Decimal("1.50")` from `Decimal("1.5")` and
`True` from `Decimal(1)` (plain `==` says both pairs are equal).
"""

from __future__ import annotations

import ast
import base64
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer

__all__ = [
    "MAX_DEPTH",
    "MAX_ITEM_BYTES",
    "REALDATA",
    "PairsDict",
    "deserialize",
    "deserialize_item",
    "dynamodb_refuses",
    "eval_python_repr",
    "exact",
    "item_refuses",
    "item_size",
    "line_refuses",
    "load_json",
    "read_line",
]

REALDATA = Path(__file__).resolve().parents[3] / "shared" / "realdata"
"""Real DynamoDB JSON written by others (see its SOURCES.md); beside the repo, never copied in."""

MAX_DEPTH = 32
"""DynamoDB nests at most 32 levels, a top-level attribute being level 1 (Developer Guide,
"Constraints": "Nesting Levels have exceeded supported limits")."""

MAX_ITEM_BYTES = 400 * 1024
"""The 400 KB item limit, 1 KB = 1024 bytes (Developer Guide, "Item sizes and formats")."""

MAX_DIGITS = 38
MIN_EXPONENT, MAX_EXPONENT = -130, 125
"""Numbers: up to 38 significant digits, magnitudes 1E-130 .. 9.99...E+125 (ServiceQuotas.md)."""

# DynamoDB parses numbers as Java's BigDecimal does: optional sign, digits with an optional
# point (either side may be empty, not both), optional exponent. Python's Decimal is laxer
# (NaN, Infinity, surrounding spaces, '_' separators, non-ASCII digits), hence a pattern first.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
# Standard base64 with '=' padding to a multiple of four. botocore's b64decode is laxer: it
# drops characters outside the alphabet.
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", re.ASCII)
_TYPES = frozenset({"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"})
_DESERIALIZER = TypeDeserializer()


class PairsDict(dict[str, Any]):
    """A JSON object that also remembers every (key, value) pair, duplicates included."""

    pairs: list[tuple[str, Any]]


def _object_pairs(pairs: list[tuple[str, Any]]) -> PairsDict:
    d = PairsDict(pairs)
    d.pairs = pairs
    return d


def load_json(text: str | bytes) -> Any:
    """`json.loads`, strict UTF-8 for bytes, with objects as `PairsDict` (duplicates kept)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")  # json.loads(bytes) would also guess UTF-16/32
    return json.loads(text, object_pairs_hook=_object_pairs)


def _pairs(obj: dict[str, Any]) -> list[tuple[str, Any]]:
    return obj.pairs if isinstance(obj, PairsDict) else list(obj.items())


# --------------------------------------------------------------------------------------------
# What boto3 makes of a value


def _decode_binaries(wire: Any) -> Any:
    """The wire value with B/BS members base64-decoded, as botocore hands them to boto3."""
    if not isinstance(wire, dict) or len(wire) != 1:
        return wire
    ((tag, v),) = wire.items()
    if tag == "B" and isinstance(v, str):
        return {"B": base64.b64decode(v)}
    if tag == "BS" and isinstance(v, list):
        return {"BS": [base64.b64decode(m) if isinstance(m, str) else m for m in v]}
    if tag == "L" and isinstance(v, list):
        return {"L": [_decode_binaries(m) for m in v]}
    if tag == "M" and isinstance(v, dict):
        return {"M": {k: _decode_binaries(m) for k, m in v.items()}}
    return wire


def _plain(value: Any) -> Any:
    """boto3's result with `Binary` unwrapped to bytes (what ddbshard returns)."""
    if isinstance(value, Binary):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, set):
        return {_plain(v) for v in value}
    return value


def deserialize(wire: Any) -> Any:
    """boto3's TypeDeserializer on one wire value (B/BS decoded first). May raise, as boto3 does."""
    return _plain(_DESERIALIZER.deserialize(_decode_binaries(wire)))


def deserialize_item(wire_map: dict[str, Any]) -> dict[str, Any]:
    """boto3's view of an attribute map (an export line's Item, a stream image)."""
    return {name: deserialize(v) for name, v in wire_map.items()}


# --------------------------------------------------------------------------------------------
# What DynamoDB refuses


def _number_refuses(text: str) -> str | None:
    if not _NUMBER.fullmatch(text):
        return "invalid_number"
    try:
        d = Decimal(text)
    except ArithmeticError:  # an exponent past what Python's decimal holds: out of range anyway
        return "invalid_number"
    _, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    significant = "".join(map(str, digits)).lstrip("0").rstrip("0")
    if not significant:
        return None  # zero, whatever its exponent
    if len(significant) > MAX_DIGITS:
        return "invalid_number"
    if not MIN_EXPONENT <= d.adjusted() <= MAX_EXPONENT:
        return "invalid_number"
    return None


def _string_refuses(text: str) -> str | None:
    # json.loads turns "\ud800" into a lone surrogate; it has no UTF-8 form, so DynamoDB
    # (which stores UTF-8) cannot hold it.
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return "invalid_utf8"
    return None


def _member_refuses(tag: str, member: Any) -> str | None:
    if not isinstance(member, str):
        return "wrong_value_type"  # {"NS": [1, 2]}: JSON numbers are not DynamoDB JSON
    if tag in ("S", "SS"):
        return _string_refuses(member)
    if tag in ("N", "NS"):
        return _number_refuses(member)
    return None if _BASE64.fullmatch(member) else "invalid_base64"


def _set_key(tag: str, member: str) -> Any:
    """Set members are unique by value: numbers numerically ("1" = "1.0"), binaries by bytes."""
    if tag == "NS":
        return Decimal(member)
    if tag == "BS":
        return base64.b64decode(member)
    return member


def dynamodb_refuses(wire: Any, level: int = 1) -> str | None:
    """The reason code DynamoDB would refuse this attribute value for, or None if it stores it.

    `level` is the value's nesting level, 1 for a top-level attribute.
    """
    if level > MAX_DEPTH:
        return "too_deep"
    if not isinstance(wire, dict):
        return "wrong_value_type"
    pairs = _pairs(wire)
    if not pairs:
        return "unknown_type"
    tag, v = pairs[0]
    if tag not in _TYPES:
        return "unknown_type"
    reason = _typed_refuses(tag, v, level)
    if reason is None and len(pairs) > 1:
        return "wrong_value_type"  # one type key per value
    return reason


def _typed_refuses(tag: str, v: Any, level: int) -> str | None:
    if tag in ("S", "N", "B"):
        return _member_refuses(tag, v)
    if tag == "BOOL":
        return None if isinstance(v, bool) else "wrong_value_type"
    if tag == "NULL":
        if not isinstance(v, bool):
            return "wrong_value_type"
        return None if v else "invalid_null"
    if tag == "M":
        if not isinstance(v, dict):
            return "wrong_value_type"
        return _map_refuses(v, level, top=False)
    if tag == "L":
        if not isinstance(v, list):
            return "wrong_value_type"
        for member in v:
            if reason := dynamodb_refuses(member, level + 1):
                return reason
        return None
    # SS, NS, BS
    if not isinstance(v, list):
        return "wrong_value_type"
    for member in v:
        if reason := _member_refuses(tag, member):
            return reason
    if not v:
        return "empty_set"
    keys = [_set_key(tag, m) for m in v]
    if len(set(keys)) != len(keys):
        return "duplicate_set_member"
    return None


def _map_refuses(m: dict[str, Any], level: int, *, top: bool) -> str | None:
    """An attribute map whose values sit at `level + 1`; names checked as they are read."""
    pairs = _pairs(m)
    for name, value in pairs:
        if top and name == "":
            return "empty_attribute_name"
        if top and len(name.encode("utf-8", "surrogatepass")) > 65_535:
            return "attribute_name_too_long"
        if reason := _string_refuses(name):
            return reason
        if reason := dynamodb_refuses(value, level + 1):
            return reason
    if len({name for name, _ in pairs}) != len(pairs):
        return "duplicate_attribute"
    return None


def _value_size(wire: dict[str, Any]) -> int:
    ((tag, v),) = wire.items()
    if tag == "S":
        return len(v.encode())
    if tag == "N":
        return _number_size(v)
    if tag == "B":
        return len(base64.b64decode(v))
    if tag in ("BOOL", "NULL"):
        return 1
    if tag == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(x) for k, x in v.items())
    if tag == "L":
        return 3 + sum(1 + _value_size(x) for x in v)
    if tag == "SS":
        return sum(len(m.encode()) for m in v)
    if tag == "NS":
        return sum(_number_size(m) for m in v)
    return sum(len(base64.b64decode(m)) for m in v)


def _number_size(text: str) -> int:
    digits = "".join(map(str, Decimal(text).as_tuple().digits)).strip("0")
    return (len(digits) + 1) // 2 + 1


def item_size(wire_map: dict[str, Any]) -> int:
    """Stored size as DynamoDB counts it (Developer Guide, "Item sizes and formats"): name bytes
    plus value bytes; a number one byte per two significant digits plus one; a binary its
    decoded bytes; a list or map three bytes plus one per element on top of the elements."""
    return sum(len(k.encode()) + _value_size(v) for k, v in wire_map.items())


def item_refuses(wire_map: Any) -> str | None:
    """The reason code DynamoDB would refuse this attribute map (a whole item) for, or None."""
    if not isinstance(wire_map, dict):
        return "invalid_json"
    if reason := _map_refuses(wire_map, 0, top=True):
        return reason
    if item_size(wire_map) > MAX_ITEM_BYTES:
        return "item_too_large"
    return None


def read_line(raw: bytes | str) -> tuple[dict[str, Any] | None, str | None]:
    """How `ddbshard.loads` should read a line: (the attribute map, the refusal reason).

    A line whose only key is "Item" and whose value is a valid attribute map is an export line;
    anything else is read as a bare attribute map (README, "Python API"). Text that is not UTF-8
    or not a JSON object is refused before DynamoDB's rules come in.
    """
    try:
        doc = load_json(raw)
    except UnicodeDecodeError:
        return None, "invalid_utf8"
    except ValueError:
        return None, "invalid_json"
    if not isinstance(doc, dict):
        return None, "invalid_json"
    pairs = _pairs(doc)
    if len(pairs) == 1 and pairs[0][0] == "Item" and isinstance(pairs[0][1], dict):
        inner = pairs[0][1]
        reason = item_refuses(inner)
        if reason is None:
            return inner, None
        if item_refuses(doc) is not None:
            return None, reason
    reason = item_refuses(doc)
    return (doc, None) if reason is None else (None, reason)


def line_refuses(raw: bytes | str) -> str | None:
    """The reason a line would be refused, or None if `read_line` finds an item in it."""
    return read_line(raw)[1]


# --------------------------------------------------------------------------------------------
# Comparing results


def exact(value: Any) -> Any:
    """A hashable comparison key that keeps the type and the number as written.

    `Decimal("1.50") == Decimal("1.5")` and `Decimal(1) == True` are both true in Python; a
    parser that normalised numbers or turned BOOL into N would pass a plain `==`.
    """
    if value is None:
        return ("NULL",)
    if isinstance(value, bool):
        return ("BOOL", value)
    if isinstance(value, Decimal):
        return ("N", str(value))
    if isinstance(value, str):
        return ("S", value)
    if isinstance(value, bytes | bytearray):
        return ("B", bytes(value))
    if isinstance(value, Binary):
        return ("B", value.value)
    if isinstance(value, dict):
        return ("M", frozenset((k, exact(v)) for k, v in value.items()), len(value))
    if isinstance(value, list):
        return ("L", tuple(exact(v) for v in value))
    if isinstance(value, set | frozenset):
        return ("SET", frozenset(exact(v) for v in value))
    raise TypeError(f"not a DynamoDB value: {type(value).__name__}")


def eval_python_repr(text: str) -> Any:
    """Evaluates the `python` column of vectors/attribute_values.jsonl (a repr of boto3's result)
    without `eval`: literals plus `Decimal('...')`, `Binary(b'...')` and `set()` calls only."""

    def build(node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List):
            return [build(e) for e in node.elts]
        if isinstance(node, ast.Set):
            return {build(e) for e in node.elts}
        if isinstance(node, ast.Dict):
            keys = [build(k) if k is not None else None for k in node.keys]
            return dict(zip(keys, (build(v) for v in node.values), strict=True))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = [build(a) for a in node.args]
            if node.func.id == "Decimal" and len(args) == 1 and isinstance(args[0], str):
                return Decimal(args[0])
            if node.func.id == "Binary" and len(args) == 1 and isinstance(args[0], bytes):
                return args[0]
            if node.func.id == "set" and not args:
                return set()
        raise ValueError(f"unexpected expression in a vector: {ast.dump(node)}")

    return build(ast.parse(text, mode="eval").body)
