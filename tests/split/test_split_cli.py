"""`python -m ddbshard split` end to end: the real CLI in a subprocess, on a generated export.

Every run is checked against a reference written here, independently of the Rust core: routing
predicates and transforms in plain Python over the wire dicts of the source lines, so a wrong
comparison, a lost or doubled item, or a mis-applied transform shows up as a multiset difference.
The shards are decoded with the command-line `zstd` and `gzip`, as a user (or ImportTable) would,
and every manifest, summary and ImportTable request is checked against the files on disk.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from ddbshard import synth
from support.splitting import (
    BAD_LINES,
    CATCH_ALL,
    FILES,
    GOOD_LINES,
    ITEMS,
    KIND_TARGETS,
    MAIN_TARGETS,
    ROUTE_ALL_TOML,
    S3_DEST,
    SEED,
    Expected,
    RefTarget,
    Wire,
    assert_balanced,
    assert_summary_adds_up,
    assert_valid_import_request,
    at,
    contains_s,
    copy_export,
    decoded_lines,
    key_of,
    main_config,
    num,
    read_rejects,
    read_summary,
    read_target,
    route,
    run_split,
    source_items,
    string,
    toml_str,
    write_config,
    write_line_files,
)

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
        lines = decoded_lines(tmp_path / "lines" / named[1])
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
