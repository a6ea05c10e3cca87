"""DynamoDB attribute values as sync handles them: wire JSON, boto3's client form, identity, size.

Three forms meet in `keys` and `sync`:

- *wire* JSON, as exports, stream records and the keys file hold it: `{"n": {"N": "1.50"}}`,
  binaries as base64 text;
- boto3's low-level client form, the same dicts except that B and BS members are `bytes`
  (botocore base64-encodes blobs itself on the way out and decodes them on the way in, so a
  base64 *string* handed to the client would be encoded twice);
- a canonical text, for "is this the same key" and "is this the same item": DynamoDB compares
  numbers by value (it stores "1.50" as 1.5) and sets without order, so neither may count as a
  change.

The resource API (boto3.resource) is avoided on purpose: it turns numbers into Decimal and back,
which is exact only within its own context, where the client form keeps N as the text written.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from decimal import Context, Decimal, InvalidOperation
from json.encoder import (  # type: ignore[attr-defined]
    c_make_encoder,
    encode_basestring,
    encode_basestring_ascii,
)
from typing import Any

import ddbshard

__all__ = [
    "canonical",
    "check_item",
    "item_from_client",
    "item_size",
    "item_to_client",
    "key_of",
    "wire_json",
    "write_units",
]

# DynamoDB numbers have up to 38 significant digits (AWS-FORMATS.md §4); a context with room to
# spare normalises them without rounding (Python's default context keeps only 28).
_EXACT = Context(prec=40, Emin=-999, Emax=999)
_SET_TYPES = ("SS", "NS", "BS")


def item_to_client(item: dict[str, Any]) -> dict[str, Any]:
    """A wire item (B as base64 text) in the form boto3's client sends (B as bytes)."""
    return {name: _to_client(v) for name, v in item.items()}


def item_from_client(item: dict[str, Any]) -> dict[str, Any]:
    """An item as boto3's client returns it, in wire form (B as base64 text)."""
    return {name: _from_client(v) for name, v in item.items()}


def _to_client(value: dict[str, Any]) -> dict[str, Any]:
    (kind, v), = value.items()  # fmt: skip
    if kind == "B":
        return {"B": base64.b64decode(v)}
    if kind == "BS":
        return {"BS": [base64.b64decode(x) for x in v]}
    if kind == "M":
        return {"M": {k: _to_client(x) for k, x in v.items()}}
    if kind == "L":
        return {"L": [_to_client(x) for x in v]}
    return {kind: v}


def _from_client(value: dict[str, Any]) -> dict[str, Any]:
    (kind, v), = value.items()  # fmt: skip
    if kind == "B":
        return {"B": base64.b64encode(v).decode("ascii")}
    if kind == "BS":
        return {"BS": [base64.b64encode(x).decode("ascii") for x in v]}
    if kind == "M":
        return {"M": {k: _from_client(x) for k, x in v.items()}}
    if kind == "L":
        return {"L": [_from_client(x) for x in v]}
    return {kind: v}


def check_item(item: Any) -> None:
    """Refuses (ParseError, ValueError) anything DynamoDB would refuse as an attribute map.

    The native parser decides, so numbers are checked as the text they are (38 digits, the
    exponent range), binaries as base64, sets for duplicates, and so on. The map is wrapped as
    an export line because a bare map whose only attribute is called "Item" would otherwise be
    read as a line.
    """
    if not isinstance(item, dict):
        raise ValueError(f"an attribute map must be a JSON object, not {type(item).__name__}")
    # ASCII with \u escapes: the text says exactly what the Python strings hold, lone
    # surrogates included, and the parser decides whether DynamoDB would take them.
    ddbshard.loads(json.dumps({"Item": item}, default=_json_number))


def _json_number(v: Any) -> Any:
    # Records are parsed with parse_float=Decimal to keep timestamps exact; a Decimal inside an
    # image is a JSON number where DynamoDB JSON has a string, which the parser must see (and
    # refuse) as a number.
    if isinstance(v, Decimal):
        return float(v)
    raise TypeError(f"{type(v).__name__} is not JSON")


