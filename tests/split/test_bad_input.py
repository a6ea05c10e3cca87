"""Bad input through `python -m ddbshard split`: one test per class of line DynamoDB refuses,
and the files that cannot be read at all.

Each line test puts the refused lines in one input file between good lines (with a blank line
and a CRLF ending before them, so physical line numbers are checked), in plain, gzip and zstd,
and checks everything the run promises: one reject record per refused line (file, line,
reason, target, the raw line or, for bytes that are not UTF-8, `raw_base64`), the counts in
`_summary.json` (read = written + unmatched + rejected, rejected by reason and per target), and
the shards decoded back to exactly the good lines, including the lines on the accepted side
of each limit. The limits and what DynamoDB does at them: /work/shared/AWS-FORMATS.md §4,
rust/core/src/{model/number,parse/*,model/size,input/lines,route/target}.rs.

The file tests cover `--on-bad-file stop|skip` (corrupt or truncated compressed files, a file
the manifest lists that is missing or whose MD5 differs) and `--max-rejects N`.
"""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

from ddbshard import synth
from support.splitting import (
    BAD_LINES,
    CATCH_ALL,
    SUFFIX,
    Wire,
    assert_summary_adds_up,
    copy_export,
    decode_in_python,
    key_of,
    read_lines,
    read_rejects,
    read_summary,
    read_target,
    run_split,
    write_config,
)

SEED = 20261124
COMPRESSIONS = ("none", "gzip", "zstd")
# Good items of every DynamoDB type, the lines around the bad ones.
GOOD = [json.dumps({"Item": it}).encode() for it in synth.make_items(80, seed=SEED)]
# DEFAULT_MAX_LINE in rust/core/src/input/lines.rs: the longest line kept whole.
LINE_LIMIT = 8 << 20
# DynamoDB's item size limit, 400 KB with KB = 1024 bytes (AWS-FORMATS.md §4).
ITEM_LIMIT = 400 * 1024
MAX_NUMBER = "9.9999999999999999999999999999999999999E+125"


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def line(item: Wire) -> bytes:
    return json.dumps({"Item": item}, ensure_ascii=False).encode()


# --------------------------------------------------------------------------------------------
# One file of good and bad lines, split, and everything checked


@dataclass(frozen=True)
class Bad:
    """A line the run must refuse, and the record it must leave."""

    line: bytes
    reason: str
    target: str | None = None  # the target that refused it (None: refused by the parser)
    head_only: bool = False  # the record keeps only the first bytes (an over-long line)


Body = Sequence[bytes | Bad]


def surround(lines: Body) -> list[bytes | Bad]:
    """Good lines before, between and after `lines`, with a blank line and a CRLF ending
    before them so that the record's line number must count physical lines."""
    good = iter(GOOD)
    body: list[bytes | Bad] = [next(good), next(good), b"", next(good) + b"\r"]
    for x in lines:
        body += [x, next(good)]
    body += [next(good), next(good)]
    return body


def everything(_item: Wire) -> str:
    return "Everything"


@dataclass
class Outcome:
    done: subprocess.CompletedProcess[str]
    dest: Path
    summary: dict[str, Any]
    rejects: list[dict[str, Any]]


