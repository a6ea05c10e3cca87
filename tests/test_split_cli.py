"""`python -m ddbshard split` end to end: the real CLI in a subprocess, on a generated export.

Every run is checked against a reference written here, independently of the Rust core: routing
predicates and transforms in plain Python over the wire dicts of the source lines, so a wrong
comparison, a lost or doubled item, or a mis-applied transform shows up as a multiset difference.
The shards are decoded with the command-line `zstd` and `gzip`, as a user (or ImportTable) would,
and every manifest, summary and ImportTable request is checked against the files on disk.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import zstandard

from ddbshard import synth

ITEMS = 3000
FILES = 3
SEED = 20261123
S3_DEST = "s3://import-bucket/migrations/2026-11-23/"
SUFFIX = {"zstd": ".json.zst", "gzip": ".json.gz", "none": ".json"}
INPUT_COMPRESSION = {"zstd": "ZSTD", "gzip": "GZIP", "none": "NONE"}
Wire = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Running the CLI


def run_split(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ddbshard split CONFIG ARGS...` in the config's folder."""
    return subprocess.run(
        [sys.executable, "-m", "ddbshard", "split", str(config), "--quiet", *args],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def write_config(path: Path, *, source: str, dest: str, output: str, targets: str) -> Path:
    path.write_text(
        f"source = {toml_str(source)}\ndest = {toml_str(dest)}\n\n[output]\n{output}\n{targets}",
        encoding="utf-8",
    )
    return path


# --------------------------------------------------------------------------------------------
# Reading what split wrote


def canonical(value: Any) -> Any:
    """A wire value with set members sorted (their order is not significant); numbers and
    binaries are kept as the text they were written as."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, v),) = value.items()
            if tag in ("SS", "NS", "BS"):
                return {tag: sorted(v)}
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def key_of(item: Wire) -> str:
    return json.dumps(canonical(item), sort_keys=True, ensure_ascii=False)


def decode_with_cli(path: Path) -> bytes:
    """The shard's bytes as the command-line tools decode them (what a user would run)."""
    if path.name.endswith(".json"):
        return path.read_bytes()
    tool = "zstd" if path.name.endswith(".zst") else "gzip"
    if shutil.which(tool) is None:
        pytest.skip(f"the {tool} command is not installed")
    done = subprocess.run([tool, "-dc", str(path)], capture_output=True, timeout=60)
    assert done.returncode == 0, f"{tool} -dc {path.name}: {done.stderr.decode()}"
    return done.stdout


def decode_in_python(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".zst"):
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        return reader.read()
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    return data


def read_lines(data: bytes) -> list[Wire]:
    """Shard lines: each exactly one `{"Item": {...}}`, nothing else, no blank lines."""
    assert data == b"" or data.endswith(b"\n"), "a shard ends with a newline"
    items = []
    for line in data.splitlines():
        doc = json.loads(line)
        assert list(doc) == ["Item"], line[:200]
        items.append(doc["Item"])
    return items


@dataclass
class TargetOutput:
    manifest: dict[str, Any]
    request: dict[str, Any]
    shards: dict[str, list[Wire]]  # shard key -> items

    @property
    def items(self) -> list[Wire]:
        return [item for items in self.shards.values() for item in items]


def read_target(dest: Path, name: str, compression: str) -> TargetOutput:
    """Reads a target's folder and checks its manifest against the files (DESIGN.md, Outputs)."""
    folder = dest / name
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    request = json.loads((folder / "import-table.json").read_text(encoding="utf-8"))
    assert manifest["compression"] == compression
    on_disk = sorted(p.relative_to(folder).as_posix() for p in (folder / "data").iterdir())
    listed = sorted(e["key"] for e in manifest["shards"])
    assert on_disk == listed, "data/ holds exactly the shards the manifest lists, nothing else"
    shards: dict[str, list[Wire]] = {}
    for entry in manifest["shards"]:
        path = folder / entry["key"]
        assert path.name.endswith(SUFFIX[compression]), path.name
        raw = path.read_bytes()
        assert entry["bytes"] == len(raw)
        digest = hashlib.md5(raw).digest()
        assert entry["md5"] == digest.hex()
        assert entry["md5_base64"] == base64.b64encode(digest).decode()
        data = decode_with_cli(path)
        assert data == decode_in_python(path)
        assert entry["uncompressed_bytes"] == len(data)
        items = read_lines(data)
        assert entry["items"] == len(items), entry["key"]
        shards[entry["key"]] = items
    assert manifest["target"] == name
    assert manifest["shard_count"] == len(manifest["shards"])
    assert manifest["items"] == sum(e["items"] for e in manifest["shards"])
    assert manifest["bytes"] == sum(e["bytes"] for e in manifest["shards"])
    assert manifest["uncompressed_bytes"] == sum(
        e["uncompressed_bytes"] for e in manifest["shards"]
    )
    return TargetOutput(manifest, request, shards)


def assert_balanced(out: TargetOutput, shards: int, workers: int | None = None) -> None:
    """Round-robin: each worker deals its items over the shards in turn, so the shard item
    counts of a target differ by at most the number of workers (README, "Balance"); with the
    default of one worker per CPU that is the CPU count. An empty shard, which leaves no
    file, counts as zero."""
    counts = [len(items) for items in out.shards.values()]
    counts += [0] * (shards - len(counts))
    assert len(counts) == shards, f"{len(counts)} shards, configured {shards}"
    bound = max(1, workers or os.cpu_count() or 1)
    assert max(counts) - min(counts) <= bound, counts


def assert_valid_import_request(request: dict[str, Any], target: str, compression: str) -> None:
    """import-table.json is a valid ImportTable request (botocore's own validator) for the
    target's shards under --s3-dest."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("dynamodb")
    shape = model.operation_model("ImportTable").input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()
    source = request["S3BucketSource"]
    assert source["S3Bucket"] == "import-bucket"
    assert source["S3KeyPrefix"] == f"migrations/2026-11-23/{target}/data/"
    assert request["InputFormat"] == "DYNAMODB_JSON"
    assert request["InputCompressionType"] == INPUT_COMPRESSION[compression]


def read_rejects(dest: Path) -> list[dict[str, Any]]:
    path = dest / "_rejects" / "rejects.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def read_summary(dest: Path) -> dict[str, Any]:
    return json.loads((dest / "_summary.json").read_text(encoding="utf-8"))


def assert_summary_adds_up(summary: dict[str, Any]) -> None:
    items = summary["items"]
    assert items["read"] == items["written"] + items["unmatched"] + items["rejected"]


# --------------------------------------------------------------------------------------------
# The reference: DynamoDB's condition semantics and the transforms, on wire dicts


def at(item: Wire, *path: str | int) -> Wire | None:
    """The wire value at a document path, or None when any step is missing or mistyped."""
    cur: Wire = {"M": item}
    for step in path:
        if isinstance(step, int):
            if "L" not in cur or step >= len(cur["L"]):
                return None
            cur = cur["L"][step]
        else:
            if "M" not in cur or step not in cur["M"]:
                return None
            cur = cur["M"][step]
    return cur


def num(v: Wire | None) -> Decimal | None:
    return Decimal(v["N"]) if v is not None and "N" in v else None


def string(v: Wire | None) -> str | None:
    return v["S"] if v is not None and "S" in v else None


def size(v: Wire | None) -> int | None:
    """DynamoDB's size(): UTF-16 code units of a string, bytes of a binary, members of a
    set, list or map; nothing for other types."""
    if v is None:
        return None
    ((tag, x),) = v.items()
    if tag == "S":
        return len(x.encode("utf-16-le")) // 2
    if tag == "B":
        return len(base64.b64decode(x))
    if tag in ("SS", "NS", "BS", "L", "M"):
        return len(x)
    return None


def between(x: Decimal | None, lo: Decimal, hi: Decimal) -> bool:
    return x is not None and lo <= x <= hi


def contains_s(v: Wire | None, needle: str) -> bool:
    """contains(path, :s) for an S operand: substring, set member or list element."""
    if v is None:
        return False
    if "S" in v:
        return needle in v["S"]
    if "SS" in v:
        return needle in v["SS"]
    if "L" in v:
        return {"S": needle} in v["L"]
    return False


def is_quiet(it: Wire) -> bool:
    # kind = :profile AND attribute_exists(settings.notify.push.quiet[1])
    #   AND settings.notify.#push.quiet[0] BETWEEN :q_lo AND :q_hi
    quiet = ("settings", "notify", "push", "quiet")
    return (
        string(it.get("kind")) == "profile"
        and at(it, *quiet, 1) is not None
        and between(num(at(it, *quiet, 0)), Decimal(18), Decimal(21))
    )


def is_post(it: Wire) -> bool:
    # kind = :post AND rating <> :r150 AND (rating < :r4 OR contains(tags, :tag))
    #   AND attribute_exists(#ts)
    rating = num(it.get("rating"))
    return (
        string(it.get("kind")) == "post"
        and rating != Decimal("1.50")  # <> is true when rating is missing or not a number
        and ((rating is not None and rating < Decimal("4.0")) or contains_s(it.get("tags"), "café"))
        and "created_at" in it
    )


def is_comment(it: Wire) -> bool:
    # begins_with(sk, :c) AND upvotes BETWEEN :lo AND :hi AND attribute_type(parent, :tnull)
    #   AND size(body) > :n5
    sk = string(it.get("sk"))
    body = size(it.get("body"))
    return (
        sk is not None
        and sk.startswith("COMMENT#")
        and between(num(it.get("upvotes")), Decimal(-5), Decimal(250))
        and "NULL" in (it.get("parent") or {})
        and body is not None
        and body > 5
    )


def is_rest(it: Wire) -> bool:
    # kind IN (:profile, :post) AND (attribute_not_exists(created_at) OR NOT score >= :zero
    #   OR size(tags) = :three OR contains(blocks, :yes))
    score = num(it.get("score"))
    return string(it.get("kind")) in ("profile", "post") and (
        "created_at" not in it
        or not (score is not None and score >= 0)
        or size(it.get("tags")) == 3
        or {"BOOL": True} in (it.get("blocks") or {}).get("L", [])
    )


def render(template: str, item: Wire) -> str:
    """A set template: `{a.b}` replaced by the value there (S, N and B as written)."""

    def one(m: re.Match[str]) -> str:
        v = at(item, *m.group(1).split("."))
        assert v is not None, f"template {template!r}: {m.group(1)} missing"
        ((tag, x),) = v.items()
        if tag == "BOOL":
            return "true" if x else "false"
        assert tag in ("S", "N", "B"), tag
        return str(x)

    return re.sub(r"\{([^{}]+)\}", one, template)


@dataclass(frozen=True)
class RefTarget:
    name: str
    matches: Callable[[Wire], bool]
    keep: tuple[str, ...] | None = None
    drop: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()
    set: tuple[tuple[str, str], ...] = ()

    def transform(self, item: Wire) -> Wire:
        rename = dict(self.rename)
        out: Wire = {}
        for name, value in item.items():
            if self.keep is not None and name not in self.keep:
                continue
            if name in self.drop:
                continue
            out[rename.get(name, name)] = value
        for name, template in self.set:
            out[name] = {"S": render(template, item)}
        return out


MAIN_TARGETS_TOML = """
[[target]]
name = "Quiet"
where = '''kind = :profile AND attribute_exists(settings.notify.push.quiet[1])
           AND settings.notify.#push.quiet[0] BETWEEN :q_lo AND :q_hi'''
names = { "#push" = "push" }
values = { ":profile" = "profile", ":q_lo" = 18, ":q_hi" = { N = "21" } }
key = { hash = "uid" }
key_types = { uid = "S" }
keep = ["user_id", "settings", "display_name", "balance"]
rename = { user_id = "uid" }
set = { lang = "{settings.lang}/{balance}" }

[[target]]
name = "Posts"
where = '''kind = :post AND rating <> :r150 AND (rating < :r4 OR contains(tags, :tag))
           AND attribute_exists(#ts)'''
names = { "#ts" = "created_at" }
values = { ":post" = "post", ":r150" = { N = "1.50" }, ":r4" = { N = "4.0" }, ":tag" = "café" }
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "S", gsi1pk = "S", createdAt = "S" }
drop = ["legacy", "meta"]
rename = { created_at = "createdAt" }
set = { gsi1pk = "USER#{user_id}#{rating}" }

