"""Properties of `loads`/`dumps`: random items round-trip, mangled lines never crash, and each
DynamoDB limit holds exactly at its edge (one step inside accepted, one step outside refused).
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import ddbshard
from support.oracle import MAX_ITEM_BYTES, deserialize_item, exact, line_refuses, read_line

REASONS = frozenset(ddbshard._core.REASONS)
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SERIALIZER = TypeSerializer()

# --------------------------------------------------------------------------------------------
# Random valid items

names = st.text(min_size=1, max_size=12)
strings = st.one_of(
    st.text(max_size=30),  # any code point but surrogates: control characters, emoji, empty
    st.sampled_from(["", "\x00", '"\\/\b\f\n\r\t', "\u2028\u2029", "😀", "경기75자8505", "\x7f"]),
)


@st.composite
def decimals(draw: st.DrawFn) -> Decimal:
    """At most 38 digits, leading digit's exponent in -130..125 (DynamoDB's number range).

    The coefficient's last digit stays at or above 1E-165, the smallest boto3's Decimal context
    (prec 38, Emin -128) holds exactly, so boto3's serializer can take every one of them.
    """
    digits = draw(st.integers(1, 38))
    coefficient = draw(st.integers(0, 10**digits - 1))
    width = len(str(coefficient))
    exponent = draw(st.integers(max(-165, -130 - width + 1), 125 - width + 1))
    sign = draw(st.integers(0, 1))
    return Decimal((sign, tuple(int(c) for c in str(coefficient)), exponent))


ints = st.integers(-(10**38) + 1, 10**38 - 1)
binaries = st.binary(max_size=40)
leaves = st.one_of(
    strings,
    decimals(),
    ints,
    binaries,
    st.booleans(),
    st.none(),
    st.sets(strings, min_size=1, max_size=5),
    st.sets(decimals(), min_size=1, max_size=5),
    st.sets(ints, min_size=1, max_size=5),
    st.sets(st.binary(max_size=12), min_size=1, max_size=5),
)
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(names, children, max_size=4)
    ),
    max_leaves=12,
)
items = st.dictionaries(names, values, max_size=6)


def expected(value: Any) -> Any:
    """What loads gives back for a Python value passed to dumps: ints come back as Decimal."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: expected(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expected(v) for v in value]
    if isinstance(value, set):
        return {expected(v) for v in value}
    return value


def base64_binaries(wire: dict[str, Any]) -> dict[str, Any]:
    """boto3's serializer output made JSON: B/BS bytes base64-encoded, as botocore sends them."""
    ((tag, v),) = wire.items()
    if tag == "B":
        return {tag: base64.b64encode(bytes(v)).decode()}
    if tag == "BS":
        return {tag: [base64.b64encode(bytes(m)).decode() for m in v]}
    if tag == "M":
        return {tag: {k: base64_binaries(m) for k, m in v.items()}}
    if tag == "L":
        return {tag: [base64_binaries(m) for m in v]}
    return wire


@FAST
@given(items)
def test_dumps_then_loads_gives_the_item_back(item: dict[str, Any]) -> None:
    want = exact(expected(item))
    bare = ddbshard.dumps(item)
    assert exact(ddbshard.loads(bare)) == want
    line = ddbshard.dumps(item, line=True)
    assert line == b'{"Item":' + bare + b"}"
    assert exact(ddbshard.loads(line)) == want
    assert exact(ddbshard.loads(line.decode())) == want


@FAST
@given(items)
def test_loads_reads_boto3s_serialization_like_boto3(item: dict[str, Any]) -> None:
    wire = {k: base64_binaries(SERIALIZER.serialize(v)) for k, v in item.items()}
    for ensure_ascii in (False, True):  # raw UTF-8, and \u escapes with surrogate pairs
        text = json.dumps({"Item": wire}, ensure_ascii=ensure_ascii)
        got = ddbshard.loads(text.encode())
        assert exact(got) == exact(expected(item))
        assert exact(got) == exact(deserialize_item(json.loads(text)["Item"]))


# --------------------------------------------------------------------------------------------
# Mangled lines: read or refused, never anything else

_TOKENS = [
    b"{", b"}", b"[", b"]", b'"', b"\\", b",", b":", b" ", b"\n", b"\\u", b"\\ud800", b"\\udc00",
    b"1", b"0", b"e", b"E", b"-", b"+", b".", b"=", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00",
    b"null", b"true", b"false", b"NaN", b'{"S":"x"}', b'{"N":"1"}', b'{"NULL":false}', b'"Item"',
    b'{"SS":[]}', b'"M"', b'"L"', b'"NS"', b'"BS"', b'"B"', b"AA==",
]  # fmt: skip


