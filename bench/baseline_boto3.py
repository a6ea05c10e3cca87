"""The split of `split_setup.py` as teams write it today: json + boto3's TypeDeserializer and
TypeSerializer + zstandard, routing and transforms in plain Python, round-robin shards.

This is the baseline `compare_split.py` measures ddbshard against; it is deliberately the
straightforward script, not a tuned one. It reads the data files listed in the export's
manifest, writes `OUT/<target>/data/part-NNNNN.json.zst` and prints the counts as JSON.

Run: `.venv/bin/python bench/baseline_boto3.py EXPORT_ROOT OUT [--shards N]`
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import sys
from pathlib import Path
from typing import Any

import zstandard
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

deserializer = TypeDeserializer()
serializer = TypeSerializer()


def from_wire(value: dict[str, Any]) -> dict[str, Any]:
    """Export JSON -> what TypeDeserializer takes (botocore hands it binaries as bytes)."""
    ((tag, v),) = value.items()
    if tag == "B":
        return {"B": base64.b64decode(v)}
    if tag == "BS":
        return {"BS": [base64.b64decode(m) for m in v]}
    if tag == "M":
        return {"M": {k: from_wire(m) for k, m in v.items()}}
    if tag == "L":
        return {"L": [from_wire(m) for m in v]}
    return value


def to_wire(value: dict[str, Any]) -> dict[str, Any]:
    """TypeSerializer's output -> export JSON (binaries as base64 text)."""
    ((tag, v),) = value.items()
    if tag == "B":
        return {"B": base64.b64encode(bytes(v)).decode()}
    if tag == "BS":
        return {"BS": [base64.b64encode(bytes(m)).decode() for m in v]}
    if tag == "M":
        return {"M": {k: to_wire(m) for k, m in v.items()}}
    if tag == "L":
        return {"L": [to_wire(m) for m in v]}
    return value


def route(item: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(target, output item) for the first matching target, or None (dropped)."""
    kind = item.get("kind")
    if kind == "post" and "created_at" in item:
        out = {k: v for k, v in item.items() if k != "legacy"}
        out["createdAt"] = out.pop("created_at")
        out["gsi1pk"] = f"USER#{item['user_id']}"
        return "Posts", out
    if kind == "profile":
        return "Profiles", {k: v for k, v in item.items() if k not in ("legacy", "sk")}
    if kind == "comment":
        return "Comments", item
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_root", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()

    manifest = (args.export_root / "manifest-files.json").read_text().splitlines()
    base = args.export_root.parent.parent
    files = [base / json.loads(line)["dataFileS3Key"] for line in manifest]

    writers: dict[str, list[Any]] = {}
    dealt: dict[str, int] = {}
    counts = {"read": 0, "written": 0, "unmatched": 0}
    for path in files:
        with gzip.open(path, "rb") as lines:
            for line in lines:
                counts["read"] += 1
                wire = json.loads(line)["Item"]
                item = {k: deserializer.deserialize(from_wire(v)) for k, v in wire.items()}
                routed = route(item)
                if routed is None:
                    counts["unmatched"] += 1
                    continue
                target, out = routed
                if target not in writers:
                    folder = args.out / target / "data"
                    folder.mkdir(parents=True, exist_ok=True)
                    writers[target] = []
                    for s in range(args.shards):
                        handle = (folder / f"part-{s:05d}.json.zst").open("wb")
                        compressor = zstandard.ZstdCompressor(level=3)  # one per stream
                        writers[target].append(compressor.stream_writer(handle))
                n = dealt.get(target, 0)
                dealt[target] = n + 1
                record = {"Item": {k: to_wire(serializer.serialize(v)) for k, v in out.items()}}
                data = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
                writers[target][n % args.shards].write(data.encode())
                counts["written"] += 1
    for shard_writers in writers.values():
        for w in shard_writers:
            w.close()  # ends the zstd frame and closes the file
    print(json.dumps({**counts, "targets": dealt}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