[target.table]
global_secondary_indexes = [
  { name = "byUser", hash = "gsi1pk", range = "createdAt", projection = "ALL" },
]
stream = "NEW_AND_OLD_IMAGES"
tags = { team = "feed" }

[[target]]
name = "Comments"
where = '''begins_with(sk, :c) AND upvotes BETWEEN :lo AND :hi
           AND attribute_type(parent, :tnull) AND size(body) > :n5'''
values = { ":c" = "COMMENT#", ":lo" = { N = "-5.0" }, ":hi" = 250, ":tnull" = "NULL", ":n5" = 5 }
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "S" }
keep = ["pk", "sk", "body", "upvotes", "reactions"]

[[target]]
name = "Rest"
where = '''kind IN (:profile, :post) AND (attribute_not_exists(created_at)
           OR NOT score >= :zero OR size(tags) = :three OR contains(blocks, :yes))'''
values = { ":profile" = "profile", ":post" = "post", ":zero" = 0, ":three" = 3, ":yes" = true }
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "S" }
"""

MAIN_TARGETS = (
    RefTarget(
        "Quiet",
        is_quiet,
        keep=("user_id", "settings", "display_name", "balance"),
        rename=(("user_id", "uid"),),
        set=(("lang", "{settings.lang}/{balance}"),),
    ),
    RefTarget(
        "Posts",
        is_post,
        drop=("legacy", "meta"),
        rename=(("created_at", "createdAt"),),
        set=(("gsi1pk", "USER#{user_id}#{rating}"),),
    ),
    RefTarget("Comments", is_comment, keep=("pk", "sk", "body", "upvotes", "reactions")),
    RefTarget("Rest", is_rest),
)


@dataclass
class Expected:
    targets: dict[str, Counter[str]]  # target -> multiset of canonical output items
    unmatched: list[Wire]


def route(items: Iterable[Wire], targets: Iterable[RefTarget], *, all_: bool = False) -> Expected:
    targets = tuple(targets)
    out: dict[str, Counter[str]] = {t.name: Counter() for t in targets}
    unmatched = []
    for item in items:
        hit = False
        for t in targets:
            if t.matches(item):
                out[t.name][key_of(t.transform(item))] += 1
                hit = True
                if not all_:
                    break
        if not hit:
            unmatched.append(item)
    return Expected(out, unmatched)


def source_items(export_root: Path) -> list[Wire]:
    """Every item of the export, read from the data files the manifest lists."""
    items = []
    for line in (export_root / "manifest-files.json").read_text().splitlines():
        key = json.loads(line)["dataFileS3Key"]
        path = export_root / "data" / Path(key).name
        for raw in gzip.decompress(path.read_bytes()).splitlines():
            items.append(json.loads(raw)["Item"])
    return items


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3,000-item export in AWS's layout (gzip data files, manifests with MD5s)."""
    root = tmp_path_factory.mktemp("export")
    return synth.write_export(root, ITEMS, files=FILES, seed=SEED, compress="gzip")


