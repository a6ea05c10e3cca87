"""`diff`: compare what each target should contain with what it does contain.

Both sides become Parquet copies (parquetcopy.py) keyed by the target's table key: the
expected side is the config's source passed through the routing (or a copy of it given with
`--expected`), the actual side the target's export or shards (or a copy of them). Then, per
target, a full outer join on the key: polars' streaming engine reads each copy's key hash and
item hash (two 8-byte integers per row), the Rust core joins those pairs, and polars reads back
only the rows that differ, with their keys. Tens of millions of items a side fit in one
machine's memory (about 32 bytes per row of each side during the join):

- matched: the key on both sides, same `item_hash` (canonical form: 1.50 = 1.5, sets unordered);
- missing: expected, not in the target; unexpected: in the target, not expected;
- changed: the key on both sides, different hashes. For a sample, both items are read back and
  the top-level attributes that differ are named.

The keys of the differences are written as keys-file lines (keysfile.py) that `sync` reads:
missing and changed items by their *source* key (sync reads the source item and writes what it
should be), taken from the expected copy's `source_key` column (sourcekey.py), whatever the
target's key is made of; unexpected items as `{"Target": T, "Keys": <target key>}` lines (sync
deletes them). Missing and changed lines also hold the target key under `TargetKeys`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from ddbshard._core import diff_pairs
from ddbshard.compare.livescan import LiveScan
from ddbshard.compare.locations import live_table
from ddbshard.compare.parquetcopy import (
    CopyMeta,
    CopyOutput,
    Keys,
    copy_meta,
    default_workers,
    is_parquet_copy,
    make_copies,
    parquet_files,
    target_keys,
)
from ddbshard.compare.sourcekey import resolve_source_key, source_key_map, table_source_key
from ddbshard.config import SplitConfig, TargetConfig
from ddbshard.exceptions import ConfigError, InputError
from ddbshard.io.source import resolve_source
from ddbshard.io.storage import describe_os_error, is_s3, url_to_fs

__all__ = ["DiffOptions", "DiffResult", "run_diff"]

KINDS = ("missing", "changed", "unexpected")
MISSING, UNEXPECTED, CHANGED = 0, 1, 2  # the Rust core's kinds of differing rows (pairdiff.rs)
STATUS = {MISSING: "missing", UNEXPECTED: "unexpected", CHANGED: "changed"}
KEY_HASH_SEED = 0x646462736861726B  # any fixed seed: both sides are hashed in one run
SAMPLE_POOL = 10_000  # changed rows the sample is chosen from (by the files they are in)


@dataclass(frozen=True)
class DiffOptions:
    actual: dict[str, str]  # target name -> its export, shards or Parquet copy
    expected: dict[str, str] = field(default_factory=dict)  # target -> a routed Parquet copy
    source: str | None = None  # instead of the config's source (lines or a Parquet copy)
    out: str | None = None  # default <dest>/_diff/
    # The source table's key attributes (default: read from the config, sourcekey.py).
    source_key: tuple[str, ...] | None = None
    sample: int = 20
    work_dir: str | None = None  # keep the copies made here (default: a temporary folder)
    quiet: bool = True
    workers: int | None = None  # threads making copies from lines (default: CPUs, at most 8)
    # dynamodb://TABLE sides: their parallel Scan (livescan.py)
    segments: int | None = None  # default: one per GB, at least one per worker
    max_rcu: float | None = None  # read units per second, per scan
    consistent: bool = False


@dataclass
class DiffResult:
    summary: dict[str, Any]
    exit_code: int
    out: str


# --------------------------------------------------------------------------------------------
# Key spaces


def _value_expr(column: str, t: str) -> pl.Expr:
    v = pl.col(column)
    if t == "B":
        v = v.bin.encode("base64")
    return pl.struct(v.alias(t))


def _key_struct(pairs: list[tuple[str, str, str]]) -> pl.Expr:
    """A DynamoDB-JSON key as a struct: [(attribute, column, type)] -> {attr: {type: value}}."""
    return pl.struct([_value_expr(col, t).alias(attr) for attr, col, t in pairs])


# --------------------------------------------------------------------------------------------
# Sides


@dataclass
class _Side:
    url: str  # a Parquet copy
    made: bool  # made by this run (from lines)
    given: str  # what the user named: a copy, lines, an export, or the source
    items: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    source_key: tuple[str, ...] | None = None  # expected copies with a source_key column


def _scan_source(url: str) -> str:
    """What polars scans for a copy: its Parquet files (a glob, or the one file)."""
    fs, files = parquet_files(url)
    if not files:
        raise InputError(f"{url}: no Parquet files")
    if len(files) == 1:
        return str(fs.unstrip_protocol(files[0]) if is_s3(url) else files[0])
    base = url.rstrip("/")
    return f"{base}/*.parquet" if is_s3(url) else f"{url_to_fs(url)[1].rstrip('/')}/*.parquet"


def _storage_options(url: str) -> dict[str, str] | None:
    """polars' object store reads the AWS environment itself, but not every variable the
    botocore clients honour: pass the endpoint and region explicitly when they are set."""
    if not is_s3(url):
        return None
    opts: dict[str, str] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["aws_endpoint_url"] = endpoint
        if endpoint.startswith("http://"):
            opts["aws_allow_http"] = "true"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        opts["aws_region"] = region
    return opts or None


def _scan(url: str, *, parts: bool = False) -> pl.LazyFrame:
    """The copy at `url`; with `parts`, each row also names its Parquet file (`_part`)."""
    return pl.scan_parquet(
        _scan_source(url),
        storage_options=_storage_options(url),
        include_file_paths="_part" if parts else None,
    )


def _check_copy(url: str, target: TargetConfig, keys: Keys, *, expected: bool) -> CopyMeta:
    meta = copy_meta(url)
    if meta is None:
        raise InputError(f"{url}: a Parquet dataset that ddbshard parquet did not write")
    if meta.keys != keys:
        raise InputError(
            f"{url}: keyed by {[k for k, _ in meta.keys] or 'nothing'}, target {target.name} "
            f"by {[k for k, _ in keys]}: make it with "
            f"`parquet SRC DEST --config CONFIG --target {target.name}"
            f"{'' if expected else ' --no-route'}`"
        )
    if expected and not meta.routed:
        raise InputError(
            f"{url}: not routed: the expected side of {target.name} is a copy made with "
            f"--config and --target {target.name} (without --no-route)"
        )
    if expected and meta.target != target.name:
        raise InputError(f"{url}: a copy for target {meta.target}, not {target.name}")
    return meta


# --------------------------------------------------------------------------------------------
# The run


def _find_target(config: SplitConfig, name: str) -> TargetConfig:
    for t in config.targets:
        if name in (t.name, t.table.table_name):
            return t
    names = ", ".join(t.name for t in config.targets)
    raise ConfigError(f"{config.origin}: no target {name!r} (targets: {names})")


def run_diff(config: SplitConfig, options: DiffOptions) -> DiffResult:
    start = time.monotonic()
    if not options.actual:
        raise ConfigError("give at least one --actual TARGET=URI")
    targets = [_find_target(config, name) for name in options.actual]
    actual_urls = {t.name: options.actual[n] for t, n in zip(targets, options.actual, strict=True)}
    expected_urls = {_find_target(config, n).name: u for n, u in options.expected.items()}
    for name in expected_urls:
        if name not in actual_urls:
            raise ConfigError(f"--expected {name}=...: give its --actual too")
    out = options.out or posixpath.join(config.dest.rstrip("/"), "_diff")
    scans = _live_sides(config, actual_urls, expected_urls, options)
    options = _live_source_key(options, options.source or config.source, scans)
    for t in targets:
        for url in (actual_urls[t.name], expected_urls.get(t.name)):
            if url in scans:
                _check_live_keys(scans[url], t)
    for scan in scans.values():
        # Every table's cost, before the first is read (and a missing table found now).
        print(scan.estimate_line(), file=sys.stderr)
    keep_work = options.work_dir is not None
    work = Path(options.work_dir or tempfile.mkdtemp(prefix="ddbshard-diff-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        _precheck(targets, actual_urls, scans)
        expected, source_info = _expected_sides(
            config, targets, expected_urls, options, work, scans
        )
        actual = _actual_sides(targets, actual_urls, options, work, scans)
        results = {}
        for t in targets:
            results[t.name] = _diff_target(
                t, expected[t.name], actual[t.name], options, work / "result" / t.name
            )
        _publish(out, work, targets)
    finally:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
    differences = sum(r["missing"] + r["changed"] + r["unexpected"] for r in results.values())
    actual_rejects = sum(r["actual"]["rejected"] for r in results.values())
    summary = {
        "config": config.origin,
        "identical": differences == 0 and actual_rejects == 0,
        "expected_source": source_info,
        "targets": results,
        "out": out,
        "work_dir": str(work) if keep_work else None,
        "scans": {url: scan.summary() for url, scan in scans.items()},
        "seconds": round(time.monotonic() - start, 3),
    }
    _write_json(posixpath.join(out.rstrip("/"), "diff-summary.json"), summary)
    return DiffResult(summary, 0 if summary["identical"] else 1, out)


def _precheck(
    targets: list[TargetConfig], urls: dict[str, str], scans: dict[str, LiveScan]
) -> None:
    """Every actual side can be read (a copy with the right keys, files to read, a table with
    T's key), checked before the source is read: a typo should not cost a pass over the whole
    export."""
    for t in targets:
        url = urls[t.name]
        if url in scans:
            continue  # checked with the other live sides, first
        if is_parquet_copy(url):
            _check_copy(url, t, target_keys(t), expected=False)
        else:
            resolve_source(url)


def _expected_sides(
    config: SplitConfig,
    targets: list[TargetConfig],
    given: dict[str, str],
    options: DiffOptions,
    work: Path,
    scans: dict[str, LiveScan],
) -> tuple[dict[str, _Side], dict[str, Any] | None]:
    sides: dict[str, _Side] = {}
    for t in targets:
        if given.get(t.name) in scans:
            sides[t.name] = _live_copy(scans[given[t.name]], t, options, work / "expected")
        elif t.name in given:
            meta = _check_copy(given[t.name], t, target_keys(t), expected=True)
            sides[t.name] = _Side(given[t.name], False, given[t.name], source_key=meta.source_key)
    todo = [t for t in targets if t.name not in sides]
    if not todo:
        return sides, None
    # Known before the source is read: without it the keys files could not name source items.
    found = resolve_source_key(config, options.source_key)
    source_key = found.required()
    source = options.source or config.source
    outputs = [CopyOutput(str(work / "expected" / t.name), target_keys(t), t.name) for t in todo]
    result = make_copies(
        _readable(source, scans),
        outputs,
        config=config,
        overwrite=True,
        quiet=options.quiet,
        workers=options.workers,
        source_key=source_key,
    )
    for t, o in zip(todo, outputs, strict=True):
        side = _Side(o.dest, True, source, o.rows, o.rejected, dict(o.reasons), source_key)
        sides[t.name] = side
    info = {
        "source_key": list(source_key),
        "source_key_from": found.note,
        "source": source,
        "read": result.read,
        "rejected": result.source_rejected,
        "rejected_by_reason": result.source_reasons,
        "unmatched": result.unmatched,
        "seconds": round(result.seconds, 3),
    }
    return sides, info


def _actual_sides(
    targets: list[TargetConfig],
    urls: dict[str, str],
    options: DiffOptions,
    work: Path,
    scans: dict[str, LiveScan],
) -> dict[str, _Side]:
    sides = {}
    for t in targets:
        url = urls[t.name]
        keys = target_keys(t)
        if url in scans:
            sides[t.name] = _live_copy(scans[url], t, options, work / "actual")
            continue
        if is_parquet_copy(url):
            sides[t.name] = _Side(url, False, url)  # checked by _precheck
            continue
        out = CopyOutput(str(work / "actual" / t.name), keys, t.name)
        make_copies(url, [out], overwrite=True, quiet=options.quiet, workers=options.workers)
        sides[t.name] = _Side(out.dest, True, url, out.rows, out.rejected, dict(out.reasons))
    return sides


# --------------------------------------------------------------------------------------------
# Live tables (dynamodb://TABLE): each side named so is scanned into a copy, as lines would be


def _live_sides(
    config: SplitConfig,
    actual: dict[str, str],
    expected: dict[str, str],
    options: DiffOptions,
) -> dict[str, LiveScan]:
    """A scan per dynamodb:// side (one per table however often it is named); every other
    URI's scheme checked, all before anything is read."""
    named = [("--source", options.source or config.source)]
    named += [(f"--actual {t}", u) for t, u in actual.items()]
    named += [(f"--expected {t}", u) for t, u in expected.items()]
    # A source every target has an --expected copy for is not read: no DescribeTable (the
    # table may be gone), no estimate of a scan that does not happen.
    source_read = any(t not in expected for t in actual)
    scans: dict[str, LiveScan] = {}
    for what, url in named:
        table = live_table(url, what)  # a bad scheme is refused all the same
        if what == "--source" and not source_read:
            continue
        if table is not None and url not in scans:
            scans[url] = LiveScan(
                table,
                segments=options.segments,
                workers=options.workers or default_workers(),
                max_rcu=options.max_rcu,
                consistent=options.consistent,
            )
    if not scans and (options.segments or options.max_rcu is not None or options.consistent):
        raise ConfigError("--segments, --max-rcu and --consistent are for dynamodb:// sides")
    return scans


def _live_source_key(options: DiffOptions, source: str, scans: dict[str, LiveScan]) -> DiffOptions:
    """A live source knows its key (DescribeTable): it is the source key, and a
    --source-key that says otherwise is refused."""
    if source not in scans:
        return options
    known = tuple(k for k, _ in scans[source].describe().keys)
    return dataclasses.replace(
        options, source_key=table_source_key(known, options.source_key, source)
    )


def _readable(url: str, scans: dict[str, LiveScan]) -> str | LiveScan:
    """What make_copies reads for a side: its scan for a live table, else the URI itself."""
    return scans.get(url, url)


def _check_live_keys(scan: LiveScan, target: TargetConfig) -> None:
    """A table named as target T's side holds T's items: its key is T's key."""
    keys = scan.describe().keys
    if keys != target_keys(target):
        raise InputError(
            f"{scan.url}: keyed by {', '.join(f'{a}:{t}' for a, t in keys)}, target "
            f"{target.name} by {', '.join(f'{a}:{t}' for a, t in target_keys(target))}: "
            "is it the right table?"
        )


def _live_copy(scan: LiveScan, target: TargetConfig, options: DiffOptions, folder: Path) -> _Side:
    """A live table that holds T's items (its key checked first), scanned into a copy keyed
    by T's key."""
    out = CopyOutput(str(folder / target.name), target_keys(target), target.name)
    make_copies(
        scan,
        [out],
        overwrite=True,
        quiet=options.quiet,
        workers=options.workers,
    )
    return _Side(out.dest, True, scan.url, out.rows, out.rejected, dict(out.reasons))


def _status() -> pl.Expr:
    return (
        pl.when(pl.col("_h_a").is_null())
        .then(pl.lit("missing"))
        .when(pl.col("_h_e").is_null())
        .then(pl.lit("unexpected"))
        .when(pl.col("_h_e") != pl.col("_h_a"))
        .then(pl.lit("changed"))
        .otherwise(pl.lit("matched"))
        .alias("_status")
    )


def _key_hash(key_cols: list[str], stored: bool) -> pl.Expr:
    """What the join runs on: the copies' `key_hash` column (XXH3 of the typed key, written by
    the Rust core: two integer columns are all the join reads), or for copies written before
    it, polars' hash of the key columns (the same within one process for both sides)."""
    if stored:
        return pl.col("key_hash").alias("_k")
    return pl.struct(key_cols).hash(KEY_HASH_SEED).alias("_k")


def _has_key_hash(scan: pl.LazyFrame) -> bool:
    return "key_hash" in scan.collect_schema().names()


def _count(lf: pl.LazyFrame) -> int:
    return int(lf.select(pl.len()).collect(engine="streaming").item())


def _diff_target(
    target: TargetConfig,
    expected: _Side,
    actual: _Side,
    options: DiffOptions,
    folder: Path,
) -> dict[str, Any]:
    """The join, in three steps that hold little more than 8-byte numbers:

    1. a full join of (key hash, item hash) pairs on the key hash gives the rows that differ
       (`_differing_pairs`: polars reads the pairs, the Rust core joins them);
    2. the rows of each side behind them are read back with their real keys, file and line
       (polars' streaming engine, the Parquet reader filtering on the key hash);
    3. a key-hash collision (two keys, one hash: about one in 10^4 for two 50M-item sides)
       shows as one hash with two keys; its rows are compared again by the keys themselves.

    Joining on the key columns directly would hold every key string in the hash table: 3.4 GB
    for 10M items against 0.9 GB (measured, polars 2.1).
    """
    folder.mkdir(parents=True, exist_ok=True)
    keys = target_keys(target)
    key_cols = [k for k, _ in keys]
    e_scan, a_scan = _scan(expected.url), _scan(actual.url)
    stored = _has_key_hash(e_scan) and _has_key_hash(a_scan)
    # The expected side's source keys, for the keys files (copies made before the column
    # existed have none: the source key is then read back from the target key, when it can).
    with_source = expected.source_key is not None and "source_key" in e_scan.collect_schema()
    source_col = ["source_key"] if with_source else []
    kh = _key_hash(key_cols, stored)
    try:
        rows, n_e, n_a = _differing_pairs(e_scan, a_scan, kh)
        sides = {}
        for side, kinds in (("e", ("missing", "changed")), ("a", ("unexpected", "changed"))):
            wanted = rows.filter(pl.col("_status").is_in(kinds))
            hashes = wanted.select("_k").collect(engine="streaming")["_k"].implode()
            path = folder / f"rows-{side}.parquet"
            url = expected.url if side == "e" else actual.url
            # The filter first (a third faster than the join alone at 10M rows): with the
            # copies' key_hash column it runs in the Parquet reader, before the keys are
            # turned into strings.
            (
                _scan(url, parts=True)
                .select(
                    *key_cols,
                    *(source_col if side == "e" else []),
                    kh,
                    pl.col("item_hash").alias(f"_h_{side}"),
                    "_part",
                )
                .filter(pl.col("_k").is_in(hashes))
                .join(wanted, on=["_k", f"_h_{side}"], how="inner")
                .sink_parquet(path, engine="streaming")
            )
            sides[side] = pl.scan_parquet(path)
        collisions = _collisions(sides["e"], sides["a"], key_cols)
        exact = _exact(e_scan, a_scan, key_cols, source_col, kh, collisions) if collisions else None
    except (pl.exceptions.PolarsError, OSError) as ex:
        raise InputError(f"{target.name}: the join failed: {ex}") from ex

    clean = {
        side: lf.filter(~pl.col("_k").is_in(collisions)) if collisions else lf
        for side, lf in sides.items()
    }
    # Outside the collisions each differing row is one row of a side, and every other row of
    # the expected side is matched; inside them, the exact comparison counts.
    outside = {
        "missing": _count(clean["e"].filter(pl.col("_status") == "missing")),
        "changed": _count(clean["e"].filter(pl.col("_status") == "changed")),
        "unexpected": _count(clean["a"].filter(pl.col("_status") == "unexpected")),
    }
    inside = {kind: 0 for kind in (*KINDS, "matched")}
    collided_e = 0
    if exact is not None:
        for kind in inside:
            inside[kind] = exact.filter(pl.col("_status") == kind).height
        collided_e = int(exact["_in_e"].sum())
    counts = {
        "matched": n_e - collided_e - outside["missing"] - outside["changed"] + inside["matched"],
        **{kind: outside[kind] + inside[kind] for kind in KINDS},
    }
    expected.items = n_e
    actual.items = n_a

    names: list[str] | None
    if with_source:
        mapping = None
        names = list(expected.source_key or ())
        note = "source key from the expected copy's source_key column"
    else:
        mapping, note = source_key_map(target, options.source_key)
        names = list(mapping) if mapping else None
    files = _write_key_files(target, keys, with_source, mapping, clean, exact, folder)
    sample, tally = _changed_sample(keys, expected, actual, clean, exact, options.sample)
    return {
        "table": target.table.table_name,
        "keys": [list(k) for k in keys],
        "expected": {
            "from": expected.given,
            "routed_here": expected.made,
            "items": expected.items,
            "rejected": expected.rejected,
            "rejected_by_reason": expected.reasons,
        },
        "actual": {
            "from": actual.given,
            "items": actual.items,
            "rejected": actual.rejected,
            "rejected_by_reason": actual.reasons,
        },
        **counts,
        "key_hash_collisions": len(collisions),
        "source_keys": with_source or mapping is not None,
        "source_key": names,
        "source_key_note": note,
        "files": files,
        "changed_attributes": dict(tally.most_common()),
        "changed_sample": sample,
    }


def _differing_pairs(
    e_scan: pl.LazyFrame, a_scan: pl.LazyFrame, kh: pl.Expr
) -> tuple[pl.LazyFrame, int, int]:
    """Step 1 of the diff: the rows of a full join on the key hash that are not matches
    (`_k`, `_h_e`, `_h_a`, `_status`), and each side's row count.

    polars' streaming engine reads the two integer columns of both sides; the Rust core
    compares them (bucketed by key hash, sorted in cache, walked side by side on every core)
    in about a third of the time polars' full join takes at 10M rows a side. Held meanwhile:
    32 bytes per row of each side."""
    e, a = pl.collect_all(
        [side.select(kh, pl.col("item_hash")) for side in (e_scan, a_scan)], engine="streaming"
    )
    for name, side in (("expected", e), ("actual", a)):
        if side["_k"].null_count() or side["item_hash"].null_count():
            raise InputError(f"the {name} copy has rows without a key hash or item hash")
    n_e, n_a = e.height, a.height
    key_type, item_type = e.schema["_k"], e.schema["item_hash"]
    _, k, h_e, h_a, kind = diff_pairs(*_buffers(e), *_buffers(a))
    del e, a
    rows = pl.DataFrame(
        [
            _from_le(k, pa.uint64()).reinterpret(signed=key_type == pl.Int64).alias("_k"),
            _from_le(h_e, pa.uint64()).reinterpret(signed=item_type == pl.Int64).alias("_h_e"),
            _from_le(h_a, pa.uint64()).reinterpret(signed=item_type == pl.Int64).alias("_h_a"),
            _from_le(kind, pa.uint8()).alias("_kind"),
        ]
    ).select(
        "_k",
        pl.when(pl.col("_kind") != UNEXPECTED).then("_h_e").alias("_h_e"),
        pl.when(pl.col("_kind") != MISSING).then("_h_a").alias("_h_a"),
        pl.col("_kind").replace_strict(STATUS, return_dtype=pl.String).alias("_status"),
    )
    return rows.lazy(), n_e, n_a


def _buffers(df: pl.DataFrame) -> tuple[list[pa.Buffer], list[pa.Buffer]]:
    """The data buffers of a frame's two 64-bit columns, one per Arrow chunk, sliced to the
    chunk's values (no copy)."""
    table = df.to_arrow()
    out: list[list[pa.Buffer]] = []
    for column in table.columns:
        out.append(
            [c.buffers()[1].slice(c.offset * 8, len(c) * 8) for c in column.chunks if len(c)]
        )
    return out[0], out[1]


def _from_le(data: bytes, kind: pa.DataType) -> pl.Series:
    """A polars series over little-endian values in `data` (no copy)."""
    n = len(data) // (kind.bit_width // 8)
    series = pl.from_arrow(pa.Array.from_buffers(kind, n, [None, pa.py_buffer(data)]))
    assert isinstance(series, pl.Series)
    return series


def _collisions(e: pl.LazyFrame, a: pl.LazyFrame, key_cols: list[str]) -> list[int]:
    """Key hashes that stand for more than one key among the differing rows: one side has two
    keys under one hash, or a changed pair joined two different keys."""
    out: set[int] = set()
    for side in (e, a):
        many = (
            side.group_by("_k")
            .agg(pl.struct(key_cols).n_unique().alias("n"))
            .filter(pl.col("n") > 1)
            .select("_k")
            .collect(engine="streaming")
        )
        out.update(many["_k"].to_list())
    pairs = ["_k", "_h_e", "_h_a"]
    renamed = {k: f"_a_{k}" for k in key_cols}
    unequal = (
        e.filter(pl.col("_status") == "changed")
        .select(*pairs, *key_cols)
        .join(
            a.filter(pl.col("_status") == "changed").select(*pairs, *key_cols).rename(renamed),
            on=pairs,
            how="inner",
        )
        .filter(pl.any_horizontal([pl.col(k) != pl.col(renamed[k]) for k in key_cols]))
        .select("_k")
        .collect(engine="streaming")
    )
    out.update(unequal["_k"].to_list())
    return sorted(out)


def _exact(
    e_scan: pl.LazyFrame,
    a_scan: pl.LazyFrame,
    key_cols: list[str],
    source_col: list[str],
    kh: pl.Expr,
    hashes: list[int],
) -> pl.DataFrame:
    """Every row of both sides under the colliding key hashes, compared by their keys: the
    same columns as the differing rows (the expected side's source key too, when it has one),
    plus `_in_e` (the row has an expected side)."""
    cols = ["item_hash", "file", "line"]
    e = (
        e_scan.select(*key_cols, *source_col, kh, *cols)
        .filter(pl.col("_k").is_in(hashes))
        .rename({"item_hash": "_h_e", "file": "_file", "line": "_line"})
    )
    a = (
        a_scan.select(*key_cols, kh, *cols)
        .filter(pl.col("_k").is_in(hashes))
        .rename({"item_hash": "_h_a", "file": "_file_a", "line": "_line_a"})
        .drop("_k")
    )
    joined = e.join(a, on=key_cols, how="full", coalesce=True).with_columns(
        _status(),
        pl.col("_h_e").is_not_null().alias("_in_e"),
        pl.coalesce("_file", "_file_a").alias("_file"),
        pl.coalesce("_line", "_line_a").alias("_line"),
    )
    return joined.collect(engine="streaming")


def _write_key_files(
    target: TargetConfig,
    keys: Keys,
    with_source: bool,
    mapping: dict[str, tuple[str, str]] | None,
    rows: dict[str, pl.LazyFrame],
    exact: pl.DataFrame | None,
    folder: Path,
) -> dict[str, str]:
    """missing.jsonl, changed.jsonl, unexpected.jsonl in the folder, written by polars
    without a Python object per key (sink_ndjson, or sink_csv of whole lines).

    Missing and changed lines take `Keys` from the expected copy's `source_key` column when
    it has one (already JSON text: the line is made by joining strings), else from the target
    key through `mapping`, else they hold `TargetKeys` only."""
    key_cols = [k for k, _ in keys]
    target_key = _key_struct([(k, k, t) for k, t in keys]).alias("TargetKeys")
    files = {}
    for kind in KINDS:
        side = rows["a" if kind == "unexpected" else "e"]
        wanted = [*key_cols, "source_key"] if with_source and kind != "unexpected" else key_cols
        found = side.filter(pl.col("_status") == kind).select(wanted)
        if exact is not None:
            extra = exact.lazy().filter(pl.col("_status") == kind).select(wanted)
            found = pl.concat([found, extra])
        path = folder / f"{kind}.jsonl"
        files[kind] = f"{target.name}/{kind}.jsonl"
        if kind != "unexpected" and with_source:
            line = pl.concat_str(
                pl.lit('{"Keys":'),
                pl.col("source_key"),
                pl.lit(',"TargetKeys":'),
                target_key.struct.json_encode(),
                pl.lit("}"),
            )
            # Never quoted: each value is one JSON object, whose text has no raw newline.
            found.select(line.alias("line")).sink_csv(
                path, include_header=False, quote_style="never", engine="streaming"
            )
            continue
        if kind == "unexpected":
            cols = [pl.lit(target.name).alias("Target"), target_key.alias("Keys")]
        elif mapping is not None:
            source_key = _key_struct([(s, col, t) for s, (col, t) in mapping.items()])
            cols = [source_key.alias("Keys"), target_key]
        else:
            cols = [target_key]
        found.select(cols).sink_ndjson(path, engine="streaming")
    return files


def _changed_sample(
    keys: Keys,
    expected: _Side,
    actual: _Side,
    rows: dict[str, pl.LazyFrame],
    exact: pl.DataFrame | None,
    n: int,
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """For up to n changed items: the key, where each side's item came from, and the names
    of the top-level attributes that differ.

    Reading an item back decodes the `item` column of its whole Parquet file, so the sample
    is taken from the pair of files (expected, actual) that holds the most changed items
    among the first SAMPLE_POOL, then the next pair: a few files read, not every one."""
    tally: Counter[str] = Counter()
    if n <= 0:
        return [], tally
    key_cols = [k for k, _ in keys]
    cols = [*key_cols, "_part"]
    e = rows["e"].filter(pl.col("_status") == "changed").select(cols)
    a = rows["a"].filter(pl.col("_status") == "changed").select(cols)
    pool = e.join(a, on=key_cols, how="inner", suffix="_a").head(SAMPLE_POOL)
    picked = (
        pool.with_columns(pl.len().over("_part", "_part_a").alias("_n"))
        .sort(["_n", "_part", "_part_a"], descending=[True, False, False])
        .head(n)
        .collect(engine="streaming")
    )
    picked = pl.concat(
        [
            picked,
            _read_items(key_cols, picked, expected.url, picked["_part"].unique().to_list(), ""),
            _read_items(key_cols, picked, actual.url, picked["_part_a"].unique().to_list(), "_a"),
        ],
        how="horizontal",
    )
    if exact is not None and picked.height < n:
        more = exact.filter(pl.col("_status") == "changed").select(key_cols).head(n - picked.height)
        more = pl.concat(
            [
                more,
                _read_items(key_cols, more, expected.url, None, ""),
                _read_items(key_cols, more, actual.url, None, "_a"),
            ],
            how="horizontal",
        )
        picked = pl.concat([picked, more], how="diagonal_relaxed")
    sample = []
    for row in picked.iter_rows(named=True):
        left = json.loads(row["_item"] or "{}")
        right = json.loads(row["_item_a"] or "{}")
        differ = sorted(
            name for name in set(left) | set(right) if left.get(name) != right.get(name)
        )
        tally.update(differ)
        sample.append(
            {
                "key": {k: _key_json(row[k], t) for k, t in keys},
                "attributes": differ,
                "expected": {"file": row["_file"], "line": row["_line"]},
                "actual": {"file": row["_file_a"], "line": row["_line_a"]},
            }
        )
    return sample, tally


def _read_items(
    key_cols: list[str], wanted: pl.DataFrame, url: str, parts: list[str] | None, suffix: str
) -> pl.DataFrame:
    """The `item`, `file` and `line` of each row of `wanted` (by its key columns) in the copy
    at `url`, as `_item`, `_file`, `_line` + suffix, reading only the Parquet files `parts`
    when they are known."""
    names = {"item": f"_item{suffix}", "file": f"_file{suffix}", "line": f"_line{suffix}"}
    if wanted.height == 0:
        return pl.DataFrame(schema={names["item"]: pl.String, names["file"]: pl.String,
                                    names["line"]: pl.Int64})  # fmt: skip
    source = parts if parts else _scan_source(url)
    # A filter on the hash key's values first: polars pushes it into the Parquet reader,
    # which then skips the row groups without them (a join alone would decode every item).
    first = pl.col(key_cols[0]).is_in(wanted[key_cols[0]].unique().implode())
    found = (
        pl.scan_parquet(source, storage_options=_storage_options(url))
        .filter(first)
        .join(wanted.lazy().select(key_cols), on=key_cols, how="semi")
        .select(*key_cols, *(pl.col(c).alias(a) for c, a in names.items()))
        .unique(subset=key_cols)
        .collect(engine="streaming")
    )
    return wanted.select(key_cols).join(found, on=key_cols, how="left").drop(key_cols)


def _key_json(value: Any, t: str) -> dict[str, str]:
    if t == "B":
        import base64

        return {"B": base64.b64encode(value).decode()}
    return {t: value}


def _publish(out: str, work: Path, targets: list[TargetConfig]) -> None:
    """Copies each target's key files from the work folder to `out` (local or s3://)."""
    fs, root = url_to_fs(out)
    root = root.rstrip("/")
    for t in targets:
        for kind in KINDS:
            local = work / "result" / t.name / f"{kind}.jsonl"
            remote = posixpath.join(root, t.name, f"{kind}.jsonl")
            try:
                if is_s3(out):
                    fs.put_file(str(local), remote)
                else:
                    Path(remote).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(local, remote)
            except OSError as e:
                raise InputError(
                    f"{out}: cannot write {t.name}/{kind}.jsonl: {describe_os_error(e)}"
                ) from e


def _write_json(url: str, obj: Any) -> None:
    fs, path = url_to_fs(url)
    data = (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()
    try:
        if not is_s3(url):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        with fs.open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise InputError(f"{url}: cannot write: {describe_os_error(e)}") from e
