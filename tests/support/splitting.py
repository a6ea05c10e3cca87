"""Running `python -m ddbshard split` in tests and checking what it wrote: the config
builder, the CLI runner, readers of shards, manifests, rejects and summaries, and a reference
router in plain Python (independent of the Rust core) that the results are compared with.
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


def decoded_lines(path: Path) -> list[bytes]:
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


def copy_export(export: Path, to: Path) -> tuple[Path, list[Path]]:
    root = to / "AWSDynamoDB" / export.name
    shutil.copytree(export, root)
    return root, sorted((root / "data").iterdir())


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