@pytest.fixture(scope="module")
def items(export: Path) -> list[Wire]:
    got = source_items(export)
    assert len(got) == ITEMS
    return got


@pytest.fixture(scope="module")
def expected(items: list[Wire]) -> Expected:
    exp = route(items, MAIN_TARGETS)
    # The data exercises every branch the conditions have, so a wrong operator shows.
    for name, n in exp.targets.items():
        assert sum(n.values()) > 20, f"reference routes only {sum(n.values())} items to {name}"
    assert len(exp.unmatched) > 20
    posts = [it for it in items if string(it.get("kind")) == "post" and "created_at" in it]
    rating = [num(it.get("rating")) for it in posts]
    assert any(r == Decimal("1.5") for r in rating), "no post rated 1.50: <> not exercised"
    assert any(r is not None and r >= 4 and contains_s(it.get("tags"), "café")
               for it, r in zip(posts, rating, strict=True)), "OR branch not exercised"  # fmt: skip
    return exp


def main_config(tmp_path: Path, export: Path, compression: str, shards: int = 4) -> Path:
    output = (
        f'compression = "{compression}"\nshards = {shards}\nroute = "first"\nunmatched = "drop"\n'
    )
    return write_config(
        tmp_path / "split.toml",
        source=str(export),
        dest="out",
        output=output,
        targets=MAIN_TARGETS_TOML,
    )