def check_split(
    tmp_path: Path,
    body: Body,
    compression: str,
    *,
    targets: str = CATCH_ALL,
    route: Callable[[Wire], str] = everything,
) -> Outcome:
    """Splits one file holding `body` (joined with newlines) and checks the reject records,
    the summary and the shards: exactly the `Bad` lines refused, every other line written
    unchanged to the target `route` names. The shards use the input's compression."""
    src = tmp_path / "lines"
    src.mkdir()
    name = "part" + SUFFIX[compression]
    raw_lines = [b.line if isinstance(b, Bad) else b for b in body]
    (src / name).write_bytes(compress(b"\n".join(raw_lines) + b"\n", compression))
    config = write_config(
        tmp_path / "split.toml",
        source="lines",
        dest="out",
        output=f'compression = "{compression}"\nshards = 3',
        targets=targets,
    )
    done = run_split(config)
    bad = {n: b for n, b in enumerate(body, 1) if isinstance(b, Bad)}
    good = [json.loads(b)["Item"] for b in body if not isinstance(b, Bad) and b.strip()]
    assert done.returncode == (1 if bad else 0), done.stderr
    dest = tmp_path / "out"

    rejects = read_rejects(dest)
    assert sorted(r["line"] for r in rejects) == sorted(bad), [
        (r["line"], r["reason"]) for r in rejects
    ]
    for r in rejects:
        want = bad[r["line"]]
        assert r["file"] == name, r
        assert (r["reason"], r["target"]) == (want.reason, want.target), r
        assert isinstance(r["message"], str) and r["message"], r
        assert_raw_kept(r, want)

    summary = read_summary(dest)
    assert_summary_adds_up(summary)
    items = summary["items"]
    assert items["read"] == len(good) + len(bad)
    assert (items["written"], items["unmatched"], items["rejected"]) == (len(good), 0, len(bad))
    assert summary["rejected_by_reason"] == dict(Counter(b.reason for b in bad.values()))

    want_items: dict[str, Counter[str]] = {}
    for item in good:
        want_items.setdefault(route(item), Counter())[key_of(item)] += 1
    refusing = {b.target for b in bad.values() if b.target is not None}
    for t in sorted(refusing | set(want_items)):
        by_target = Counter(b.reason for b in bad.values() if b.target == t)
        assert summary["targets"][t]["rejected"] == dict(by_target), t
        out = read_target(dest, t, compression)
        got = Counter(key_of(item) for item in out.items)
        assert got == want_items.get(t, Counter()), f"{t}: written items differ"
        assert summary["targets"][t]["written"] == sum(got.values())
    return Outcome(done, dest, summary, rejects)


def assert_raw_kept(record: dict[str, Any], want: Bad) -> None:
    """The record keeps the line as text under `raw`, or, when it is not UTF-8, as base64
    under `raw_base64` (never both)."""
    if "raw_base64" in record:
        assert "raw" not in record, record
        raw = base64.b64decode(record["raw_base64"], validate=True)
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
    else:
        raw = record["raw"].encode()
    if want.head_only:
        assert want.line.startswith(raw) and 64 <= len(raw) < len(want.line), len(raw)
    else:
        assert raw == want.line