_DIGITS = b"0123456789"
_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@st.composite
def mangled_lines(draw: st.DrawFn) -> bytes:
    """A valid line with 1-3 edits: byte-level damage, and edits that often keep it valid JSON
    (a digit or letter swapped for another) so the "read" side is exercised too."""
    raw = bytearray(ddbshard.dumps(draw(items), line=draw(st.booleans())))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        op = draw(
            st.sampled_from(
                ["digit", "letter", "flip", "truncate", "insert", "delete", "replace", "bytes"]
            )
        )
        here = raw[at] if at < len(raw) else None
        if op == "digit" and here is not None and here in _DIGITS:
            raw[at] = draw(st.sampled_from(_DIGITS))
        elif op == "letter" and here is not None and here in _LETTERS:
            raw[at] = draw(st.sampled_from(_LETTERS))
        elif op == "flip" and here is not None:
            # Mostly low bits, so ASCII stays ASCII and the damage is JSON-level, not UTF-8.
            raw[at] ^= 1 << draw(st.sampled_from([0, 1, 2, 3, 4, 5, 7]))
        elif op == "truncate":
            del raw[at:]
        elif op == "insert":
            raw[at:at] = draw(st.sampled_from(_TOKENS))
        elif op == "delete":
            del raw[at : at + draw(st.integers(1, 8))]
        elif op == "replace" and here is not None:
            raw[at : at + 1] = draw(st.sampled_from(_TOKENS))
        elif op == "bytes":
            raw[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(raw)


@FAST
@given(mangled_lines())
def test_mangled_line_is_read_like_boto3_or_refused(raw: bytes) -> None:
    try:
        got = ddbshard.loads(raw)
    except ddbshard.ParseError as e:
        assert e.reason in REASONS
        assert 0 <= e.offset <= len(raw)
        assert isinstance(e.excerpt, str) and len(e.excerpt) <= 40
        assert line_refuses(raw) is not None, f"DynamoDB would take it; refused: {e}"
        event(f"refused: {e.reason}")
        return
    event("read")
    wire, reason = read_line(raw)
    assert reason is None, f"DynamoDB refuses it ({reason}) but loads returned {got!r}"
    assert exact(got) == exact(deserialize_item(wire))


# --------------------------------------------------------------------------------------------
# DynamoDB's limits, at the edge


def loads_value(wire: dict[str, Any]) -> Any:
    return ddbshard.loads(json.dumps({"a": wire}).encode())["a"]


def refusal(line: str | bytes) -> ddbshard.ParseError:
    with pytest.raises(ddbshard.ParseError) as info:
        ddbshard.loads(line)
    return info.value


@pytest.mark.parametrize(
    "text",
    [
        "1" * 38,
        "-0." + "9" * 38,
        "1" * 38 + "0" * 50,  # trailing zeros are not significant
        "0.000" + "1" * 38,  # nor are leading ones
        "1E-130",
        "-1E-130",
        "9.9999999999999999999999999999999999999E+125",
        "-9.9999999999999999999999999999999999999E+125",
        "0",
        "-0",
        "0E-500",  # zero has no magnitude to be out of range
    ],
)
def test_number_at_the_edge_is_accepted(text: str) -> None:
    got = loads_value({"N": text})
    assert str(got) == str(Decimal(text))


@pytest.mark.parametrize(
    "text",
    [
        "1" * 39,
        "1." + "0" * 36 + "12",  # 39 significant digits
        "-" + "9" * 39,
        "1E-131",
        "0.99E-130",
        "1E+126",
        "10E+125",
        "-1E+126",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e",
        "",
        " 1",
        "1_000",
        "0x10",
    ],
)
def test_number_past_the_edge_is_refused(text: str) -> None:
    e = refusal(json.dumps({"a": {"N": text}}))
    assert e.reason == "invalid_number"
    assert e.offset == len('{"a": {"N": ')  # points at the number


def nested(levels: int, leaf: str, kind: str = "M") -> str:
    """`levels` wraps of M (or L) around `leaf`, as a top-level attribute value."""
    out = leaf
    for _ in range(levels):
        out = '{"M":{"x":' + out + "}}" if kind == "M" else '{"L":[' + out + "]}"
    return out


@pytest.mark.parametrize("kind", ["M", "L"])
def test_nesting_of_32_levels_is_accepted_33_refused(kind: str) -> None:
    # The top-level attribute is level 1: 31 wraps put the leaf at level 32.
    got = ddbshard.loads('{"a":' + nested(31, '{"S":"deep"}', kind) + "}")["a"]
    for _ in range(31):
        got = got["x"] if kind == "M" else got[0]
    assert got == "deep"
    e = refusal('{"a":' + nested(32, '{"S":"deep"}', kind) + "}")
    assert e.reason == "too_deep"


def test_dumps_refuses_nesting_past_32_levels() -> None:
    value: Any = "leaf"
    for _ in range(31):
        value = {"x": value}
    assert ddbshard.loads(ddbshard.dumps({"a": value}))["a"] == value
    with pytest.raises(ddbshard.ParseError) as info:
        ddbshard.dumps({"a": {"x": value}})
    assert info.value.reason == "too_deep"


@pytest.mark.parametrize(
    "value",
    [10**100_000, -(10**100_000), 10**4300, 10**126, Decimal("1E+100000"), Decimal("NaN")],
    ids=["10**100000", "-10**100000", "10**4300", "10**126", "Decimal 1E+100000", "NaN"],
)
def test_dumps_refuses_a_number_out_of_range_as_a_parse_error(value: Any) -> None:
    """Python's int-to-str limit (4,300 digits) must not leak out as a bare ValueError: any
    integer that long is far beyond DynamoDB's 9.99...E+125."""
    with pytest.raises(ddbshard.ParseError) as info:
        ddbshard.dumps({"n": value})
    assert info.value.reason == "invalid_number"
    with pytest.raises(ddbshard.ParseError) as info:
        ddbshard.dumps({"s": {value}})  # a number set member too
    assert info.value.reason == "invalid_number"


def test_item_of_400_kb_is_accepted_one_byte_more_refused() -> None:
    # Size = attribute-name UTF-8 bytes + value bytes: "é" is two bytes, the string the rest.
    name = "é"
    fits = "x" * (MAX_ITEM_BYTES - len(name.encode()))
    got = ddbshard.loads(json.dumps({"Item": {name: {"S": fits}}}, ensure_ascii=False))
    assert got == {name: fits}
    e = refusal(json.dumps({"Item": {name: {"S": fits + "x"}}}, ensure_ascii=False))
    assert e.reason == "item_too_large"
    with pytest.raises(ddbshard.ParseError) as info:
        ddbshard.dumps({name: fits + "x"})
    assert info.value.reason == "item_too_large"
    assert ddbshard.loads(ddbshard.dumps({name: fits})) == {name: fits}


def test_item_size_counts_numbers_and_binaries_as_stored() -> None:
    # A binary counts its decoded bytes, not its base64 text; a number its digit pairs plus one.
    number = "1" * 38  # 20 bytes stored
    rest = MAX_ITEM_BYTES - 1 - 1 - 20  # names "b" and "n"
    raw = base64.b64encode(b"\x00" * rest).decode()
    line = json.dumps({"b": {"B": raw}, "n": {"N": number}})
    assert len(line) > MAX_ITEM_BYTES  # far longer as text, exactly 400 KB as stored
    assert len(ddbshard.loads(line)["b"]) == rest
    one_more = base64.b64encode(b"\x00" * (rest + 1)).decode()
    e = refusal(json.dumps({"b": {"B": one_more}, "n": {"N": number}}))
    assert e.reason == "item_too_large"


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ({"NS": ["1", "1.0"]}, "duplicate_set_member"),
        ({"NS": ["100", "1E+2"]}, "duplicate_set_member"),
        ({"NS": ["-0", "0.00"]}, "duplicate_set_member"),
        ({"SS": ["a", "b", "a"]}, "duplicate_set_member"),
        ({"BS": ["AA==", "AQ==", "AA=="]}, "duplicate_set_member"),
        ({"SS": []}, "empty_set"),
        ({"NS": []}, "empty_set"),
        ({"BS": []}, "empty_set"),
        ({"NULL": False}, "invalid_null"),
        ({"NULL": "true"}, "wrong_value_type"),
        ({"BOOL": 1}, "wrong_value_type"),
        ({"N": 1}, "wrong_value_type"),
        ({"S": None}, "wrong_value_type"),
        ({"L": {}}, "wrong_value_type"),
        ({"M": []}, "wrong_value_type"),
        ({"B": "AA="}, "invalid_base64"),
        ({"B": "A==="}, "invalid_base64"),
        ({"B": "AA==AA=="}, "invalid_base64"),
        ({"B": "AA-_"}, "invalid_base64"),
        ({"X": "1"}, "unknown_type"),
        ({}, "unknown_type"),
        ({"S": "x", "N": "1"}, "wrong_value_type"),
    ],
)
def test_value_dynamodb_refuses_is_refused(wire: dict[str, Any], reason: str) -> None:
    e = refusal(json.dumps({"a": wire}))
    assert e.reason == reason
    assert line_refuses(json.dumps({"a": wire})) == reason  # the oracle agrees