# --------------------------------------------------------------------------------------------
# The main run, in each compression


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_split_writes_every_item_once_to_the_right_target(
    tmp_path: Path, export: Path, expected: Expected, compression: str
) -> None:
    config = main_config(tmp_path, export, compression)
    done = run_split(config, "--s3-dest", S3_DEST)
    assert done.returncode == 0, done.stderr
    dest = tmp_path / "out"

    summary = read_summary(dest)
    assert_summary_adds_up(summary)
    assert summary["items"]["read"] == ITEMS == summary["items"]["manifest"]
    assert summary["items"]["unmatched"] == len(expected.unmatched)
    assert summary["items"]["rejected"] == 0
    assert summary["rejected_by_reason"] == {}
    assert summary["files"]["read"] == FILES
    assert not (dest / "_rejects" / "rejects.jsonl").exists() or not read_rejects(dest)

    written = 0
    for ref in MAIN_TARGETS:
        out = read_target(dest, ref.name, compression)
        # (a) every source item exactly once in the right target, transformed as configured
        got = Counter(key_of(item) for item in out.items)
        want = expected.targets[ref.name]
        assert got == want, (
            f"{ref.name}: {sum((got - want).values())} unexpected items, "
            f"{sum((want - got).values())} missing; e.g. {list(got - want)[:1]} "
            f"{list(want - got)[:1]}"
        )
        # (c) round-robin
        assert_balanced(out, 4)
        # (e) the summary agrees with the manifest
        t = summary["targets"][ref.name]
        assert t["written"] == out.manifest["items"] == sum(want.values())
        assert t["shards"] == len(out.shards)
        assert t["shard_items_min"] == min(len(v) for v in out.shards.values())
        assert t["shard_items_max"] == max(len(v) for v in out.shards.values())
        assert not t["rejected"]
        written += t["written"]
        # (f) a valid ImportTable request for these shards
        assert_valid_import_request(out.request, ref.name, compression)
    assert written == summary["items"]["written"]


def test_transforms_are_applied(tmp_path: Path, export: Path) -> None:
    """(b) Spot checks on top of the multiset comparison: names, values and templates."""
    done = run_split(main_config(tmp_path, export, "zstd"), "--s3-dest", S3_DEST)
    assert done.returncode == 0, done.stderr
    dest = tmp_path / "out"

    quiet = read_target(dest, "Quiet", "zstd").items
    assert quiet
    for item in quiet:
        assert set(item) <= {"uid", "settings", "display_name", "balance", "lang"}
        assert {"uid", "lang"} <= set(item)
        lang = at(item, "settings", "lang")
        assert lang is not None
        assert item["lang"] == {"S": f"{lang['S']}/{item['balance']['N']}"}
    # numbers are carried as written, never through a float
    balances = [item["balance"]["N"] for item in quiet]
    assert any(b != str(Decimal(b).normalize()) or len(b) > 17 for b in balances), balances[:5]

    posts = read_target(dest, "Posts", "zstd")
    for item in posts.items:
        assert not {"legacy", "meta", "created_at"} & set(item)
        assert {"pk", "sk", "createdAt", "gsi1pk"} <= set(item)
        user = item["user_id"]["S"]
        assert item["gsi1pk"] == {"S": f"USER#{user}#{item['rating']['N']}"}
        assert Decimal(item["rating"]["N"]) != Decimal("1.5")
    gsis = posts.request["TableCreationParameters"]["GlobalSecondaryIndexes"]
    assert [g["IndexName"] for g in gsis] == ["byUser"]
    # what ImportTable cannot set is not in the request (applied after the import)
    assert "StreamSpecification" not in posts.request["TableCreationParameters"]

    for item in read_target(dest, "Comments", "zstd").items:
        assert set(item) <= {"pk", "sk", "body", "upvotes", "reactions"}
        assert item["sk"]["S"].startswith("COMMENT#")