# --------------------------------------------------------------------------------------------
# Lines the parser refuses


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_invalid_json(tmp_path: Path, compression: str) -> None:
    bad = [
        b'{"Item":{"pk":{"S":"json-truncated"},',
        b'{"Item":{"pk":{"S":"json-trailing"}}} and more',
        b'{"Item":{"pk":{"S":"json-extra-brace"}}}}',
        b"{'Item':{'pk':{'S':'json-single-quotes'}}}",
        b'{"Item":{"pk":{"S":"json-raw\ttab"}}}',
        b'{"Item":{"pk":{"S":"json-bad-escape\\q"}}}',
        b'{"Item":{"pk":{"S":"json-trailing-comma"},}}',
        b'[{"Item":{"pk":{"S":"json-array"}}}]',
        b"not json at all",
    ]
    body = surround(
        [
            *(Bad(b, "invalid_json") for b in bad),
            # insignificant whitespace and escapes are fine
            b' { "Item" : { "pk" : { "S" : "json-\\"spaced\\"\\n" } } } ',
        ]
    )
    check_split(tmp_path, body, compression)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_control_character_lines(tmp_path: Path, compression: str) -> None:
    """A line of control characters is a bad line, quarantined with its file and number. Only
    JSON's whitespace (space, tab, CR; RFC 8259) makes a line blank and skipped: a form feed
    or vertical tab, which Rust's `is_ascii_whitespace` and Python's `bytes.strip` also call
    whitespace, is not, and was skipped without a trace."""
    bad = [b"\x0c", b" \x0c\t", b"\x0b", b"\x00", b"\x1c\x1d\x1e\x1f", b"\t\x0c"]
    blank = [b" \t ", b"\t", b"  \r"]
    check_split(tmp_path, surround([*(Bad(b, "invalid_json") for b in bad), *blank]), compression)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_line_without_item(tmp_path: Path, compression: str) -> None:
    """A valid JSON line that is not `{"Item": {...}}` (ImportTable counts it as malformed and
    abandons the rest of the object, AWS-FORMATS.md §3.5)."""
    bad = [
        b"{}",
        b'{"pk":{"S":"no-item-bare-map"}}',
        b'{"item":{"pk":{"S":"no-item-lowercase"}}}',
        b'{"Item":{"pk":{"S":"no-item-extra-key"}},"Extra":{"S":"x"}}',
        b'{"Items":[{"pk":{"S":"no-item-items-array"}}]}',
        b'{"Metadata":{"WriteTimestampMicros":"1680109764000000"},'
        b'"Keys":{"pk":{"S":"no-item-incremental"}},"NewImage":{"pk":{"S":"no-item-incremental"}}}',
    ]
    check_split(tmp_path, surround([Bad(b, "not_an_item") for b in bad]), compression)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_unknown_type_tag(tmp_path: Path, compression: str) -> None:
    bad = [
        b'{"Item":{"pk":{"S":"type-x"},"a":{"X":"1"}}}',
        b'{"Item":{"pk":{"S":"type-lowercase"},"a":{"s":"1"}}}',
        b'{"Item":{"pk":{"S":"type-mixed-case"},"a":{"Null":true}}}',
        b'{"Item":{"pk":{"S":"type-sss"},"a":{"SSS":["1"]}}}',
        b'{"Item":{"pk":{"S":"type-empty"},"a":{}}}',
        b'{"Item":{"pk":{"S":"type-in-map"},"m":{"M":{"k":{"STRING":"1"}}}}}',
        b'{"Item":{"pk":{"S":"type-in-list"},"l":{"L":[{"S":"ok"},{"T":"x"}]}}}',
    ]
    check_split(tmp_path, surround([Bad(b, "unknown_type") for b in bad]), compression)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_invalid_number(tmp_path: Path, compression: str) -> None:
    """At most 38 significant digits (leading and trailing zeros trimmed); magnitudes from
    1E-130 to 9.99...E+125 (38 nines); no NaN or Infinity, which boto3 accepts and DynamoDB
    never stores."""
    refused = [
        "123456789012345678901234567890123456789",  # 39 digits
        "-1.23456789012345678901234567890123456789",  # 39 digits
        "9.99999999999999999999999999999999999999E+125",  # 39 digits
        "1E+126",
        "-1E+126",
        "10E+125",
        "1E-131",
        "-1E-131",
        "0.01E-129",
        "NaN",
        "Infinity",
        "-Infinity",
        "",
        "1e",
        "0x1F",
    ]
    accepted = [
        "12345678901234567890123456789012345678",  # 38 digits
        "-1.2345678901234567890123456789012345678",
        MAX_NUMBER,
        "-" + MAX_NUMBER,
        "1E-130",
        "-1E-130",
        "0.1E-129",
        "1" + "0" * 45,  # one significant digit: trailing zeros do not count
        "0." + "0" * 45 + "1",  # nor do leading ones
        "0",
    ]
    lines: list[bytes | Bad] = [
        Bad(line({"pk": {"S": f"num-bad-{i}"}, "n": {"N": n}}), "invalid_number")
        for i, n in enumerate(refused)
    ]
    nested_refused = [
        {"NS": ["1", "NaN"]},
        {"M": {"x": {"N": "1E+126"}}},
        {"L": [{"N": "Infinity"}]},
    ]
    lines += [
        Bad(line({"pk": {"S": f"num-bad-nested-{i}"}, "v": v}), "invalid_number")
        for i, v in enumerate(nested_refused)
    ]
    lines += [line({"pk": {"S": f"num-ok-{i}"}, "n": {"N": n}}) for i, n in enumerate(accepted)]
    lines.append(line({"pk": {"S": "num-ok-set"}, "ns": {"NS": [MAX_NUMBER, "1E-130", "-0.5"]}}))
    check_split(tmp_path, surround(lines), compression)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_invalid_base64(tmp_path: Path, compression: str) -> None:
    """B and BS members must be standard padded base64 (DynamoDB refuses what botocore's lax
    decoder would skip over); an empty binary is allowed outside keys."""
    refused = [
        {"B": "not base64!"},
        {"B": "AAE"},  # unpadded
        {"B": "AA=A"},  # misplaced padding
        {"B": "AA-_"},  # URL-safe alphabet
        {"B": "AAEC\n"},
        {"BS": ["AAEC", "%%%%"]},
        {"BS": ["AAE"]},
        {"M": {"deep": {"B": "AAE*"}}},
        {"L": [{"BS": ["AAEC", "A"]}]},
    ]
    accepted = [{"B": ""}, {"B": "AAEC"}, {"B": "AA=="}, {"BS": ["AAEC", "AA==", ""]}]
    lines: list[bytes | Bad] = [
        Bad(line({"pk": {"S": f"b64-bad-{i}"}, "b": v}), "invalid_base64")
        for i, v in enumerate(refused)
    ]
    lines += [line({"pk": {"S": f"b64-ok-{i}"}, "b": v}) for i, v in enumerate(accepted)]
    check_split(tmp_path, surround(lines), compression)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_empty_set(tmp_path: Path, compression: str) -> None:
    """No empty SS, NS or BS, at any depth; empty lists and maps, and empty string or binary
    members, are allowed (AWS-FORMATS.md §4)."""
    refused = [
        {"SS": []},
        {"NS": []},
        {"BS": []},
        {"M": {"inner": {"NS": []}}},
        {"L": [{"S": "x"}, {"BS": []}]},
    ]
    accepted = [{"L": []}, {"M": {}}, {"SS": [""]}, {"BS": [""]}, {"L": [{"SS": ["a"]}]}]
    lines: list[bytes | Bad] = [
        Bad(line({"pk": {"S": f"set-empty-{i}"}, "s": v}), "empty_set")
        for i, v in enumerate(refused)
    ]
    lines += [line({"pk": {"S": f"set-ok-{i}"}, "s": v}) for i, v in enumerate(accepted)]
    check_split(tmp_path, surround(lines), compression)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_duplicate_set_members(tmp_path: Path, compression: str) -> None:
    """Set members must be unique, compared as DynamoDB stores them: strings after JSON
    unescaping, numbers by value ("1" and "1.0" are one number to DynamoDB, which refuses
    such an NS with "Input collection contains duplicates"), binaries by their bytes."""
    refused = [
        {"SS": ["a", "b", "a"]},
        {"SS": ["\u00e9", "\\u00e9"]},  # raw UTF-8 and its JSON escape (unescaped below)
        {"NS": ["1", "1.0"]},
        {"NS": ["1", "1E0"]},
        {"NS": ["100", "1E2"]},
        {"NS": ["-1.50", "2", "-1.5"]},
        {"NS": ["0.000", "0"]},
        {"BS": ["AAEC", "AAEC"]},
        {"M": {"inner": {"SS": ["x", "x"]}}},
    ]
    accepted = [
        {"SS": ["a", "A"]},
        {"SS": ["\u00e9", "e\u0301"]},  # NFC and NFD: different bytes, different members
        {"NS": ["1", "10", "-1", "1.01"]},
        {"BS": ["AA==", "AAA="]},  # one zero byte, two zero bytes
    ]
    lines: list[bytes | Bad] = []
    for i, v in enumerate(refused):
        text = line({"pk": {"S": f"dup-{i}"}, "s": v}).replace(b"\\\\u00e9", b"\\u00e9")
        lines.append(Bad(text, "duplicate_set_member"))
    lines += [line({"pk": {"S": f"dup-ok-{i}"}, "s": v}) for i, v in enumerate(accepted)]
    check_split(tmp_path, surround(lines), compression)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_null_false(tmp_path: Path, compression: str) -> None:
    refused = [{"NULL": False}, {"M": {"k": {"NULL": False}}}, {"L": [{"NULL": False}]}]
    lines: list[bytes | Bad] = [
        Bad(line({"pk": {"S": f"null-{i}"}, "v": v}), "invalid_null") for i, v in enumerate(refused)
    ]
    lines.append(line({"pk": {"S": "null-ok"}, "v": {"NULL": True}}))
    check_split(tmp_path, surround(lines), compression)


