"""`split` on real DynamoDB JSON nobody here wrote (`../shared/realdata`): every item of every
`*.export.jsonl` file, passed through an identity config (one target, no `where`, the file's
own key attribute as hash key), comes out meaning exactly what it meant going in, by boto3's
reading (`oracle.deserialize_item`, compared with `oracle.exact`, which tells 1.50 from 1.5).
Items DynamoDB would refuse are in `_rejects/` with the oracle's reason, and counted.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import zstandard

from ddbshard.cli import main
from support.oracle import REALDATA, deserialize_item, exact, line_refuses, load_json

KEY_TYPES = ("S", "N", "B")


def export_files() -> list[Any]:
    if not REALDATA.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no real data at {REALDATA}"))]
    files = sorted(REALDATA.rglob("*.export.jsonl"))
    return [pytest.param(p, id=p.relative_to(REALDATA).as_posix()) for p in files]


def lines_of(path: Path) -> list[tuple[int, bytes]]:
    """(line number, line) for the non-blank lines of a file."""
    return [(n, ln) for n, ln in enumerate(path.read_bytes().splitlines(), 1) if ln.strip()]


def find_key(items: list[dict[str, Any]]) -> tuple[str, str]:
    """The first attribute of the first item that every item has, with one key type (S, N or
    B): what the table's partition key must have been (or could be)."""
    for name, value in items[0].items():
        (t,) = value
        if t in KEY_TYPES and all(list(it.get(name, {})) == [t] for it in items):
            return name, t
    # No attribute is shared by all: take the first key-typed one; items without it must be
    # rejected as missing the key.
    for name, value in items[0].items():
        (t,) = value
        if t in KEY_TYPES:
            return name, t
    raise AssertionError("no S, N or B attribute in the first item")


def decode_shards(folder: Path) -> list[bytes]:
    out: list[bytes] = []
    if not (folder / "data").exists():  # no item written: no shard
        return out
    for shard in sorted((folder / "data").iterdir()):
        reader = zstandard.ZstdDecompressor().stream_reader(
            shard.read_bytes(), read_across_frames=True
        )
        out += reader.read().splitlines()
    return out


@pytest.mark.parametrize("path", export_files())
def test_identity_split_keeps_every_item(
    realdata: Path, path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = lines_of(path)
    assert lines, f"{path} is empty"
    good: list[tuple[int, bytes, dict[str, Any]]] = []
    refused: dict[int, str] = {}  # line number -> reason
    for n, line in lines:
        reason = line_refuses(line)
        if reason is not None:
            refused[n] = reason
        else:
            doc = load_json(line)
            assert list(doc) == ["Item"], f"{path}:{n} is not an export line"
            good.append((n, line, doc["Item"]))
    # The key from the items DynamoDB would store; when there are none, from any item.
    candidates = [item for _, _, item in good] or [load_json(ln)["Item"] for _, ln in lines]
    key, key_type = find_key(candidates)
    for n, _, item in good:
        value = item.get(key)
        if value is None:
            refused[n] = "missing_key"
        elif list(value) != [key_type]:
            refused[n] = "wrong_key_type"
        elif value[key_type] == "":
            refused[n] = "empty_key"
    kept = [item for n, _, item in good if n not in refused]

    config = tmp_path / "split.toml"
    config.write_text(
        f"source = {json.dumps(str(path))}\n"
        'dest = "out"\n\n[output]\ncompression = "zstd"\nshards = 2\n\n'
        '[[target]]\nname = "Copy"\n'
        f"key = {{ hash = {json.dumps(key)} }}\n"
        f"key_types = {{ {json.dumps(key)} = {json.dumps(key_type)} }}\n",
        encoding="utf-8",
    )
    code = main(["split", str(config), "--quiet"])
    capsys.readouterr()
    assert code == (1 if refused else 0)

    dest = tmp_path / "out"
    out_lines = decode_shards(dest / "Copy")
    got = Counter(exact(deserialize_item(json.loads(ln)["Item"])) for ln in out_lines)
    want = Counter(exact(deserialize_item(item)) for item in kept)
    assert got == want
    # numbers keep their text, not only their value
    got_text = sorted(json.dumps(json.loads(ln)["Item"], sort_keys=True) for ln in out_lines)
    want_text = sorted(json.dumps(item, sort_keys=True) for item in kept)
    assert got_text == want_text

    summary = json.loads((dest / "_summary.json").read_text(encoding="utf-8"))
    assert summary["items"]["read"] == len(lines)
    assert summary["items"]["written"] == len(kept)
    assert summary["items"]["rejected"] == len(refused)
    assert summary["rejected_by_reason"] == dict(Counter(refused.values()))
    rejects_file = dest / "_rejects" / "rejects.jsonl"
    records = (
        [json.loads(r) for r in rejects_file.read_text(encoding="utf-8").splitlines()]
        if rejects_file.exists()
        else []
    )
    assert {r["line"]: r["reason"] for r in records} == refused
    raw = dict(lines)
    for r in records:
        assert r["raw"].encode() == raw[r["line"]]
        assert r["file"] == path.name
