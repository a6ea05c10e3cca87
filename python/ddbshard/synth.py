"""Synthetic DynamoDB data: realistic items and full exports in the AWS layout, for tests and demos.

This module owns generating fake-but-realistic DynamoDB items (`make_items`) and writing them as a
DynamoDB full export to S3 as it looks on disk (`write_export`): `AWSDynamoDB/<export id>/` with
`manifest-summary.json`, `manifest-files.json`, their `.md5` files, `_started` and `data/*.json.gz`
files of `{"Item":{...}}` lines. Everything is deterministic for a seed, so the same arguments give
byte-identical output, and item *i* does not depend on how many items come before it in a call
(`make_items(n, seed, start=s)` is a slice of the same sequence), so any range can be made alone.

Items come in groups of eight per user (one profile, seven posts or comments), sorted by sort key
inside the group, and users appear in a scrambled order, like a partition of a real export: an
item collection together, partition keys in hash order. The `kind` attribute ("post", "profile",
"comment") and the occasionally missing `created_at` make routing demos interesting.

Not quite what DynamoDB itself would write: numbers are kept in the forms they were "written" in
(`"1.50"`, `"1.5E+3"`), where a real export prints DynamoDB's normalised form (`"1.5"`, `"1500"`).
That is deliberate: a tool must carry number text through unchanged, and these forms test it.

Speed, for exports of millions of items: an item is written straight as its JSON line, a template
filled with its own values (keys, times, a score, a counter) and two pre-encoded fragments drawn
from pools made once per process (the attributes any item may have, and those of its kind: 8192
of each, so a fragment rarely recurs within a gzip window of ~60 items; compressed sizes are
those of the per-value generator this replaced). All random draws of a user's eight
items come from one SHAKE-128 digest of (seed, user index). `make_items` parses those lines, so
items and files always agree. Writing a data file overlaps making lines with compressing them (a
thread), and `jobs` writes several files at once. gzip level 6 (zlib) then costs about as much
CPU as making the lines; `gzip_level=1` about halves that part, for ~25% larger files.

CLI: ``python -m ddbshard.synth OUT_DIR --items N --files F --seed S [--jobs J]`` prints the
export root.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import functools
import hashlib
import importlib
import itertools
import json
import os
import queue
import random
import struct
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Final, NamedTuple, Protocol, TypeVar

from ddbshard.compression import COMPRESSIONS

__all__ = ["default_export_id", "main", "make_items", "write_export"]

Item = dict[str, Any]
T = TypeVar("T")

GROUP: Final = 8
"""Items per user: slot 0 is the profile, the other slots are posts or comments."""

_USER_SPACE: Final = 10**8
"""User numbers are 8 decimal digits; a bijection maps group index -> user number, so primary
keys are unique for the first GROUP * 10**8 items."""

_REGION: Final = "us-east-1"
_ACCOUNT: Final = "123456789012"

_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)

# Time window of the fake data: 2021-01-01T00:00:00Z .. 2025-12-31T23:59:59Z.
_T0: Final = 1_609_459_200
_T_USER_END: Final = 1_717_200_000  # 2024-06-01: latest account creation
_T_END: Final = 1_767_225_599

_NAMES: Final = (
    "Zoë Martin", "José García", "Renée Dubois", "김민준", "이서연", "박지훈 (Jihoon)",
    "Łukasz Nowak", "Ångström Lab", "François Müller", "Ñandú Pérez", "Αλέξανδρος", "Дмитрий",
    "山田太郎", "Seán O'Brien", 'Ana "Ani" Silva', "😀 Smiley", "Chloé 🎉", "Mary Smith",
    "John Doe", "Priya Patel", "Nguyễn Văn An", "Søren Kierkegaard", "Émilie", "Raj",
)  # fmt: skip
_WORDS: Final = (
    "the", "a", "table", "export", "shard", "import", "data", "item", "key", "value", "stream",
    "fast", "slow", "migration", "night", "coffee", "review", "release", "bug", "fix", "deploy",
    "latency", "queue", "batch", "weekend", "photo", "trip", "music", "game", "score", "city",
    "café", "naïve", "résumé", "über", "São Paulo", "straße", "façade", "piñata", "crème brûlée",
    "日本", "한국어", "데이터", "서울", "😀", "🚀", "🔥", "🎉", "ünïcödé", "Ωmega", "ñ", "é",
)  # fmt: skip
_ESCAPY: Final = (
    'she said "hello" twice',
    "C:\\Users\\data\\export.json",
    "line one\nline two\nline three",
    "tab\tseparated\tcolumns",
    'quote \' and "double" and \\ backslash',
    "literal \\n is not a newline",
    "control \x01 and \x1f chars",
    "</script><b>html</b> & ampersand",
    "unicode line\u2028separator",
    '{"looks": "like json"}',
)
_TAGS: Final = (
    "aws", "dynamodb", "migration", "news", "tech", "music", "travel", "food", "sport", "art",
    "code", "rust", "python", "café", "데이터", "😀", "q&a", '"quoted"', "a\\b",
)  # fmt: skip
_BADGES: Final = ("early", "verified", "top-10", "moderator", "donor", "beta", "🏆", "ÉLITE")
_SOURCES: Final = ("web", "ios", "android", "api", "import")
_LANGS: Final = ("en", "fr", "ko", "ja", "pt-BR", "de", "es")
_REACTIONS: Final = ("😀", "👍", "❤️", "🎉", "😢", "like", "laugh")
_EXTREMES: Final = (
    "1E-130",
    "-1E-130",
    "9.9999999999999999999999999999999999999E+125",
    "-9.9999999999999999999999999999999999999E+125",
    "0",
    "0.0",
)


# --------------------------------------------------------------------------------------------
# Values


class _Rng(random.Random):
    """``random.Random`` with cheap integer and choice draws (``randrange`` costs ~1 us)."""

    def between(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi); for spans well below 2**53."""
        return lo + int(self.random() * (hi - lo))

    def pick(self, seq: Sequence[T]) -> T:
        return seq[int(self.random() * len(seq))]


