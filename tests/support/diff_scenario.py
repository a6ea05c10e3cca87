"""The diff scenario shared by the local and the S3 tests: a config with three targets (the
source key kept, renamed, and replaced by a template), and known differences planted in each
target's lines, with what the diff must report for them.
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import zstandard

from ddbshard import synth
from support.configs import config_text, target_block

ITEMS = 2400
SEED = 61
TARGET_BLOCKS = (
    target_block("Posts", "post", ("pk", "sk"), 'drop = ["legacy"]'),
    target_block(
        "Comments", "comment", ("cid",), 'set = { cid = "C#{user_id}#{sk}" }', 'drop = ["pk"]'
    ),
    target_block("Profiles", "profile", ("uid", "sk"), 'rename = { pk = "uid" }'),
)
KEYS = {"Posts": ("pk", "sk"), "Comments": ("cid",), "Profiles": ("uid", "sk")}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ddbshard", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def shard_lines(folder: Path) -> list[str]:
    out: list[str] = []
    for f in sorted(folder.iterdir()):
        reader = zstandard.ZstdDecompressor().stream_reader(f.read_bytes(), read_across_frames=True)
        out += text_lines(reader.read().decode())
    return out


def text_lines(text: str) -> list[str]:
    """Lines split at newlines only (str.splitlines also splits at U+2028, which DynamoDB
    strings may hold unescaped)."""
    return [line for line in text.split("\n") if line]


def key_of(item: dict[str, Any], target: str) -> tuple[str, ...]:
    return tuple(item[k]["S"] for k in KEYS[target])


def source_key_of(item: dict[str, Any]) -> tuple[str, str]:
    """The (pk, sk) of the source item behind a target item: Posts keeps pk, Profiles renames
    it to uid, Comments drops it (synth's pk is always USER#<user_id>)."""
    if "pk" in item:
        return item["pk"]["S"], item["sk"]["S"]
    if "uid" in item:
        return item["uid"]["S"], item["sk"]["S"]
    return "USER#" + item["user_id"]["S"], item["sk"]["S"]


# --------------------------------------------------------------------------------------------
# Planting differences


class Planted:
    def __init__(self) -> None:
        self.missing: set[tuple[str, ...]] = set()
        self.unexpected: set[tuple[str, ...]] = set()
        self.changed: dict[tuple[str, ...], str] = {}  # key -> the attribute changed
        self.harmless: set[tuple[str, ...]] = set()
        self.missing_source: set[tuple[str, ...]] = set()  # (pk, sk) of missing items
        # target key -> (pk, sk) of its source item, for missing and changed items
        self.source_of: dict[tuple[str, ...], tuple[str, str]] = {}


def _equal_number(text: str) -> str:
    """Another spelling of the same number: 383 -> 383.0, 1.5 -> 1.50, 1E3 -> 10E2."""
    if "E" in text.upper():
        return "0" + text
    return text + ("0" if "." in text else ".0")


def plant(lines: list[str], target: str, rng: random.Random) -> tuple[list[str], Planted]:
    p = Planted()
    items = [json.loads(line)["Item"] for line in lines]
    order = list(range(len(items)))
    rng.shuffle(order)
    picks = iter(order)
    out: dict[int, dict[str, Any] | None] = {}

    for _ in range(2):  # deleted
        i = next(picks)
        p.missing.add(key_of(items[i], target))
        p.missing_source.add(source_key_of(items[i]))
        p.source_of[key_of(items[i], target)] = source_key_of(items[i])
        out[i] = None
    # One attribute changed: a string attribute the target does not key on.
    i = next(i for i in picks if "user_id" in items[i] and "user_id" not in KEYS[target])
    item = dict(items[i])
    item["user_id"] = {"S": item["user_id"]["S"] + "-changed"}
    p.changed[key_of(item, target)] = "user_id"
    p.source_of[key_of(item, target)] = source_key_of(items[i])
    out[i] = item
    # A number in another spelling (must not count).
    i = next(i for i in picks if any("N" in v for v in items[i].values()))
    item = {k: ({"N": _equal_number(v["N"])} if "N" in v else v) for k, v in items[i].items()}
    assert item != items[i]
    p.harmless.add(key_of(item, target))
    out[i] = item
    # A set in another order (must not count), attributes reversed too.
    i = next(i for i in picks if any(len(v.get("SS", [])) > 1 for v in items[i].values()))
    item = {k: ({"SS": v["SS"][::-1]} if "SS" in v else v) for k, v in items[i].items()}
    item = dict(reversed(list(item.items())))
    p.harmless.add(key_of(item, target))
    out[i] = item

    result = []
    for n, item in enumerate(items):
        replaced = out.get(n, item)
        if replaced is not None:
            result.append(json.dumps({"Item": replaced}, ensure_ascii=False))
    # Added: a copy of an item under a new key.
    extra = dict(items[next(picks)])
    first = KEYS[target][0]
    extra[first] = {"S": extra[first]["S"] + "#EXTRA"}
    p.unexpected.add(key_of(extra, target))
    result.append(json.dumps({"Item": extra}))
    rng.shuffle(result)
    return result, p


def read_keys_file(path: Path, field: str = "Keys") -> set[tuple[str, ...]]:
    out = set()
    for line in text_lines(path.read_text()):
        obj = json.loads(line)
        out.add(tuple(v["S"] for v in obj[field].values()))
    return out


def check_report(out: Path, planted: dict[str, Planted]) -> dict[str, Any]:
    summary = json.loads((out / "diff-summary.json").read_text())
    assert summary["identical"] is False
    for target, p in planted.items():
        t = summary["targets"][target]
        assert (t["missing"], t["unexpected"], t["changed"]) == (
            len(p.missing),
            len(p.unexpected),
            len(p.changed),
        ), target
        assert t["expected"]["items"] == t["matched"] + t["missing"] + t["changed"]
        assert t["actual"]["items"] == t["matched"] + t["unexpected"] + t["changed"]
        # The target key space, in every file.
        assert read_keys_file(out / target / "missing.jsonl", "TargetKeys") == p.missing
        assert read_keys_file(out / target / "changed.jsonl", "TargetKeys") == set(p.changed)
        assert read_keys_file(out / target / "unexpected.jsonl") == p.unexpected
        sample = t["changed_sample"]
        assert len(sample) == len(p.changed)
        for s in sample:
            key = tuple(v["S"] for v in s["key"].values())
            assert s["attributes"] == [p.changed[key]]
        assert t["changed_attributes"] == {"user_id": len(p.changed)}
    # Source key space, whatever the target key is made of: Posts keeps (pk, sk), Profiles
    # renames pk to uid, Comments makes cid with a template and drops pk.
    for target, p in planted.items():
        assert summary["targets"][target]["source_keys"] is True
        assert summary["targets"][target]["source_key"] == ["pk", "sk"]
        assert read_keys_file(out / target / "missing.jsonl") == p.missing_source
        for kind in ("missing", "changed"):
            for line in text_lines((out / target / f"{kind}.jsonl").read_text()):
                obj = json.loads(line)
                assert list(obj) == ["Keys", "TargetKeys"]
                assert list(obj["Keys"]) == ["pk", "sk"]
                target_key = tuple(v["S"] for v in obj["TargetKeys"].values())
                assert (obj["Keys"]["pk"]["S"], obj["Keys"]["sk"]["S"]) == p.source_of[target_key]
    return summary


def build_world(tmp: Path) -> dict[str, Any]:
    """An export, split into the three targets, and an 'actual' folder per target holding its
    lines with the planted differences (gzip line files, two per target)."""
    export = synth.write_export(tmp / "export", ITEMS, files=3, seed=SEED)
    cfg = tmp / "split.toml"
    cfg.write_text(config_text(export, tmp / "out", *TARGET_BLOCKS, shards=2))
    r = run("split", str(cfg), "--quiet")
    assert r.returncode == 0, r.stderr
    rng = random.Random(SEED)
    planted = {}
    for target in KEYS:
        lines = shard_lines(tmp / "out" / target / "data")
        assert len(lines) > 100
        changed, planted[target] = plant(lines, target, rng)
        folder = tmp / "actual" / target
        folder.mkdir(parents=True)
        half = len(changed) // 2
        for n, part in enumerate([changed[:half], changed[half:]]):
            (folder / f"part-{n}.json.gz").write_bytes(
                gzip.compress(("\n".join(part) + "\n").encode())
            )
    return {"tmp": tmp, "cfg": cfg, "export": export, "planted": planted}
