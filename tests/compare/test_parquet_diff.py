"""`parquet` and `diff` end to end: the real CLI on a generated export, split by the real CLI,
with known differences planted in the targets' lines.

Planted, per target: items deleted, an item added, one attribute changed; and changes that are
no difference to DynamoDB (a number rewritten as an equal number, a set in another order,
attributes in another order, lines shuffled), which must not be reported. The diff must report
exactly the planted keys, nothing more, nothing less, in each key space: Posts keeps the
source key, Profiles renames it, Comments builds its key with a template (a remapped key).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
import xxhash

from ddbshard import _core
from ddbshard.catchup.keysfile import KeyEntry, read_keys
from support.configs import config_text
from support.diff_scenario import (
    KEYS,
    TARGET_BLOCKS,
    build_world,
    check_report,
    read_keys_file,
    run,
    shard_lines,
    text_lines,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_world(tmp_path_factory.mktemp("diff"))


def test_diff_reports_exactly_the_planted_differences(world: dict[str, Any]) -> None:
    tmp: Path = world["tmp"]
    out = tmp / "report"
    actual = [f"--actual={t}={tmp / 'actual' / t}" for t in KEYS]
    r = run("diff", str(world["cfg"]), *actual, "--out", str(out), "--quiet")
    assert r.returncode == 1, r.stderr + r.stdout
    assert "differences found" in r.stdout
    check_report(out, world["planted"])


def test_sync_reads_the_key_files(world: dict[str, Any]) -> None:
    """What diff writes is what sync reads: source keys, and Target lines to delete."""
    tmp: Path = world["tmp"]
    out = tmp / "report-sync"
    actual = [f"--actual={t}={tmp / 'actual' / t}" for t in ("Posts", "Comments")]
    r = run("diff", str(world["cfg"]), *actual, "--out", str(out), "--quiet")
    assert r.returncode == 1, r.stderr
    entries = list(read_keys(str(out / "Posts" / "missing.jsonl")))
    assert all(isinstance(e, KeyEntry) and e.target is None for e in entries)
    assert {(e.keys["pk"]["S"], e.keys["sk"]["S"]) for e in entries if isinstance(e, KeyEntry)} == (
        world["planted"]["Posts"].missing_source
    )
    deletes = list(read_keys(str(out / "Comments" / "unexpected.jsonl")))
    assert [e.target for e in deletes if isinstance(e, KeyEntry)] == ["Comments"]
    # Comments' key is a template over user_id (not a source key attribute) and sk: its
    # lines still name the source items, read from the expected copy's source_key column.
    remapped = list(read_keys(str(out / "Comments" / "missing.jsonl")))
    assert remapped and all(isinstance(e, KeyEntry) and e.target is None for e in remapped)
    assert {
        (e.keys["pk"]["S"], e.keys["sk"]["S"]) for e in remapped if isinstance(e, KeyEntry)
    } == world["planted"]["Comments"].missing_source


def test_diff_of_parquet_copies_gives_the_same_report(world: dict[str, Any]) -> None:
    tmp: Path = world["tmp"]
    cfg = str(world["cfg"])
    args = []
    for t in KEYS:
        exp, act = tmp / "pq" / f"exp-{t}", tmp / "pq" / f"act-{t}"
        r = run("parquet", str(world["export"]), str(exp), "--config", cfg, "--target", t)
        assert r.returncode == 0, r.stderr
        # The source key is read from the config (the keys Posts and Profiles keep).
        assert json.loads((exp / "_summary.json").read_text())["source_key"] == ["pk", "sk"]
        assert "source_key" in pq.read_schema(next(exp.glob("*.parquet"))).names
        if t == "Posts":
            # A copy written before copies had source_key: Posts keeps the source key, so
            # diff reads it back from the target key, and the report is the same.
            for part in exp.glob("*.parquet"):
                table = pq.read_table(part).drop_columns(["source_key"])
                meta = json.loads(table.schema.metadata[b"ddbshard"])
                meta.update(format=2, source_key=None)
                old = table.replace_schema_metadata({b"ddbshard": json.dumps(meta).encode()})
                pq.write_table(old, part)
        r = run(
            "parquet", str(tmp / "actual" / t), str(act), "--config", cfg, "--target", t,
            "--no-route", "--quiet",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        if t == "Profiles":
            # A copy written before copies had key_hash: the join falls back to hashing the
            # key columns on both sides, and the report is the same.
            for part in act.glob("*.parquet"):
                table = pq.read_table(part)
                assert "key_hash" in table.column_names
                pq.write_table(table.drop_columns(["key_hash"]), part)
        args += ["--expected", f"{t}={exp}", "--actual", f"{t}={act}"]
    out = tmp / "report-pq"
    r = run("diff", cfg, *args, "--out", str(out), "--quiet")
    assert r.returncode == 1, r.stderr
    summary = check_report(out, world["planted"])
    # The copies were not remade: the summary points at them.
    assert summary["expected_source"] is None


def test_source_given_as_a_parquet_copy(world: dict[str, Any]) -> None:
    tmp: Path = world["tmp"]
    copy = tmp / "source-copy"
    r = run("parquet", str(world["export"]), str(copy), "--key", "pk:S", "--key", "sk:S")
    assert r.returncode == 0, r.stderr
    out = tmp / "report-src"
    actual = [f"--actual={t}={tmp / 'actual' / t}" for t in KEYS]
    r = run("diff", str(world["cfg"]), *actual, "--source", str(copy), "--out", str(out))
    assert r.returncode == 1, r.stderr
    check_report(out, world["planted"])


def test_identical_targets_exit_zero(world: dict[str, Any]) -> None:
    tmp: Path = world["tmp"]
    actual = [f"--actual={t}={tmp / 'out' / t / 'data'}" for t in KEYS]
    r = run("diff", str(world["cfg"]), *actual, "--quiet")
    assert r.returncode == 0, r.stderr + r.stdout
    summary = json.loads((tmp / "out" / "_diff" / "diff-summary.json").read_text())
    assert summary["identical"] is True
    for t in KEYS:
        s = summary["targets"][t]
        assert s["matched"] == s["expected"]["items"] == s["actual"]["items"] > 0
        assert (tmp / "out" / "_diff" / t / "missing.jsonl").read_text() == ""


def test_source_key_option(world: dict[str, Any]) -> None:
    """Profiles is keyed by uid (renamed from pk) and sk; with --source-key pk,sk the source
    keys are the same as assumed; naming an attribute the target key lacks gives none."""
    tmp: Path = world["tmp"]
    act = f"Profiles={tmp / 'actual' / 'Profiles'}"
    out = tmp / "report-sk"
    r = run("diff", str(world["cfg"]), "--actual", act, "--source-key", "pk,sk", "--out", str(out))
    assert r.returncode == 1, r.stderr
    assert (
        read_keys_file(out / "Profiles" / "missing.jsonl")
        == world["planted"]["Profiles"].missing_source
    )
    # The source key is what --source-key says, even when the target key does not hold it.
    r = run(
        "diff", str(world["cfg"]), "--actual", act, "--source-key", "user_id", "--out", str(out)
    )
    assert r.returncode == 1, r.stderr
    summary = json.loads((out / "diff-summary.json").read_text())
    assert summary["targets"]["Profiles"]["source_key"] == ["user_id"]
    missing = text_lines((out / "Profiles" / "missing.jsonl").read_text())
    keys = [json.loads(x)["Keys"] for x in missing]
    assert keys and all(list(k) == ["user_id"] for k in keys)
    # A source key some items lack (created_at is missing from ~10%): those items are refused
    # by the expected copy, counted, and so reported in the target as unexpected.
    r = run(
        "diff", str(world["cfg"]), "--actual", act, "--source-key", "pk,created_at",
        "--out", str(out), "--quiet",
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    t = json.loads((out / "diff-summary.json").read_text())["targets"]["Profiles"]
    assert t["expected"]["rejected_by_reason"]["missing_key"] == t["expected"]["rejected"] > 0
    assert t["unexpected"] >= t["expected"]["rejected"]


def test_a_templated_key_needs_the_source_key(world: dict[str, Any], tmp_path: Path) -> None:
    """With Comments alone, nothing in the config says what the source key is: diff says so
    before reading anything, and runs with --source-key."""
    cfg = tmp_path / "comments.toml"
    cfg.write_text(config_text(world["export"], tmp_path / "out", TARGET_BLOCKS[1], shards=2))
    act = f"Comments={world['tmp'] / 'actual' / 'Comments'}"
    r = run("diff", str(cfg), "--actual", act, "--out", str(tmp_path / "r"), "--quiet")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "give --source-key" in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()
    r = run(
        "diff", str(cfg), "--actual", act, "--out", str(tmp_path / "r"), "--source-key",
        "pk,sk", "--quiet",
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    entries = list(read_keys(str(tmp_path / "r" / "Comments" / "changed.jsonl")))
    assert entries and all(isinstance(e, KeyEntry) for e in entries)
    # parquet makes the copy all the same, without the column, and says why.
    r = run("parquet", str(world["export"]), str(tmp_path / "c"), "--config", str(cfg), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "no source_key column" in r.stderr
    assert "source_key" not in pq.read_schema(next((tmp_path / "c").glob("*.parquet"))).names


# --------------------------------------------------------------------------------------------
# parquet on its own


def test_parquet_copy_columns_and_canonical_items(tmp_path: Path) -> None:
    src = tmp_path / "lines.json"
    src.write_text(
        "\n".join(
            [
                '{"Item":{"pk":{"S":"a"},"n":{"N":"1.50"},"s":{"SS":["z","y"]},"b":{"B":"AAE="}}}',
                '{"Item":{"s":{"SS":["y","z"]},"n":{"N":"15E-1"},"pk":{"S":"b"},"x":{"NULL":true}}}',
                '{"Item":{"pk":{"S":"c"},"n":{"N":"0.1"}}}',
                '{"Item":{"pk":{"S":"d"},"n":{"N":"NaN"}}}',
                '{"Item":{"n":{"N":"2"}}}',
                "not json",
            ]
        )
        + "\n"
    )
    dest = tmp_path / "copy"
    r = run("parquet", str(src), str(dest), "--key", "pk:S", "--key", "n:N", "--flatten")
    assert r.returncode == 1, r.stderr  # three lines refused
    df = pl.read_parquet(dest / "part-00000.parquet")
    assert df["pk"].to_list() == ["a", "b", "c"]
    assert df["n"].to_list() == ["1.5", "1.5", "0.1"]
    assert df["n_f64"].to_list() == [1.5, 1.5, None]  # 0.1 is no double
    assert df["line"].to_list() == [1, 2, 3]
    assert set(df["file"].to_list()) == {"lines.json"}
    items = df["item"].to_list()
    assert items[0] == '{"b":{"B":"AAE="},"n":{"N":"1.5"},"pk":{"S":"a"},"s":{"SS":["y","z"]}}'
    for item, h in zip(items, df["item_hash"].to_list(), strict=True):
        unsigned = h & 0xFFFFFFFFFFFFFFFF
        assert unsigned == xxhash.xxh3_64_intdigest(item.encode())
        assert _core.canonical_item(item.encode()) == (item.encode(), unsigned)
    # key_hash: XXH3-64 of each key attribute's type letter, length (u32 LE) and value.
    for pk, n, kh in zip(df["pk"], df["n"], df["key_hash"], strict=True):
        encoding = b"".join(
            tag + len(v).to_bytes(4, "little") + v
            for tag, v in ((b"S", pk.encode()), (b"N", n.encode()))
        )
        assert kh & 0xFFFFFFFFFFFFFFFF == xxhash.xxh3_64_intdigest(encoding)
    # Flattened: s (SS) and b (B) and x (NULL only: left out); keys not repeated.
    assert df["s"].to_list() == [["y", "z"], ["y", "z"], None]
    assert df["b"].to_list() == [b"\x00\x01", None, None]
    assert "x" not in df.columns
    meta = json.loads(pq.read_schema(dest / "part-00000.parquet").metadata[b"ddbshard"])
    assert meta["keys"] == [["pk", "S"], ["n", "N"]]
    assert meta["flattened"] == {"b": "B", "s": "SS"}
    rejects = [json.loads(x) for x in text_lines((dest / "_rejects" / "rejects.jsonl").read_text())]
    assert [(x["file"], x["line"], x["reason"]) for x in rejects] == [
        ("lines.json", 4, "invalid_number"),
        ("lines.json", 5, "missing_key"),
        ("lines.json", 6, "invalid_json"),
    ]
    summary = json.loads((dest / "_summary.json").read_text())
    assert summary["items"]["read"] == 6
    assert summary["items"]["written"] == 3
    assert summary["items"]["rejected"] == 3
    # DEST holds a copy now: refused without --overwrite.
    r = run("parquet", str(src), str(dest), "--key", "pk:S")
    assert r.returncode == 2 and "--overwrite" in r.stderr
    r = run("parquet", str(src), str(dest), "--key", "pk:S", "--overwrite", "--quiet")
    assert r.returncode == 1
    assert pl.read_parquet(dest / "part-00000.parquet").columns[0] == "pk"


def test_parquet_routed_copy_holds_what_split_writes(world: dict[str, Any]) -> None:
    tmp: Path = world["tmp"]
    dest = tmp / "routed-comments"
    r = run(
        "parquet", str(world["export"]), str(dest), "--config", str(world["cfg"]),
        "--target", "Comments", "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    copy = pl.read_parquet(dest / "*.parquet")
    split = [json.loads(x)["Item"] for x in shard_lines(tmp / "out" / "Comments" / "data")]
    assert sorted(copy["cid"].to_list()) == sorted(i["cid"]["S"] for i in split)
    canon = {_core.canonical_item(json.dumps(i).encode())[0].decode() for i in split}
    assert set(copy["item"].to_list()) == canon
    assert copy["line"].null_count() == copy.height  # routed: source lines unknown
    assert all("pk" not in json.loads(i) for i in copy["item"].to_list())


@pytest.mark.parametrize("values", [5, 4001])
def test_key_hash_collisions_are_resolved_by_the_keys(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, values: int
) -> None:
    """The join runs on a 64-bit hash of the key; keys that share a hash must still be told
    apart. With a hash of five values every key collides with hundreds of others; with 4001,
    a few dozen keys share a hash with another. The report must be the same as with the
    real hash."""
    import polars as pl

    from ddbshard.compare import diffrun
    from ddbshard.config import load_config

    def weak(key_cols: list[str], stored: bool) -> pl.Expr:
        return (pl.struct(key_cols).hash(1) % values).alias("_k")

    monkeypatch.setattr(diffrun, "_key_hash", weak)
    tmp: Path = world["tmp"]
    out = tmp / f"report-collide-{values}"
    options = diffrun.DiffOptions(
        actual={t: str(tmp / "actual" / t) for t in KEYS}, out=str(out), quiet=True
    )
    result = diffrun.run_diff(load_config(world["cfg"]), options)
    assert result.exit_code == 1
    summary = check_report(out, world["planted"])
    collisions = [t["key_hash_collisions"] for t in summary["targets"].values()]
    assert all(c > 0 for c in collisions) if values == 5 else sum(collisions) > 0


def test_an_empty_target_is_all_missing(world: dict[str, Any], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "part-0.json").write_bytes(b"")
    out = tmp_path / "report"
    r = run("diff", str(world["cfg"]), "--actual", f"Profiles={empty}", "--out", str(out))
    assert r.returncode == 1, r.stderr
    t = json.loads((out / "diff-summary.json").read_text())["targets"]["Profiles"]
    assert t["actual"]["items"] == 0
    assert t["missing"] == t["expected"]["items"] > 100
    assert t["matched"] == t["changed"] == t["unexpected"] == 0
    assert len(text_lines((out / "Profiles" / "missing.jsonl").read_text())) == t["missing"]


def test_number_and_binary_keys(tmp_path: Path) -> None:
    """Keys of type N (joined by value: 1.50 is 1.5) and B (written back as base64)."""

    def lines(items: list[str]) -> str:
        return "".join(f'{{"Item":{{{i}}}}}\n' for i in items)

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.json").write_text(
        lines(
            [
                '"id":{"N":"1.50"},"b":{"B":"AAE="},"v":{"S":"x"}',
                '"id":{"N":"2"},"b":{"B":"/w=="},"v":{"S":"y"}',
                '"id":{"N":"3"},"b":{"B":"AA=="},"v":{"S":"z"}',
            ]
        )
    )
    (tmp_path / "act").mkdir()
    (tmp_path / "act" / "a.json").write_text(
        lines(
            [
                '"v":{"S":"x"},"b":{"B":"AAE="},"id":{"N":"15E-1"}',
                '"id":{"N":"2.0"},"b":{"B":"/w=="},"v":{"S":"changed"}',
                '"id":{"N":"4"},"b":{"B":"AA=="},"v":{"S":"new"}',
            ]
        )
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'source = "{tmp_path / "src"}"\ndest = "{tmp_path / "out"}"\n'
        '[[target]]\nname = "Nums"\nkey = { hash = "id", range = "b" }\n'
        'key_types = { id = "N", b = "B" }\n'
    )
    r = run("diff", str(cfg), "--actual", f"Nums={tmp_path / 'act'}", "--quiet")
    assert r.returncode == 1, r.stderr
    out = tmp_path / "out" / "_diff"
    t = json.loads((out / "diff-summary.json").read_text())["targets"]["Nums"]
    assert (t["matched"], t["missing"], t["changed"], t["unexpected"]) == (1, 1, 1, 1)
    assert t["changed_sample"][0]["key"] == {"id": {"N": "2"}, "b": {"B": "/w=="}}
    assert t["changed_sample"][0]["attributes"] == ["v"]

    def read(name: str) -> list[Any]:
        return [json.loads(x) for x in text_lines((out / "Nums" / name).read_text())]

    assert read("missing.jsonl") == [
        {
            "Keys": {"id": {"N": "3"}, "b": {"B": "AA=="}},
            "TargetKeys": {"id": {"N": "3"}, "b": {"B": "AA=="}},
        }
    ]
    assert read("unexpected.jsonl") == [
        {"Target": "Nums", "Keys": {"id": {"N": "4"}, "b": {"B": "AA=="}}}
    ]


def test_diff_pairs_reads_arrow_chunks_and_bytes_alike() -> None:
    """The core's pair join through the binding: pyarrow buffers (signed bytes) for one side,
    `bytes` for the other, chunks cut at different places for keys and items; negative int64
    hashes survive as their bit patterns; mismatched lengths are refused."""
    import struct

    import pyarrow as pa

    keys = pa.chunked_array([[-5, 7], [9, 11]], pa.int64())
    items = pa.chunked_array([[1], [2, 3, 4]], pa.int64())

    def bufs(col: pa.ChunkedArray) -> list[pa.Buffer]:
        return [c.buffers()[1].slice(c.offset * 8, len(c) * 8) for c in col.chunks]

    actual_keys = struct.pack("<4q", 7, 9, 11, 13)
    actual_items = struct.pack("<4q", 2, 30, 4, 5)
    matched, k, he, ha, kind = _core.diff_pairs(
        bufs(keys), bufs(items), [actual_keys], [actual_items]
    )
    rows = sorted(
        zip(
            struct.unpack(f"<{len(kind)}q", k),
            struct.unpack(f"<{len(kind)}q", he),
            struct.unpack(f"<{len(kind)}q", ha),
            kind,
            strict=True,
        )
    )
    assert matched == 2  # keys 7 and 11
    assert rows == [(-5, 1, 0, 0), (9, 3, 30, 2), (13, 0, 5, 1)]
    with pytest.raises(ValueError, match="as many item hashes"):
        _core.diff_pairs([actual_keys], [actual_items[:8]], [], [])


def test_a_copy_whose_run_was_killed_is_refused_until_made_again(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """SIGKILL (an OOM kill, a power cut) leaves no time to remove a copy's parts. Its parts
    are valid Parquet with the copy's metadata, but fewer than the copy's: given to diff as the
    expected side, every item it lacks would be unexpected, which sync deletes from the target.
    The copy says it is unfinished until its last part is written."""
    import os
    import subprocess
    import sys

    dest = tmp_path / "posts-expected"
    args = ["parquet", str(world["export"]), str(dest), "--config", str(world["cfg"])]
    args += ["--target", "Posts", "--quiet"]
    env = {**os.environ, "DDBSHARD_CRASH_AT": "copy_written:1:kill"}
    r = subprocess.run(
        [sys.executable, "-m", "ddbshard", *args], env=env, capture_output=True, text=True
    )
    assert r.returncode == -9, r.stderr
    assert list(dest.glob("part-*.parquet"))  # its parts are there, and look whole
    actual = f"--actual=Posts={world['tmp'] / 'actual' / 'Posts'}"
    d = run("diff", str(world["cfg"]), actual, f"--expected=Posts={dest}", "--out", str(tmp_path))
    assert d.returncode == 2, d.stderr
    assert len(d.stderr.strip().splitlines()) == 1 and "cut short" in d.stderr, d.stderr
    assert not (tmp_path / "Posts").exists()  # no keys files for sync
    r = run(*args)
    assert r.returncode == 2 and "cut short" in r.stderr and "--overwrite" in r.stderr, r.stderr
    r = run(*args, "--overwrite")
    assert r.returncode == 0, r.stderr
    d = run("diff", str(world["cfg"]), actual, f"--expected=Posts={dest}", "--out", str(tmp_path))
    assert d.returncode == 1, d.stderr  # the planted differences, read from a whole copy