def canonical(item: dict[str, Any]) -> str:
    """One text per distinct DynamoDB value of a (checked) wire attribute map.

    Numbers by value, sets in sorted order, binaries in standard base64, attributes sorted:
    two maps DynamoDB would store identically get the same text, and no others do.
    """
    for v in item.values():
        if "S" not in v:
            return _CANONICAL_JSON(
                {k: v if "S" in v else _canonical_value(v) for k, v in item.items()}
            )
    # A string is already one text per value: the common key (strings only) is written as is.
    return _CANONICAL_JSON(item)


def _compact_encoder(*, sort_keys: bool, ascii: bool) -> Callable[[Any], str]:
    """json.dumps(sort_keys, ensure_ascii, compact) with its per-call set-up done once: sync
    computes several canonical texts and JSON lines per key, and JSONEncoder.encode builds its
    C encoder anew on every call, which took more than half the time of a key's text."""
    options = json.JSONEncoder(sort_keys=sort_keys, ensure_ascii=ascii, separators=(",", ":"))
    if c_make_encoder is None:  # a Python without the C accelerator
        return options.encode
    # No circular-reference check (markers None): the values come from JSON text.
    strings = encode_basestring_ascii if ascii else encode_basestring
    encode = c_make_encoder(None, options.default, strings, None, ":", ",", sort_keys, False, True)
    return lambda value: "".join(encode(value, 0))


_CANONICAL_JSON = _compact_encoder(sort_keys=True, ascii=False)

_WIRE_JSON = _compact_encoder(sort_keys=False, ascii=True)


def wire_json(value: Any) -> str:
    """Compact ASCII JSON of a wire value, as json.dumps(separators=(",", ":")) writes it:
    lone surrogates stay \\u escapes, exactly as the item holds them."""
    return _WIRE_JSON(value)


def key_of(item: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The key attributes `names` of a wire item (KeyError when one is missing)."""
    return {n: item[n] for n in names}


def _canonical_value(value: dict[str, Any]) -> Any:
    (kind, v), = value.items()  # fmt: skip
    if kind == "N":
        return {"N": _number(v)}
    if kind == "B":
        return {"B": _binary(v)}
    if kind in _SET_TYPES:
        member = _number if kind == "NS" else _binary if kind == "BS" else str
        return {kind: sorted(member(x) for x in v)}
    if kind == "M":
        return {"M": {k: _canonical_value(x) for k, x in v.items()}}
    if kind == "L":
        return {"L": [_canonical_value(x) for x in v]}
    return value  # S, BOOL, NULL: already one text per value


def _number(text: str) -> str:
    try:
        d = Decimal(text)
    except InvalidOperation:
        return text  # not a number: check_item refuses it; keep it distinct from any number
    if d.is_zero():
        return "0"  # 0, 0.00 and -0 are one value to DynamoDB
    return str(d.normalize(_EXACT))


def _binary(text: str) -> str:
    try:
        return base64.b64encode(base64.b64decode(text, validate=True)).decode("ascii")
    except (binascii.Error, ValueError):
        return text


def item_size(item: dict[str, Any]) -> int:
    """Bytes DynamoDB counts for an item, by its published formula (AWS-FORMATS.md §4):
    name bytes plus value bytes; numbers about 1 byte per 2 significant digits plus 1; lists
    and maps 3 bytes plus 1 per element. Used to budget writes, so close is good enough."""
    return sum(len(name.encode("utf-8", "surrogatepass")) + _size(v) for name, v in item.items())


def _size(value: dict[str, Any]) -> int:
    (kind, v), = value.items()  # fmt: skip
    if kind == "S":
        return len(v.encode("utf-8", "surrogatepass"))
    if kind == "N":
        return _number_size(v)
    if kind == "B":
        return len(v) * 3 // 4
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(x.encode("utf-8", "surrogatepass")) for x in v)
    if kind == "NS":
        return sum(_number_size(x) for x in v)
    if kind == "BS":
        return sum(len(x) * 3 // 4 for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8", "surrogatepass")) + _size(x) + 1 for k, x in v.items())
    if kind == "L":
        return 3 + sum(_size(x) + 1 for x in v)
    return 0


def _number_size(text: str) -> int:
    digits = sum(c.isdigit() for c in _number(text).split("E")[0].lstrip("-"))
    return (digits + 1) // 2 + 1


def write_units(size: int) -> int:
    """Write capacity units for writing (or deleting) an item of `size` bytes: one per 1 KB,
    rounded up, at least one (DynamoDB capacity unit rules)."""
    return max(1, math.ceil(size / 1024))