def nested(levels: int, kinds: str = "ML") -> Wire:
    """A value whose innermost scalar sits at nesting level `levels`, the top-level attribute
    being level 1 (DynamoDB allows 32), wrapped alternately in the container types `kinds`."""
    value: Wire = {"S": "deep"}
    for i in range(levels - 1):
        kind = kinds[i % len(kinds)]
        value = {"M": {"k": value}} if kind == "M" else {"L": [value]}
    return value


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_nesting_over_32_levels(tmp_path: Path, compression: str) -> None:
    lines: list[bytes | Bad] = []
    for kinds in ("ML", "L", "M"):
        lines.append(line({"pk": {"S": f"nest-32-{kinds}"}, "d": nested(32, kinds)}))
        deeper = line({"pk": {"S": f"nest-33-{kinds}"}, "d": nested(33, kinds)})
        lines.append(Bad(deeper, "too_deep"))
    # far deeper than any recursion limit: refused, not a crash (written out by hand, as
    # json.dumps would hit Python's own recursion limit)
    deepest = b'{"L":[' * 4999 + b'{"S":"deep"}' + b"]}" * 4999
    lines.append(Bad(b'{"Item":{"pk":{"S":"nest-5000"},"d":' + deepest + b"}}", "too_deep"))
    check_split(tmp_path, surround(lines), compression)