def _subsets(pool: Sequence[str], most: int) -> tuple[tuple[str, ...], ...]:
    """Every subset of 1..most distinct members of ``pool``, for one-draw set values."""
    return tuple(c for k in range(1, most + 1) for c in itertools.combinations(pool, k))


_TAG_SETS: Final = _subsets(_TAGS, 3)
_BADGE_SETS: Final = _subsets(_BADGES, 2)
_REACTION_SETS: Final = _subsets(_REACTIONS, 3)
_DAYS: Final = tuple(
    time.strftime("%Y-%m-%d", time.gmtime(_T0 + d * 86_400))
    for d in range((_T_END - _T0) // 86_400 + 1)
)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@functools.cache
def _clock() -> tuple[str, ...]:
    """``T12:34:56`` for every second of a day (indexing beats formatting per item)."""
    return tuple(f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400))


def _number(rng: _Rng) -> str:
    """A number text in one of the forms users write: integers, decimals with trailing zeros,
    negatives, exponents, 38-digit values, and (rarely) the ends of DynamoDB's range."""
    r = rng.random()
    if r < 0.45:
        return str(rng.between(0, 100_000))
    if r < 0.55:
        return str(-rng.between(1, 100_000))
    if r < 0.75:
        v = rng.between(0, 100_000)
        sign = "-" if rng.random() < 0.2 else ""
        return f"{sign}{v // 100}.{v % 100:02d}"  # "1.50": trailing zero kept
    if r < 0.90:
        mant = f"{rng.between(1, 10)}.{rng.between(0, 100)}"
        exp = rng.between(1, 40)
        sign = "-" if rng.random() < 0.3 else "+"
        neg = "-" if rng.random() < 0.15 else ""
        return f"{neg}{mant}E{sign}{exp}"
    if r < 0.97:
        return _long_number(rng)
    return rng.pick(_EXTREMES)


def _long_number(rng: _Rng) -> str:
    """A number with exactly 38 significant digits (the most DynamoDB keeps)."""
    digits = str(rng.randrange(10**37, 10**38))
    if digits[-1] == "0":
        digits = digits[:-1] + "7"  # keep all 38 digits significant
    form = rng.between(0, 4)
    if form == 0:
        return digits
    if form == 1:
        return "-" + digits
    if form == 2:
        point = rng.between(1, 38)
        return f"{digits[:point]}.{digits[point:]}"
    return f"-0.{digits}"