# --------------------------------------------------------------------------------------------
# Rejects and exit status 1


GOOD_LINES = [
    b'{"Item":{"pk":{"S":"good-1"},"n":{"N":"1.50"},"b":{"B":"AAEC"}}}',
    b'{"Item":{"pk":{"S":"good-2"},"ss":{"SS":["x","y"]},"m":{"M":{"k":{"NULL":true}}}}}',
]
BAD_LINES = {  # reason -> line
    "invalid_number": b'{"Item":{"pk":{"S":"bad-nan"},"n":{"N":"NaN"}}}',
    "empty_set": b'{"Item":{"pk":{"S":"bad-set"},"s":{"SS":[]}}}',
    "invalid_base64": b'{"Item":{"pk":{"S":"bad-b64"},"b":{"B":"not base64!"}}}',
    "invalid_json": b'{"Item":{"pk":{"S":"bad-json"},',
    "missing_key": b'{"Item":{"other":{"S":"no pk here"}}}',
}
# Posts, and every other item: two targets keyed (pk, sk), for the tests of workers, nodes and
# memory, where what matters is that every item goes somewhere.
POSTS_AND_REST = """
[[target]]
name = "Posts"
where = "kind = :p"
values = { ":p" = "post" }
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "S" }

[[target]]
name = "Rest"
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "S" }
"""
CATCH_ALL = """
[[target]]
name = "Everything"
key = { hash = "pk" }
key_types = { pk = "S" }
"""


def _decoded_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    elif path.name.endswith(".zst"):
        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data.splitlines()


def write_line_files(folder: Path, items: list[Wire]) -> list[Wire]:
    """The items dealt over a .json, a .json.gz and a .json.zst line file; returns them."""
    folder.mkdir(parents=True)
    thirds = [items[0::3], items[1::3], items[2::3]]
    encoded = [
        b"".join(json.dumps({"Item": it}).encode() + b"\n" for it in part) for part in thirds
    ]
    (folder / "a.json").write_bytes(encoded[0])
    (folder / "b.json.gz").write_bytes(gzip.compress(encoded[1]))
    (folder / "c.json.zst").write_bytes(zstandard.ZstdCompressor().compress(encoded[2]))
    return items


def test_rejected_lines_are_recorded_and_exit_1(tmp_path: Path, items: list[Wire]) -> None:
    src = tmp_path / "lines"
    write_line_files(src, items[:300])
    # a fourth file: good lines, a blank line, and one line of each refusal
    lines = [GOOD_LINES[0], b"", *BAD_LINES.values(), GOOD_LINES[1]]
    (src / "d.json").write_bytes(b"\n".join(lines) + b"\n")
    config = write_config(
        tmp_path / "split.toml",
        source="lines",
        dest="out",
        output='compression = "gzip"\nshards = 3',
        targets=CATCH_ALL,
    )
    done = run_split(config)
    assert done.returncode == 1, done.stderr
    dest = tmp_path / "out"

    rejects = read_rejects(dest)
    assert sorted(r["reason"] for r in rejects) == sorted(BAD_LINES)
    for r in rejects:
        assert r["file"] == "d.json"
        physical = lines.index(BAD_LINES[r["reason"]]) + 1
        assert r["line"] == physical, r
        assert r["raw"].encode() == BAD_LINES[r["reason"]]
        assert r["target"] == ("Everything" if r["reason"] == "missing_key" else None)

    summary = read_summary(dest)
    assert_summary_adds_up(summary)
    assert summary["items"]["read"] == 300 + 2 + len(BAD_LINES)
    assert summary["items"]["rejected"] == len(BAD_LINES)
    assert summary["rejected_by_reason"] == dict.fromkeys(BAD_LINES, 1)
    assert summary["targets"]["Everything"]["rejected"] == {"missing_key": 1}

    out = read_target(dest, "Everything", "gzip")
    want = Counter(key_of(it) for it in items[:300])
    want.update(key_of(json.loads(line)["Item"]) for line in GOOD_LINES)
    assert Counter(key_of(it) for it in out.items) == want
    assert_balanced(out, 3)


# --------------------------------------------------------------------------------------------
# Exit status 2: bad config, bad input, dest in use