@pytest.mark.parametrize(
    ("wire", "want"),
    [
        ({"NS": ["1", "2", "1.5"]}, {Decimal("1"), Decimal("2"), Decimal("1.5")}),
        ({"SS": ["", "a"]}, {"", "a"}),
        ({"BS": ["", "AA=="]}, {b"", b"\x00"}),
        ({"B": ""}, b""),
        ({"S": ""}, ""),
        ({"M": {}}, {}),
        ({"L": []}, []),
        ({"NULL": True}, None),
    ],
)
def test_value_dynamodb_stores_is_read(wire: dict[str, Any], want: Any) -> None:
    assert exact(loads_value(wire)) == exact(want)


def test_duplicate_and_empty_attribute_names_are_refused() -> None:
    assert refusal('{"a":{"S":"x"},"a":{"S":"y"}}').reason == "duplicate_attribute"
    assert refusal('{"m":{"M":{"k":{"S":"x"},"k":{"N":"1"}}}}').reason == "duplicate_attribute"
    assert refusal('{"":{"S":"x"}}').reason == "empty_attribute_name"


def test_attribute_names_of_64_kb_or_more_are_refused() -> None:
    """DynamoDB: names "less than 64 KB"; the limit is on UTF-8 bytes, not characters."""

    def line(name: str) -> str:
        return json.dumps({name: {"S": "x"}}, ensure_ascii=False)

    longest = "n" * 65_535
    assert ddbshard.loads(line(longest)) == {longest: "x"}
    assert refusal(line(longest + "n")).reason == "attribute_name_too_long"
    two_byte = "é" * 32_768  # 32,768 characters, 65,536 bytes
    assert refusal(line(two_byte)).reason == "attribute_name_too_long"