# Pools: values that are slow to make (prose, sets, blobs) are made once, 4096 of each kind from
# a fixed seed, and items draw from them. Pools hold immutable values (str, tuple); an item gets
# fresh lists, so callers may mutate items freely.
_POOL: Final = 4096


@functools.cache
def _words_pool(lo: int, hi: int) -> tuple[str, ...]:
    rng = _Rng(f"words:{lo}:{hi}")
    return tuple(" ".join(rng.choices(_WORDS, k=rng.between(lo, hi))) for _ in range(_POOL))


@functools.cache
def _text_pool(lo: int, hi: int) -> tuple[str, ...]:
    """Prose; about one in twenty carries characters that need JSON escapes."""
    rng = _Rng(f"text:{lo}:{hi}")
    out = []
    for words in _words_pool(lo, hi):
        out.append(f"{words} {rng.pick(_ESCAPY)}" if rng.random() < 0.05 else words)
    rng.shuffle(out)
    return tuple(out)


@functools.cache
def _blob_pool(lo: int, hi: int) -> tuple[str, ...]:
    rng = _Rng(f"blob:{lo}:{hi}")
    return tuple(_b64(rng.randbytes(rng.between(lo, hi))) for _ in range(_POOL))


@functools.cache
def _number_set_pool() -> tuple[tuple[str, ...], ...]:
    """1-5 numerically distinct numbers (a set may not hold both "1.5" and "1.50").

    Member ``v`` stands for v/1000, written with three places ("12.500") or, for whole values,
    as an integer; distinct ``v`` give distinct values whatever the text."""
    rng = _Rng("NS")
    pool = []
    for _ in range(_POOL):
        members = []
        for v in sorted({rng.between(-500_000, 100_000_000) for _ in range(rng.between(1, 6))}):
            if v % 1000 == 0:
                members.append(str(v // 1000))
            else:
                sign = "-" if v < 0 else ""
                members.append(f"{sign}{abs(v) // 1000}.{abs(v) % 1000:03d}")
        rng.shuffle(members)  # exports do not keep set order
        pool.append(tuple(members))
    return tuple(pool)


@functools.cache
def _binary_set_pool() -> tuple[tuple[str, ...], ...]:
    rng = _Rng("BS")
    pool = []
    for _ in range(_POOL):
        members = {rng.randbytes(rng.between(4, 17)) for _ in range(rng.between(1, 4))}
        pool.append(tuple(_b64(m) for m in sorted(members)))
    return tuple(pool)


def _words(rng: _Rng, lo: int, hi: int) -> str:
    return rng.pick(_words_pool(lo, hi))


def _text(rng: _Rng, lo: int, hi: int) -> str:
    return rng.pick(_text_pool(lo, hi))


def _blob(rng: _Rng, lo: int, hi: int) -> str:
    """Base64 of lo..hi-1 random bytes."""
    return rng.pick(_blob_pool(lo, hi))


def _number_set(rng: _Rng) -> list[str]:
    return list(rng.pick(_number_set_pool()))


def _binary_set(rng: _Rng) -> list[str]:
    return list(rng.pick(_binary_set_pool()))


def _meta(rng: _Rng) -> dict[str, Any]:
    """Request metadata: a small map with a nested map."""
    meta: dict[str, Any] = {
        "src": {"S": rng.pick(_SOURCES)},
        "client": {"M": {"v": {"S": f"{rng.between(1, 6)}.{rng.between(0, 20)}"}}},
    }
    if rng.random() < 0.2:
        meta["client"]["M"]["beta"] = {"BOOL": True}
    if rng.random() < 0.2:
        meta["ip"] = {"B": _blob(rng, 6, 7)}
    if rng.random() < 0.05:
        meta["extra"] = {"M": {}}  # empty map
    return meta


def _blocks(rng: _Rng) -> dict[str, Any]:
    """A mixed-type list, sometimes empty."""
    if rng.random() < 0.08:
        return {"L": []}
    blocks: list[dict[str, Any]] = [{"S": _words(rng, 1, 4)}, {"N": _number(rng)}]
    if rng.random() < 0.5:
        blocks.append({"BOOL": rng.random() < 0.5})
    if rng.random() < 0.3:
        blocks.append({"NULL": True})
    if rng.random() < 0.3:
        blocks.append({"M": {"w": {"N": str(rng.between(64, 4096))}}})
    if rng.random() < 0.2:
        blocks.append({"L": [{"S": rng.pick(_WORDS)}, {"N": str(rng.between(0, 10))}]})
    if rng.random() < 0.1:
        blocks.append({"B": _blob(rng, 1, 9)})
    return {"L": blocks}


# --------------------------------------------------------------------------------------------
# Fragments: the slow-to-make part of an item, made once per process and reused.
#
# An item is a line built from a template with its per-item values (keys, times, a score, a
# counter) and two fragments drawn from pools: the attributes every kind may have (tags, legacy,
# meta) and the attributes of its kind. Fragments are JSON text made with the same encoder as
# a whole line would be, so a line is exactly `json.dumps({"Item": item})` of its item. Pools
# are made from fixed seeds (the same in every process and for every seed); a seed picks which
# fragments its items get.

_FRAGMENTS: Final = 8192
"""Fragments per pool (a power of two: draws index with a mask)."""
_MASK: Final = _FRAGMENTS - 1


def _attrs(attrs: dict[str, Any]) -> str:
    """``,"a":{...},"b":{...}``: attributes as JSON text to splice into an item, or ``""``."""
    return "," + _ENCODER.encode(attrs)[1:-1] if attrs else ""


def _common_attrs(rng: _Rng) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if rng.random() < 0.85:
        attrs["tags"] = {"SS": list(rng.pick(_TAG_SETS))}
    if rng.random() < 0.25:
        attrs["legacy"] = {"S": f"v1:{rng.getrandbits(40):010x}"}
    if rng.random() < 0.35:
        attrs["meta"] = {"M": _meta(rng)}
    return attrs


def _profile_attrs(rng: _Rng) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "display_name": {"S": rng.pick(_NAMES)},
        "bio": {"S": "" if rng.random() < 0.15 else _text(rng, 2, 7)},
        "avatar": {"B": _blob(rng, 6, 24)},
        "balance": {"N": _long_number(rng) if rng.random() < 0.1 else _number(rng)},
        "is_verified": {"BOOL": rng.random() < 0.3},
    }
    if rng.random() < 0.5:
        attrs["deleted_at"] = {"NULL": True}
    push: dict[str, Any] = {"on": {"BOOL": rng.random() < 0.7}}
    if rng.random() < 0.5:
        push["quiet"] = {"L": [{"N": str(rng.between(18, 24))}, {"N": str(rng.between(0, 9))}]}
    notify = {"email": {"BOOL": rng.random() < 0.5}, "push": {"M": push}}
    attrs["settings"] = {"M": {"lang": {"S": rng.pick(_LANGS)}, "notify": {"M": notify}}}
    if rng.random() < 0.5:
        attrs["badges"] = {"SS": list(rng.pick(_BADGE_SETS))}
    if rng.random() < 0.3:
        attrs["lucky_numbers"] = {"NS": _number_set(rng)}
    if rng.random() < 0.1:
        attrs["prefs"] = {"M": {}}
    return attrs


def _post_attrs(rng: _Rng) -> dict[str, Any]:
    # Star ratings: half the time a half step ("1.50", "4.00"), else any hundredth up to 5.
    v = 100 + 50 * rng.between(0, 9) if rng.random() < 0.5 else rng.between(100, 501)
    attrs: dict[str, Any] = {
        "title": {"S": _words(rng, 1, 5)},
        "text": {"S": _text(rng, 3, 10)},
        "rating": {"N": f"{v // 100}.{v % 100:02d}"},  # "4.50": trailing zero kept
    }
    if rng.random() < 0.4:
        attrs["ratings"] = {"NS": _number_set(rng)}
    if rng.random() < 0.35:
        attrs["attachments"] = {"BS": _binary_set(rng)}
    if rng.random() < 0.4:
        attrs["thumbnail"] = {"B": _blob(rng, 8, 32)}
    if rng.random() < 0.4:
        attrs["pinned"] = {"BOOL": rng.random() < 0.2}
    if rng.random() < 0.6:
        attrs["blocks"] = _blocks(rng)
    return attrs


def _comment_attrs(rng: _Rng) -> dict[str, Any]:
    attrs: dict[str, Any] = {"body": {"S": _text(rng, 2, 7)}}
    if rng.random() < 0.6:
        attrs["parent"] = {"NULL": True}
    else:
        attrs["parent"] = {"S": f"COMMENT#{rng.getrandbits(32):08x}"}
    attrs["edited"] = {"BOOL": rng.random() < 0.2}
    if rng.random() < 0.35:
        picks = rng.pick(_REACTION_SETS)
        attrs["reactions"] = {"M": {r: {"N": str(rng.between(1, 100))} for r in picks}}
    if rng.random() < 0.3:
        attrs["flags"] = {"L": [] if rng.random() < 0.3 else [{"S": "spam?"}, {"BOOL": False}]}
    return attrs


class _Pools(NamedTuple):
    scores: tuple[str, ...]
    common: tuple[str, ...]
    profile: tuple[str, ...]
    post: tuple[str, ...]
    comment: tuple[str, ...]


@functools.cache
def _pools() -> _Pools:
    """Every pool, made once per process (under a second)."""

    def pool(name: str, make: Callable[[_Rng], dict[str, Any]]) -> tuple[str, ...]:
        rng = _Rng(f"fragments:{name}")
        return tuple(_attrs(make(rng)) for _ in range(_FRAGMENTS))

    rng = _Rng("fragments:score")
    return _Pools(
        scores=tuple(_number(rng) for _ in range(_FRAGMENTS)),
        common=pool("common", _common_attrs),
        profile=pool("profile", _profile_attrs),
        post=pool("post", _post_attrs),
        comment=pool("comment", _comment_attrs),
    )


# --------------------------------------------------------------------------------------------
# Items


@functools.lru_cache(maxsize=64)
def _feistel_keys(seed: int) -> tuple[int, ...]:
    key = hashlib.blake2b(str(seed).encode(), digest_size=16).digest()
    return tuple(int.from_bytes(key[i : i + 4], "little") for i in range(0, 16, 4))


def _user_number(seed: int, group: int) -> int:
    """A bijection of [0, 10**8): group index -> user number, scrambled like a hash order.

    A four-round Feistel network on 28 bits with cycle walking back into [0, 10**8)."""
    keys = _feistel_keys(seed)
    x = group % _USER_SPACE
    while True:
        left, right = x >> 14, x & 0x3FFF
        for k in keys:
            f = ((right * 0x9E3779B1) ^ k) & 0xFFFFFFFF
            f = ((f ^ (f >> 15)) * 0x85EBCA6B) & 0xFFFFFFFF
            left, right = right, left ^ ((f >> 13) & 0x3FFF)
        x = (left << 14) | right
        if x < _USER_SPACE:
            return x


_MILLIS: Final = tuple(f'.{m:03d}Z"}}' for m in range(1000))
"""``.123Z"}}``: the end of a created_at attribute, by millisecond."""
_DRAWS: Final = 6
"""32-bit draws per item; a group also has one of its own (the user's join time)."""
_GROUP_DRAWS: Final = struct.Struct(f"<{1 + GROUP * _DRAWS}I")


def _group_lines(seed: int, group: int) -> list[str]:
    """The eight export lines of one user, sorted by sort key (as DynamoDB keeps an item
    collection). Every random choice comes from one SHAKE-128 digest of (seed, group).

    Lines are f-strings with the per-item values (keys, times, a score, a counter) and two
    fragments: the common attributes and those of the item's kind."""
    draws = _GROUP_DRAWS.unpack(
        hashlib.shake_128(b"%d:%d" % (seed, group)).digest(_GROUP_DRAWS.size)
    )
    scores, common, profiles, posts, comments = _pools()
    days, clock, millis, mask = _DAYS, _clock(), _MILLIS, _MASK
    uid = f"{_user_number(seed, group):08d}"
    head = f'{{"Item":{{"pk":{{"S":"USER#{uid}"}},"sk":{{"S":"'
    owner = f'"}},"user_id":{{"S":"{uid}"}}'
    joined = _T0 + draws[0] % (_T_USER_END - _T0)
    span = _T_END - joined
    lines = []
    for slot, at in enumerate(range(1, 1 + GROUP * _DRAWS, _DRAWS)):
        when_draw, ident, created, picks, frag, extra = draws[at : at + _DRAWS]
        when = joined + when_draw % span if slot else joined
        day, second = divmod(when - _T0, 86_400)
        stamp = days[day] + clock[second]
        # created_at is missing from ~10% of items
        created_at = (
            f',"created_at":{{"S":"{stamp}{millis[created % 1000]}' if created >> 16 >= 6554 else ""
        )
        common_attrs = f',"score":{{"N":"{scores[picks & mask]}"}}{common[picks >> 16 & mask]}'
        count = frag >> 16
        if slot == 0:
            lines.append(
                f'{head}PROFILE"}},"kind":{{"S":"profile{owner}{created_at}{common_attrs}'
                f',"email":{{"S":"user{uid}@example.com"}},"followers":{{"N":"{count % 50_001}"}}'
                f"{profiles[frag & mask]}}}}}"
            )
        elif ident >> 24 < 154:  # 60% posts
            lines.append(
                f'{head}POST#{stamp}Z#{slot}{ident & 0xFFFFFF:06x}"}},"kind":{{"S":"post'
                f'{owner}{created_at}{common_attrs},"likes":{{"N":"{count % 5001}"}}'
                f"{posts[frag & mask]}}}}}"
            )
        else:
            ref_day, ref_second = divmod(max(0, when - _T0 - extra % 864_000), 86_400)
            ref = f"USER#{(extra >> 8) % _USER_SPACE:08d}|POST#{days[ref_day]}{clock[ref_second]}Z"
            lines.append(
                f'{head}COMMENT#{stamp}Z#{slot}{ident & 0xFFFFFF:06x}"}},"kind":{{"S":"comment'
                f'{owner}{created_at}{common_attrs},"post_ref":{{"S":"{ref}"}}'
                f',"upvotes":{{"N":"{count % 521 - 20}"}}{comments[frag & mask]}}}}}'
            )
    # The sort key is the first thing after the shared head and no sort key is a prefix of
    # another, so sorting the lines sorts the items by sort key.
    lines.sort()
    return lines


def _lines(seed: int, start: int, count: int) -> Iterator[list[str]]:
    """Export lines ``start`` .. ``start + count - 1`` for ``seed``, a group at a time."""
    if count < 0 or start < 0:
        raise ValueError(f"count and start must be >= 0, got count={count} start={start}")
    end = start + count
    group, skip = divmod(start, GROUP)
    index = start
    while index < end:
        lines = _group_lines(seed, group)
        if skip or end - index < GROUP:
            lines = lines[skip : skip + (end - index)]
        yield lines
        index += len(lines)
        group += 1
        skip = 0


def make_items(count: int, seed: int = 0, *, start: int = 0) -> Iterator[Item]:
    """Yield items ``start`` .. ``start + count - 1`` of the sequence for ``seed``.

    Items are in DynamoDB-JSON wire form (``{"pk": {"S": "USER#00012345"}, ...}``, B and BS
    base64), about 300-600 bytes as compact JSON, and every one of the ten types occurs.
    Item ``i`` is the same whatever ``start`` and ``count`` are, so ranges can be made apart.
    Each item is a fresh object: ``json.loads`` of the line `write_export` writes for it.
    """
    loads = json.loads
    for lines in _lines(seed, start, count):
        for line in lines:
            yield loads(line)["Item"]


# --------------------------------------------------------------------------------------------
# Export files

_SUFFIX: Final = {name: c.extension for name, c in COMPRESSIONS.items()}
_CHUNK_LINES: Final = 2048
"""Lines joined per chunk handed to the compressor (about 1 MB)."""


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes, /) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