@pytest.mark.parametrize(
    ("where", "column"),
    [
        ("kind = :post AND AND rating < :r", 18),
        ("kind = :post AND rating << :r", 26),
        ("kind = :post AND attribute_exist(rating)", 18),
        ("kind = :post AND (rating < :r", 30),
    ],
)
def test_bad_where_is_refused_before_anything_is_written(
    tmp_path: Path, export: Path, where: str, column: int
) -> None:
    targets = f"""
[[target]]
name = "Fine"
where = "kind = :profile"
values = {{ ":profile" = "profile" }}
key = {{ hash = "pk", range = "sk" }}
key_types = {{ pk = "S", sk = "S" }}

[[target]]
name = "Broken"
where = {toml_str(where)}
values = {{ ":post" = "post", ":r" = 3 }}
key = {{ hash = "pk", range = "sk" }}
key_types = {{ pk = "S", sk = "S" }}
"""
    config = write_config(
        tmp_path / "split.toml",
        source=str(export),
        dest="out",
        output="shards = 2",
        targets=targets,
    )
    done = run_split(config)
    assert done.returncode == 2, done.stderr
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "Broken" in message and f"column {column}" in message, message
    assert "Traceback" not in message
    assert not (tmp_path / "out").exists()


def copy_export(export: Path, to: Path) -> tuple[Path, list[Path]]:
    root = to / "AWSDynamoDB" / export.name
    shutil.copytree(export, root)
    return root, sorted((root / "data").iterdir())


def test_missing_data_file_is_named_and_exit_2(tmp_path: Path, export: Path) -> None:
    root, files = copy_export(export, tmp_path / "copy")
    files[1].unlink()
    config = write_config(
        tmp_path / "split.toml", source=str(root), dest="out", output="", targets=CATCH_ALL
    )
    done = run_split(config)
    assert done.returncode == 2, done.stderr
    assert files[1].name in done.stderr
    assert "missing" in done.stderr
    assert not (tmp_path / "out").exists()


def test_data_file_with_wrong_md5_is_named_and_exit_2(tmp_path: Path, export: Path) -> None:
    root, files = copy_export(export, tmp_path / "copy")
    # Same lines, other compression level: still a good gzip file, but not the one listed.
    files[2].write_bytes(gzip.compress(gzip.decompress(files[2].read_bytes()), compresslevel=1))
    config = write_config(
        tmp_path / "split.toml", source=str(root), dest="out", output="", targets=CATCH_ALL
    )
    done = run_split(config)
    assert done.returncode == 2, done.stderr
    assert files[2].name in done.stderr
    assert "MD5" in done.stderr
    assert not (tmp_path / "out" / "_summary.json").exists()