def test_invalid_utf8_is_refused_with_its_offset() -> None:
    line = b'{"Item":{"a":{"S":"ok \xff"}}}'
    e = refusal(line)
    assert e.reason == "invalid_utf8"
    assert e.offset == line.index(b"\xff")
    assert e.line == 0
    # A UTF-8-encoded surrogate, an overlong slash, a cut-off sequence.
    for bad in (b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82"):
        assert refusal(b'{"a":{"S":"' + bad + b'"}}').reason == "invalid_utf8"
    # A lone surrogate written as an escape has no UTF-8 form either.
    assert refusal(b'{"a":{"S":"\\udc00"}}').reason == "invalid_utf8"


def test_lone_surrogate_in_a_str_is_refused() -> None:
    # A Python str can hold what UTF-8 cannot; loads must refuse it, not fail to encode it.
    e = refusal('{"a":{"S":"x\ud800"}}')
    assert e.reason == "invalid_utf8"
    assert e.offset == len('{"a":{"S":"x')


@pytest.mark.parametrize(
    "item",
    [{"a": "x\ud800"}, {"\udc00": "x"}, {"a": {"\ud800"}}, {"a": {"m": ["\udfff"]}}],
)
def test_dumps_refuses_a_lone_surrogate(item: dict[str, Any]) -> None:
    with pytest.raises(ddbshard.ParseError) as info:
        ddbshard.dumps(item)
    assert info.value.reason == "invalid_utf8"


def test_parse_error_carries_where_and_what() -> None:
    line = '{"Item":{"id":{"S":"k1"},"price":{"N":"12.5.0"}}}'
    e = refusal(line)
    assert isinstance(e, ValueError) and isinstance(e, ddbshard.DdbShardError)
    assert e.reason == "invalid_number"
    assert e.line == 0
    assert e.offset == line.index('"12.5.0"')
    assert "12.5.0" in e.excerpt
    assert "12.5.0" in str(e) and "invalid_number" in str(e)


def test_line_reader_numbers_the_lines_it_refuses() -> None:
    reader = ddbshard._core.LineReader("export")
    good = ddbshard.dumps({"a": Decimal("1")}, line=True)
    reader.feed(good + b"\n" + b'{"Item":{"a":{"NULL":false}}}\n' + good + b"\n")
    reader.finish()
    assert (reader.items, reader.refused) == (2, 1)
    ((line_no, reason, message, raw),) = reader.take_refusals()
    assert (line_no, reason, raw) == (2, "invalid_null", b'{"Item":{"a":{"NULL":false}}}')
    assert "line 2" in message