def _compressor(compress: str, gzip_level: int) -> _Compressor:
    if compress == "gzip":
        # One gzip member with a fixed header (no name, mtime 0), like AWS's data files.
        return zlib.compressobj(gzip_level, zlib.DEFLATED, 31)
    if compress == "zstd":
        zstd = importlib.import_module("zstandard")
        return zstd.ZstdCompressor(level=3).compressobj()  # type: ignore[no-any-return]
    return _Identity()


class _BackgroundWriter:
    """Compresses, hashes and writes chunks in a thread.

    zlib, zstd, MD5 and file writes release the GIL, so they overlap with making the next
    lines. A failure in the thread is raised by the next ``write`` or ``close``; the thread keeps
    draining the queue so the producer never blocks on it."""

    def __init__(self, out: BinaryIO, compressor: _Compressor) -> None:
        self._out = out
        self._compressor = compressor
        self.md5 = hashlib.md5()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="synth-writer", daemon=True)
        self._thread.start()

    def _emit(self, data: bytes) -> None:
        if data:
            self.md5.update(data)
            self._out.write(data)

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._emit(self._compressor.compress(data))
                except BaseException as exc:  # re-raised in the producer
                    self._error = exc
        if self._error is None:
            try:
                self._emit(self._compressor.flush())
            except BaseException as exc:
                self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: bytes) -> None:
        self._check()
        self._queue.put(data)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._check()