def item_of_size(pk: str, size: int, kind: str = "S") -> bytes:
    """A line whose item is `size` bytes as DynamoDB counts them: attribute names plus values,
    a string by its UTF-8 bytes, a binary by its decoded bytes (AWS-FORMATS.md §4)."""
    n = size - len("pk") - len(pk) - len("v")
    if kind == "B":
        value = {"B": base64.b64encode(b"\xa5" * n).decode()}
    elif kind == "é":
        value = {"S": "x" * (n % 2) + "\u00e9" * (n // 2)}
    else:
        value = {"S": "x" * n}
    return line({"pk": {"S": pk}, "v": value})


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_item_over_400_kb(tmp_path: Path, compression: str) -> None:
    lines: list[bytes | Bad] = [
        item_of_size("size-S-max", ITEM_LIMIT),
        Bad(item_of_size("size-S-over", ITEM_LIMIT + 1), "item_too_large"),
        # a binary counts its bytes, not its base64 text (a third longer)
        item_of_size("size-B-max", ITEM_LIMIT, "B"),
        Bad(item_of_size("size-B-over", ITEM_LIMIT + 1, "B"), "item_too_large"),
        # é is two UTF-8 bytes; written as \u00e9 escapes the line is six bytes per é
        item_of_size("size-E-max", ITEM_LIMIT, "é").replace("\u00e9".encode(), b"\\u00e9"),
        Bad(item_of_size("size-E-over", ITEM_LIMIT + 1, "é"), "item_too_large"),
    ]
    check_split(tmp_path, surround(lines), compression)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_invalid_utf8(tmp_path: Path, compression: str) -> None:
    """Bytes that are not UTF-8 are refused, and the record keeps the line as `raw_base64`
    (it cannot be JSON text). A lone surrogate escape is valid UTF-8 text but no character:
    refused too, its record keeps `raw`."""
    refused = [
        b'{"Item":{"pk":{"S":"utf8-ff"},"s":{"S":"\xff"}}}',
        b'{"Item":{"pk":{"S":"utf8-latin1"},"s":{"S":"caf\xe9"}}}',
        b'{"Item":{"pk":{"S":"utf8-cut"},"s":{"S":"caf\xc3"}}}',
        b'{"Item":{"pk":{"S":"utf8-overlong"},"s":{"S":"\xc0\xaf"}}}',
        b'{"Item":{"pk":{"S":"utf8-surrogate"},"s":{"S":"\xed\xa0\x80"}}}',
        b'{"Item":{"pk":{"S":"utf8-in-name"},"\xfe":{"S":"x"}}}',
        b'{"Item":{"pk":{"S":"utf8-escape"},"s":{"S":"\\ud800"}}}',
        b'{"Item":{"pk":{"S":"utf8-low-escape"},"s":{"S":"\\udc00x"}}}',
    ]
    accepted = [
        '{"Item":{"pk":{"S":"utf8-ok-raw"},"s":{"S":"caf\u00e9 \U0001f600 \u65e5\u672c"}}}',
        '{"Item":{"pk":{"S":"utf8-ok-escaped"},"s":{"S":"\\ud83d\\ude00 \\u00e9"}}}',
    ]
    lines: list[bytes | Bad] = [Bad(b, "invalid_utf8") for b in refused]
    lines += [a.encode() for a in accepted]
    out = check_split(tmp_path, surround(lines), compression)
    as_base64 = sum("raw_base64" in r for r in out.rejects)
    assert as_base64 == len(refused) - 2, "every non-UTF-8 line is kept as raw_base64"


def padded(pk: str, length: int) -> bytes:
    """A small item's line padded with JSON whitespace to exactly `length` bytes."""
    head, tail = b'{"Item":{"pk":{"S":"' + pk.encode() + b'"}', b"}}"
    return head + b" " * (length - len(head) - len(tail)) + tail


@pytest.mark.slow
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_lines_of_several_mb(tmp_path: Path, compression: str) -> None:
    """Under the line limit (8 MiB, lines.rs) a line of several MB is an item like any other:
    written when the item fits 400 KB, refused as too large when not. Over the limit the line
    is refused without being buffered; its record keeps its first bytes."""
    lines: list[bytes | Bad] = [
        padded("long-3mb-small-item", 3 << 20),
        Bad(line({"pk": {"S": "long-5mb-item"}, "v": {"S": "x" * (5 << 20)}}), "item_too_large"),
        padded("long-at-limit", LINE_LIMIT),
        Bad(padded("long-over-limit", LINE_LIMIT + 1), "line_too_long", head_only=True),
        Bad(
            line({"pk": {"S": "long-9mb-item"}, "v": {"S": "x" * (9 << 20)}}),
            "line_too_long",
            head_only=True,
        ),
    ]
    check_split(tmp_path, surround(lines), compression)


# --------------------------------------------------------------------------------------------
# Items a target refuses: its keys (ImportTable fails an item without the table's and GSIs'
# key attributes of the declared types, AWS-FORMATS.md §3.1)

KEY_TARGETS = """
[[target]]
name = "Posts"
where = "kind = :post"
values = { ":post" = "post" }
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "N", author = "S" }

[target.table]
global_secondary_indexes = [ { name = "byAuthor", hash = "author", projection = "ALL" } ]

[[target]]
name = "Blobs"
where = "kind = :blob"
values = { ":blob" = "blob" }
key = { hash = "id" }
key_types = { id = "B" }
"""


def kind_target(item: Wire) -> str:
    return "Posts" if item["kind"]["S"] == "post" else "Blobs"


def post(**attrs: Wire) -> Wire:
    return {"kind": {"S": "post"}, "pk": {"S": "POST#1"}, "sk": {"N": "1"}, **attrs}


def blob(**attrs: Wire) -> Wire:
    return {"kind": {"S": "blob"}, "id": {"B": "AAEC"}, **attrs}


def without(item: Wire, name: str) -> Wire:
    return {k: v for k, v in item.items() if k != name}


def key_lines(good: Sequence[Wire], bad: Sequence[tuple[Wire, str, str]]) -> list[bytes | Bad]:
    """Good items (to the target their kind routes to) and refused ones with (reason, target),
    interleaved and surrounded by good items of both targets."""
    body: list[bytes | Bad] = [line(post(n={"N": "0"})), line(blob(n={"N": "0"}))]
    for i, (item, reason, target) in enumerate(bad):
        body.append(Bad(line({**item, "case": {"N": str(i)}}), reason, target))
        if i < len(good):
            body.append(line(good[i]))
    body += [line(item) for item in good[len(bad) :]]
    body += [line(post(n={"N": "9"})), line(blob(n={"N": "9"}))]
    return body


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_missing_key_attribute_for_the_routed_target(tmp_path: Path, compression: str) -> None:
    """The key is the routed target's: an item without `pk` is fine for Blobs; GSI keys are
    optional."""
    bad = [
        (without(post(), "pk"), "missing_key", "Posts"),
        (without(post(), "sk"), "missing_key", "Posts"),
        (without(blob(pk={"S": "POST#1"}, sk={"N": "1"}), "id"), "missing_key", "Blobs"),
    ]
    good = [blob(sk={"N": "3"}), post(sk={"N": "2"}), post(author={"S": "ann"})]
    body = key_lines(good, bad)
    check_split(tmp_path, body, compression, targets=KEY_TARGETS, route=kind_target)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_wrong_key_type(tmp_path: Path, compression: str) -> None:
    bad = [
        (post(pk={"N": "1"}), "wrong_key_type", "Posts"),
        (post(sk={"S": "1"}), "wrong_key_type", "Posts"),
        (post(pk={"SS": ["POST#1"]}), "wrong_key_type", "Posts"),
        (post(author={"N": "7"}), "wrong_key_type", "Posts"),  # a GSI key
        (blob(id={"S": "AAEC"}), "wrong_key_type", "Blobs"),
        (blob(id={"BS": ["AAEC"]}), "wrong_key_type", "Blobs"),
    ]
    good = [post(sk={"N": "-1.5"}, author={"S": "bo"}), blob(id={"B": "/w=="})]
    body = key_lines(good, bad)
    check_split(tmp_path, body, compression, targets=KEY_TARGETS, route=kind_target)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_empty_key(tmp_path: Path, compression: str) -> None:
    """Empty strings and binaries are allowed, except in table and index keys."""
    bad = [
        (post(pk={"S": ""}), "empty_key", "Posts"),
        (post(author={"S": ""}), "empty_key", "Posts"),  # a GSI key
        (blob(id={"B": ""}), "empty_key", "Blobs"),
    ]
    good = [post(text={"S": ""}), blob(data={"B": ""}), post(pk={"S": " "})]
    body = key_lines(good, bad)
    check_split(tmp_path, body, compression, targets=KEY_TARGETS, route=kind_target)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_key_too_long(tmp_path: Path, compression: str) -> None:
    """Partition keys are 1..2048 bytes (UTF-8 bytes of a string, decoded bytes of a binary)."""
    bad = [
        (post(pk={"S": "p" * 2049}), "key_too_long", "Posts"),
        (post(pk={"S": "\u00e9" * 1025}), "key_too_long", "Posts"),  # 2050 bytes
        (blob(id={"B": base64.b64encode(b"\x00" * 2049).decode()}), "key_too_long", "Blobs"),
    ]
    good = [
        post(pk={"S": "p" * 2048}),
        post(pk={"S": "\u00e9" * 1024}),
        blob(id={"B": base64.b64encode(b"\x00" * 2048).decode()}),  # 2732 base64 characters
    ]
    body = key_lines(good, bad)
    check_split(tmp_path, body, compression, targets=KEY_TARGETS, route=kind_target)


# --------------------------------------------------------------------------------------------
# Files that cannot be read: --on-bad-file stop (the default) or skip

MODES = {"default": (), "stop": ("--on-bad-file", "stop"), "skip": ("--on-bad-file", "skip")}


@dataclass
class BadFileCase:
    source: Path
    bad_name: str  # how the run names the bad file (as reject records name files)
    reason_words: tuple[str, ...]  # the reason names one of these
    good: list[Wire]  # the items of the other files
    bad: list[Wire]  # the items the bad file holds (or held)


def item_lines(items: Sequence[Wire]) -> bytes:
    return b"".join(line(it) + b"\n" for it in items)


def line_files_case(tmp_path: Path, kind: str) -> BadFileCase:
    """Three line files, no manifest; the middle one (b) is damaged after the fact. It holds
    a refused line early on, before any damage."""
    src = tmp_path / "lines"
    src.mkdir()
    items = list(synth.make_items(9000, seed=SEED))
    a, b, c = items[:3000], items[3000:6000], items[6000:]
    (src / "a.json.zst").write_bytes(compress(item_lines(a), "zstd"))
    (src / "c.json").write_bytes(item_lines(c))
    body = item_lines(b[:2]) + BAD_LINES["invalid_number"] + b"\n" + item_lines(b[2:])
    if kind.startswith("gzip"):
        data = gzip.compress(body)
        name = "b.json.gz"
        if kind == "gzip_bad_crc":  # every byte inflates; the trailer's CRC32 does not match
            data = data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:]
        elif kind == "gzip_garbage":
            mid = len(data) // 2
            data = data[:mid] + bytes(range(256)) * 4 + data[mid + 1024 :]
        else:
            data = data[: len(data) // 2]
        words: tuple[str, ...] = ("corrupt", "truncated", "crc")
    else:
        data = compress(body, "zstd")
        data = data[: len(data) // 2]
        name = "b.json.zst"
        words = ("corrupt", "truncated")
    (src / name).write_bytes(data)
    return BadFileCase(src, name, words, a + c, b)


def export_case(tmp_path: Path, kind: str) -> BadFileCase:
    """An export in AWS's layout (manifests with item counts and MD5s); one listed data file
    is missing, or holds the same lines compressed differently (so its MD5 differs)."""
    export = synth.write_export(tmp_path / "made", 900, files=3, seed=SEED, compress="gzip")
    root, files = copy_export(export, tmp_path / "copy")
    items = [read_lines(gzip.decompress(f.read_bytes())) for f in files]
    bad = files[1]
    if kind == "missing":
        bad.unlink()
        words: tuple[str, ...] = ("missing",)
    else:
        bad.write_bytes(gzip.compress(gzip.decompress(bad.read_bytes()), compresslevel=1))
        words = ("md5",)
    return BadFileCase(root, f"data/{bad.name}", words, items[0] + items[2], items[1])


BAD_FILE_CASES: dict[str, Callable[[Path, str], BadFileCase]] = {
    "gzip_bad_crc": line_files_case,
    "gzip_garbage": line_files_case,
    "gzip_truncated": line_files_case,
    "zstd_truncated": line_files_case,
    "missing": export_case,
    "md5_mismatch": export_case,
}


def items_on_disk(dest: Path) -> Counter[str]:
    """Every item in any file under a target's data/ folder (shards are uncompressed here)."""
    found: Counter[str] = Counter()
    for path in dest.glob("*/data/*"):
        found.update(key_of(it) for it in read_lines(decode_in_python(path)))
    return found


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", BAD_FILE_CASES)
def test_bad_file(tmp_path: Path, kind: str, mode: str) -> None:
    case = BAD_FILE_CASES[kind](tmp_path, kind)
    config = write_config(
        tmp_path / "split.toml",
        source=str(case.source),
        dest="out",
        output='compression = "none"\nshards = 2',
        targets=CATCH_ALL,
    )
    done = run_split(config, *MODES[mode])
    dest = tmp_path / "out"
    bad_keys = {key_of(it) for it in case.bad}

    if mode != "skip":
        assert done.returncode == 2, done.stderr
        message = done.stderr.strip().splitlines()
        assert len(message) == 1, done.stderr
        assert message[0].startswith("ddbshard: error: "), message
        assert case.bad_name.split("/")[-1] in message[0], message
        assert "Traceback" not in done.stderr
        written = items_on_disk(dest) if dest.exists() else Counter()
        assert not bad_keys & set(written), "items of the bad file were written"
        return

    assert done.returncode == 1, done.stderr
    summary = read_summary(dest)
    (entry,) = summary["files"]["bad"]
    assert entry["file"] == case.bad_name, entry
    assert any(w in entry["reason"].lower() for w in case.reason_words), entry
    # the bad file counts for nothing: not read, not rejected, not written
    assert_summary_adds_up(summary)
    assert summary["items"]["read"] == len(case.good)
    assert summary["items"]["written"] == len(case.good)
    assert summary["items"]["rejected"] == 0
    assert summary["rejected_by_reason"] == {}
    assert read_rejects(dest) == []
    out = read_target(dest, "Everything", "none")
    assert Counter(key_of(it) for it in out.items) == Counter(key_of(it) for it in case.good)


# --------------------------------------------------------------------------------------------
# --max-rejects


@pytest.mark.parametrize("limit", [5, 1000])
def test_max_rejects(tmp_path: Path, limit: int) -> None:
    """Twenty files, each with two refused lines among eight good ones: with --max-rejects 5
    the run stops early (well before the last file) with exit 1 and says why in the summary;
    what it did write and reject is recorded and adds up. A limit never reached changes
    nothing."""
    src = tmp_path / "lines"
    src.mkdir()
    items = list(synth.make_items(160, seed=SEED))
    refused = list(BAD_LINES.values())
    total = 0
    for f in range(20):
        lines = [line(it) for it in items[f * 8 : f * 8 + 8]]
        lines.insert(2, refused[f % len(refused)])
        lines.insert(7, refused[(f + 1) % len(refused)])
        (src / f"part-{f:02d}.json").write_bytes(b"\n".join(lines) + b"\n")
        total += len(lines)
    config = write_config(
        tmp_path / "split.toml",
        source="lines",
        dest="out",
        output='compression = "none"\nshards = 2',
        targets=CATCH_ALL,
    )
    done = run_split(config, "--max-rejects", str(limit))
    assert done.returncode == 1, done.stderr
    dest = tmp_path / "out"
    summary = read_summary(dest)
    assert_summary_adds_up(summary)
    rejects = read_rejects(dest)
    assert (
        len(rejects) == summary["items"]["rejected"] == sum(summary["rejected_by_reason"].values())
    )
    assert {r["raw"].encode() for r in rejects} <= set(refused)
    out = read_target(dest, "Everything", "none")
    assert len(out.items) == summary["items"]["written"]
    assert {key_of(it) for it in out.items} <= {key_of(it) for it in items}

    if limit < 40:
        assert "max-rejects" in summary["stopped"], summary.get("stopped")
        assert len(rejects) >= limit
        assert summary["items"]["read"] < total, "the run went on after the limit"
    else:
        assert not summary.get("stopped"), summary["stopped"]
        assert summary["items"]["read"] == total
        assert len(rejects) == 40
        assert len(out.items) == len(items)