def test_non_empty_dest_is_refused_without_overwrite(tmp_path: Path, items: list[Wire]) -> None:
    write_line_files(tmp_path / "lines", items[:90])
    config = write_config(
        tmp_path / "split.toml", source="lines", dest="out", output="shards = 2", targets=CATCH_ALL
    )
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    done = run_split(config)
    assert done.returncode == 2, done.stderr
    assert "--overwrite" in done.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["notes.txt"]

    done = run_split(config, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert read_summary(dest)["items"]["written"] == 90
    # a second run with --overwrite replaces the first output, it does not add to it
    done = run_split(config, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert len(read_target(dest, "Everything", "zstd").items) == 90
    assert (dest / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------------------------
# Unmatched items


KIND_TARGETS = """
[[target]]
name = "Profiles"
where = "kind = :p"
values = { ":p" = "profile" }
key = { hash = "user_id" }
key_types = { user_id = "S" }
drop = ["sk"]
"""


@pytest.mark.parametrize("policy", ["reject", "drop", "error"])
def test_unmatched_policies(tmp_path: Path, items: list[Wire], policy: str) -> None:
    sample = items[:240]
    write_line_files(tmp_path / "lines", sample)
    config = write_config(
        tmp_path / "split.toml",
        source="lines",
        dest="out",
        output=f'shards = 2\nunmatched = "{policy}"',
        targets=KIND_TARGETS,
    )
    done = run_split(config)
    dest = tmp_path / "out"
    profiles = [it for it in sample if it["kind"]["S"] == "profile"]
    others = [it for it in sample if it["kind"]["S"] != "profile"]
    assert profiles and others
    if policy == "error":
        assert done.returncode == 2, done.stderr
        assert "matches no target" in done.stderr
        # Workers read files in parallel: whichever file stops the run, the message names it
        # and its first unmatched line.
        named = re.search(r"error: (\S+): line (\d+) matches", done.stderr)
        assert named, done.stderr
        lines = _decoded_lines(tmp_path / "lines" / named[1])
        kinds = [json.loads(line)["Item"]["kind"]["S"] for line in lines]
        first_unmatched = next(n for n, k in enumerate(kinds, 1) if k != "profile")
        assert int(named[2]) == first_unmatched, done.stderr
        assert not (dest / "_summary.json").exists()
        return
    summary = read_summary(dest)
    assert_summary_adds_up(summary)
    assert summary["items"]["unmatched"] == len(others)
    assert summary["items"]["written"] == len(profiles)
    rejects = read_rejects(dest)
    if policy == "reject":
        assert done.returncode == 1, done.stderr
        assert len(rejects) == len(others)
        assert {r["reason"] for r in rejects} == {"unmatched"}
        assert Counter(key_of(json.loads(r["raw"])["Item"]) for r in rejects) == Counter(
            key_of(it) for it in others
        )
        assert summary["rejected_by_reason"] == {"unmatched": len(others)}
    else:
        assert done.returncode == 0, done.stderr
        assert rejects == []
        assert summary["rejected_by_reason"] == {}
    out = read_target(dest, "Profiles", "zstd")
    want = Counter(key_of({k: v for k, v in it.items() if k != "sk"}) for it in profiles)
    assert Counter(key_of(it) for it in out.items) == want


# --------------------------------------------------------------------------------------------
# Sources without a manifest, shard counts, route "all"


def test_folder_and_glob_sources(tmp_path: Path, items: list[Wire]) -> None:
    sample = items[:600]
    write_line_files(tmp_path / "lines", sample)
    (tmp_path / "lines" / "README.txt").write_text("not data")
    for source, want in [
        ("lines", sample),
        ("lines/*.json*", sample),
        ("lines/[bc].json.*", sample[1::3] + sample[2::3]),
        ("lines/c.json.zst", sample[2::3]),
    ]:
        config = write_config(
            tmp_path / "split.toml",
            source=source,
            dest="out",
            output='compression = "none"\nshards = 5',
            targets=CATCH_ALL,
        )
        done = run_split(config, "--overwrite")
        assert done.returncode == 0, f"{source}: {done.stderr}"
        out = read_target(tmp_path / "out", "Everything", "none")
        assert Counter(key_of(it) for it in out.items) == Counter(key_of(it) for it in want)
        assert_balanced(out, 5)
        summary = read_summary(tmp_path / "out")
        assert summary["items"]["read"] == len(want), source
        assert summary["items"]["manifest"] is None


def test_reject_records_name_files_relative_to_a_glob(tmp_path: Path) -> None:
    src = tmp_path / "lines"
    src.mkdir()
    (src / "x.json").write_bytes(GOOD_LINES[0] + b"\n" + BAD_LINES["empty_set"] + b"\n")
    config = write_config(
        tmp_path / "split.toml",
        source="lines/*.json",
        dest="out",
        output="shards = 1",
        targets=CATCH_ALL,
    )
    done = run_split(config)
    assert done.returncode == 1, done.stderr
    (record,) = read_rejects(tmp_path / "out")
    assert record["file"] == "x.json"
    assert record["line"] == 2


def test_shards_auto(tmp_path: Path, export: Path, items: list[Wire]) -> None:
    """`shards = "auto"`: one shard per million items of the manifest, so one here; and the
    command line's --shards overrides the file."""
    config = write_config(
        tmp_path / "split.toml",
        source=str(export),
        dest="out",
        output='shards = "auto"',
        targets=CATCH_ALL,
    )
    done = run_split(config)
    assert done.returncode == 0, done.stderr
    out = read_target(tmp_path / "out", "Everything", "zstd")
    assert len(out.shards) == 1
    assert Counter(key_of(it) for it in out.items) == Counter(key_of(it) for it in items)

    done = run_split(config, "--overwrite", "--shards", "7")
    assert done.returncode == 0, done.stderr
    out = read_target(tmp_path / "out", "Everything", "zstd")
    assert len(out.shards) == 7
    assert_balanced(out, 7)
    assert len(out.items) == ITEMS


ROUTE_ALL_TOML = """
[[target]]
name = "Posts"
where = "kind = :post"
values = { ":post" = "post" }
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "S" }

[[target]]
name = "WithPictures"
where = "attribute_exists(thumbnail) OR attribute_exists(avatar)"
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "S" }
keep = ["pk", "sk", "thumbnail", "avatar"]
"""


def test_route_all_writes_an_item_to_every_matching_target(
    tmp_path: Path, export: Path, items: list[Wire]
) -> None:
    config = write_config(
        tmp_path / "split.toml",
        source=str(export),
        dest="out",
        output='route = "all"\nunmatched = "drop"\nshards = 3',
        targets=ROUTE_ALL_TOML,
    )
    done = run_split(config)
    assert done.returncode == 0, done.stderr
    refs = (
        RefTarget("Posts", lambda it: string(it.get("kind")) == "post"),
        RefTarget(
            "WithPictures",
            lambda it: "thumbnail" in it or "avatar" in it,
            keep=("pk", "sk", "thumbnail", "avatar"),
        ),
    )
    exp = route(items, refs, all_=True)
    both = [it for it in items if all(r.matches(it) for r in refs)]
    assert both, "no item matches both targets"

    dest = tmp_path / "out"
    summary = read_summary(dest)
    for ref in refs:
        out = read_target(dest, ref.name, "zstd")
        assert Counter(key_of(it) for it in out.items) == exp.targets[ref.name]
        assert_balanced(out, 3)
        assert summary["targets"][ref.name]["written"] == sum(exp.targets[ref.name].values())
    # "written" counts items written to at least one target, so the invariant still holds
    assert summary["items"]["written"] == ITEMS - len(exp.unmatched)
    assert summary["items"]["unmatched"] == len(exp.unmatched)
    assert_summary_adds_up(summary)
    per_target = sum(t["written"] for t in summary["targets"].values())
    assert per_target == summary["items"]["written"] + len(both)


def test_rename_onto_an_existing_name_only_replaces_it_when_the_source_is_there(
    tmp_path: Path,
) -> None:
    """rename = { a = "b" }: an item with `a` gets it as `b` (its own `b` gives way, so no
    name appears twice); an item without `a` keeps its own `b` (nothing was renamed)."""
    src = tmp_path / "lines"
    src.mkdir()
    (src / "x.json").write_bytes(
        b'{"Item":{"pk":{"S":"1"},"b":{"S":"own"}}}\n'
        b'{"Item":{"pk":{"S":"2"},"a":{"S":"renamed"},"b":{"S":"own"}}}\n'
    )
    targets = CATCH_ALL + 'rename = { a = "b" }\n'
    config = write_config(
        tmp_path / "split.toml",
        source="lines",
        dest="out",
        output='shards = 1\ncompression = "none"',
        targets=targets,
    )
    done = run_split(config)
    assert done.returncode == 0, done.stderr
    out = read_target(tmp_path / "out", "Everything", "none")
    by_pk = {it["pk"]["S"]: it for it in out.items}
    assert by_pk["1"] == {"pk": {"S": "1"}, "b": {"S": "own"}}
    assert by_pk["2"] == {"pk": {"S": "2"}, "b": {"S": "renamed"}}


# --------------------------------------------------------------------------------------------
# --s3-dest checked before the run; the closing line says where the problems are listed


@pytest.mark.parametrize(
    ("s3_dest", "why"),
    [
        ("s3://", "names no bucket"),
        ("s3:///prefix/", "names no bucket"),
        ("imports/run1/", "is not an s3:// URI"),
        ("/tmp/imports/run1/", "is not an s3:// URI"),
    ],
)
def test_bad_s3_dest_is_refused_before_anything_is_read(
    tmp_path: Path, export: Path, s3_dest: str, why: str
) -> None:
    config = write_config(
        tmp_path / "split.toml", source=str(export), dest="out", output="", targets=CATCH_ALL
    )
    done = run_split(config, "--s3-dest", s3_dest)
    assert done.returncode == 2, done.stderr
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    assert message.startswith("ddbshard: error: --s3-dest: ") and why in message, message
    assert not (tmp_path / "out").exists()  # no shard, no checkpoint left behind


def test_s3_dest_other_than_an_s3_dest_is_refused(tmp_path: Path, export: Path) -> None:
    config = write_config(
        tmp_path / "split.toml",
        source=str(export),
        dest="s3://imports/run1/",
        output="",
        targets=CATCH_ALL,
    )
    done = run_split(config, "--s3-dest", "s3://elsewhere/run1/")
    assert done.returncode == 2, done.stderr
    assert "only for a local dest" in done.stderr and len(done.stderr.splitlines()) == 1


def test_skipped_bad_file_is_pointed_to_in_the_summary_not_rejects(
    tmp_path: Path, export: Path
) -> None:
    root, files = copy_export(export, tmp_path / "copy")
    files[0].write_bytes(files[0].read_bytes()[:200])  # a truncated gzip file
    config = write_config(
        tmp_path / "split.toml", source=str(root), dest="out", output="", targets=CATCH_ALL
    )
    done = run_split(config, "--on-bad-file", "skip")
    assert done.returncode == 1, done.stderr
    dest = tmp_path / "out"
    assert not (dest / "_rejects").exists()  # nothing rejected: no rejects file
    assert [b["file"] for b in read_summary(dest)["files"]["bad"]] == [f"data/{files[0].name}"]
    assert done.stderr.splitlines() == [
        "ddbshard: 1 bad input file was skipped (--on-bad-file skip): see files.bad in "
        "_summary.json in the destination"
    ]
    assert "_rejects" not in done.stderr


def test_rejects_and_a_skipped_file_get_a_line_each(tmp_path: Path, items: list[Wire]) -> None:
    src = tmp_path / "lines"
    write_line_files(src, items[:90])
    (src / "b.json.gz").write_bytes((src / "b.json.gz").read_bytes()[:40])  # truncated
    (src / "d.json").write_bytes(b"\n".join([GOOD_LINES[0], *BAD_LINES.values()]) + b"\n")
    config = write_config(
        tmp_path / "split.toml", source="lines", dest="out", output="", targets=CATCH_ALL
    )
    done = run_split(config, "--on-bad-file", "skip")
    assert done.returncode == 1, done.stderr
    assert len(read_rejects(tmp_path / "out")) == len(BAD_LINES)
    assert done.stderr.splitlines() == [
        f"ddbshard: {len(BAD_LINES)} items were not written: see _rejects/rejects.jsonl in the "
        "destination",
        "ddbshard: 1 bad input file was skipped (--on-bad-file skip): see files.bad in "
        "_summary.json in the destination",
    ]