def _write_data_file(
    path: Path, seed: int, start: int, count: int, compress: str, gzip_level: int
) -> tuple[int, str, str, int]:
    """Write items ``start .. start+count-1`` to ``path``.

    Returns (item count, base64 MD5 of the file, hex MD5 of the file, uncompressed bytes)."""
    raw_bytes = 0
    with path.open("wb") as fh:
        writer = _BackgroundWriter(fh, _compressor(compress, gzip_level))
        try:
            batch: list[str] = []
            for lines in _lines(seed, start, count):
                batch += lines
                if len(batch) >= _CHUNK_LINES:
                    raw_bytes += _flush(batch, writer)
            if batch:
                raw_bytes += _flush(batch, writer)
        finally:
            writer.close()
    digest = writer.md5.digest()
    return count, _b64(digest), digest.hex(), raw_bytes


def _flush(batch: list[str], writer: _BackgroundWriter) -> int:
    batch.append("")
    data = "\n".join(batch).encode("utf-8")
    batch.clear()
    writer.write(data)
    return len(data)


def default_export_id(seed: int) -> str:
    """An export id shaped like AWS's (``01700000000000-1a2b3c4d``), derived from the seed."""
    digest = hashlib.sha256(f"ddbshard.synth:{seed}".encode()).hexdigest()
    millis = 1_700_000_000_000 + int(digest[8:16], 16) % 10**10
    return f"{millis:014d}-{digest[:8]}"


def _file_name(export_id: str, index: int) -> str:
    """26 lowercase characters that look random, like AWS's data file names."""
    digest = hashlib.sha256(f"{export_id}/data/{index}".encode()).digest()
    return base64.b32encode(digest[:17]).decode("ascii").lower()[:26]


def _export_millis(export_id: str) -> int:
    """The export time AWS puts in front of an export id (milliseconds since the epoch)."""
    head = export_id.split("-", 1)[0]
    return int(head) if head.isdigit() and len(head) <= 14 else 1_700_000_000_000


def _iso_millis(millis: int) -> str:
    seconds, rest = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest:03d}Z"


def write_export(
    root: str | Path,
    count: int,
    *,
    files: int = 4,
    seed: int = 0,
    table: str = "Source",
    compress: str = "gzip",
    export_id: str | None = None,
    jobs: int = 1,
    gzip_level: int = 6,
) -> Path:
    """Write ``count`` items as a DynamoDB full export under ``root`` and return the export root
    (``root/AWSDynamoDB/<export_id>``).

    The data is dealt to ``files`` data files in contiguous ranges, like partitions; a file with
    no items is still written (an empty gzip member), as AWS does for empty partitions.
    ``compress`` is ``"gzip"`` (what AWS writes), ``"none"`` (plain ``.json``) or ``"zstd"``
    (needs the ``zstandard`` package). Writing streams: memory does not grow with ``count``.
    ``jobs`` > 1 writes that many data files at once in worker processes; the output is the same.
    ``gzip_level`` is the deflate level of gzip files (6, gzip's default, unless you trade file
    size for speed: level 1 writes about twice as fast and ~25% larger files).
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if files < 1:
        raise ValueError(f"files must be >= 1, got {files}")
    if not 1 <= gzip_level <= 9:
        raise ValueError(f"gzip_level must be in 1..9, got {gzip_level}")
    if compress not in _SUFFIX:
        raise ValueError(f"compress must be one of {sorted(_SUFFIX)}, got {compress!r}")
    if compress == "zstd":
        try:
            importlib.import_module("zstandard")
        except ImportError as exc:
            raise ValueError("compress='zstd' needs the zstandard package") from exc
    export_id = export_id or default_export_id(seed)
    if not export_id or "/" in export_id or export_id in (".", ".."):
        raise ValueError(f"bad export id {export_id!r}")

    root = Path(root)
    prefix = f"AWSDynamoDB/{export_id}"
    export_root = root / prefix
    if export_root.exists() and any(export_root.iterdir()):
        raise FileExistsError(f"{export_root} already exists and is not empty")
    data_dir = export_root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (export_root / "_started").write_bytes(b"")

    tasks = []
    for index in range(files):
        lo = count * index // files
        hi = count * (index + 1) // files
        name = _file_name(export_id, index) + _SUFFIX[compress]
        tasks.append((data_dir / name, seed, lo, hi - lo, compress, gzip_level))
    jobs = max(1, min(jobs, files))
    _pools()  # made once here; worker processes started by fork inherit them
    if jobs == 1:
        results = [_write_data_file(*task) for task in tasks]
    else:
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_write_data_file, *zip(*tasks, strict=True)))

    entries: list[str] = []
    billed = 0
    for (path, *_), (n, md5_b64, md5_hex, raw) in zip(tasks, results, strict=True):
        billed += raw
        entry = {
            "itemCount": n,
            "md5Checksum": md5_b64,
            "etag": md5_hex,
            "dataFileS3Key": f"{prefix}/data/{path.name}",
        }
        entries.append(json.dumps(entry))
    files_bytes = "".join(line + "\n" for line in entries).encode("utf-8")
    (export_root / "manifest-files.json").write_bytes(files_bytes)
    (export_root / "manifest-files.md5").write_bytes(_md5_b64(files_bytes))

    started = _export_millis(export_id)
    table_arn = f"arn:aws:dynamodb:{_REGION}:{_ACCOUNT}:table/{table}"
    table_id = uuid.UUID(bytes=hashlib.md5(f"{table}:{seed}".encode()).digest(), version=4)
    summary = {
        "version": "2020-06-30",
        "exportArn": f"{table_arn}/export/{export_id}",
        "startTime": _iso_millis(started),
        "endTime": _iso_millis(started + 300_000 + count // 10),
        "tableArn": table_arn,
        "tableId": str(table_id),
        "exportTime": _iso_millis(started),
        "s3Bucket": "local",
        "s3Prefix": "",
        "s3SseAlgorithm": "AES256",
        "s3SseKmsKeyId": None,
        "manifestFilesS3Key": f"{prefix}/manifest-files.json",
        "billedSizeBytes": billed,
        "itemCount": count,
        "outputFormat": "DYNAMODB_JSON",
        "exportType": "FULL_EXPORT",
    }
    summary_bytes = json.dumps(summary).encode("utf-8")
    (export_root / "manifest-summary.json").write_bytes(summary_bytes)
    (export_root / "manifest-summary.md5").write_bytes(_md5_b64(summary_bytes))
    return export_root


def _md5_b64(data: bytes) -> bytes:
    return base64.b64encode(hashlib.md5(data).digest())


# --------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ddbshard.synth",
        description="Write a synthetic DynamoDB full export (AWS layout) and print its root.",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder that will hold AWSDynamoDB/")
    parser.add_argument("--items", type=int, default=1000, help="number of items (default 1000)")
    parser.add_argument("--files", type=int, default=4, help="number of data files (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--table", default="Source", help="table name in the ARNs")
    parser.add_argument("--compress", choices=sorted(_SUFFIX), default="gzip")
    parser.add_argument("--export-id", default=None, help="default: derived from the seed")
    parser.add_argument(
        "--gzip-level", type=int, default=6, help="deflate level of gzip files (default 6)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="data files written at once, in worker processes (default: CPU count)",
    )
    args = parser.parse_args(argv)
    try:
        path = write_export(
            args.out_dir,
            args.items,
            files=args.files,
            seed=args.seed,
            table=args.table,
            compress=args.compress,
            export_id=args.export_id,
            jobs=args.jobs,
            gzip_level=args.gzip_level,
        )
    except (ValueError, OSError) as exc:
        print(f"ddbshard.synth: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
