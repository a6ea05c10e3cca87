"""ddbshard split against the codec limit, a boto3 script and jq, on one synthetic export.

One run generates (or reuses) an export in the AWS layout and measures, on the same data files:

  codec limit    `gzip -dc FILE | zstd -3 -T1 > /dev/null` per file: the decompressing and
                 recompressing that no tool doing this job can skip
  boto3 script   baseline_boto3.py: json + TypeDeserializer/TypeSerializer + zstandard
  jq             gzip -dc | jq (route + transform) | mawk (round-robin) | zstd -3 per shard
  ddbshard       `python -m ddbshard split CONFIG --workers N --quiet` into an emptied
                 destination, N = 1 and N = all cores

all doing the split of split_setup.py. CPU seconds are user + sys of the child processes
(getrusage RUSAGE_CHILDREN around each run); peak RSS comes from polling /proc (VmHWM of every
process of the run) and, for ddbshard, is given per worker process. CPU comparisons take the
least-CPU run of each contender, the worker scaling (a wall-time ratio) the fastest run of
each worker count. It prints a Markdown table,
the issue's targets with PASS/FAIL, and peak RSS per worker for each of --rss-sizes.

Run: `make bench-compare`, or `.venv/bin/python bench/compare_split.py [--items N] ...`
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from split_setup import SHARDS, TARGETS, data_files, ensure_export, write_config

HERE = Path(__file__).resolve().parent
MB = 1 << 20  # for RSS (MiB, as the 256 MB target means); data sizes are in 10**6 bytes
RSS_LIMIT_MB = 256

JQ_PROGRAM = """\
.Item as $i
| if $i.kind.S == "post" and ($i | has("created_at")) then
    "Posts\\t" + ({Item: ($i | del(.legacy) | .createdAt = .created_at | del(.created_at)
                          | .gsi1pk = {S: ("USER#" + $i.user_id.S)})} | tojson)
  elif $i.kind.S == "profile" then "Profiles\\t" + ({Item: ($i | del(.legacy, .sk))} | tojson)
  elif $i.kind.S == "comment" then "Comments\\t" + ({Item: $i} | tojson)
  else empty end
"""

AWK_PROGRAM = """\
{
    i = index($0, "\\t"); t = substr($0, 1, i - 1); n = count[t]++ % shards
    print substr($0, i + 1) | ("zstd -3 -q -T1 > " dir "/" t "/data/part-0000" n ".json.zst")
}
END { for (t in count) print t, count[t] > "/dev/stderr" }
"""


# --------------------------------------------------------------------------------------------
# Measuring a run: wall time, CPU of the children, peak RSS of every process in the tree


@dataclass
class Measure:
    name: str
    items: int
    wall: float
    cpu: float
    rss: dict[int, tuple[str, int]] = field(default_factory=dict)  # pid -> (cmdline, VmHWM)
    maxrss_children: int = 0  # bytes: ru_maxrss of the children (the largest process)
    output: str = ""
    root: int = 0  # pid of the process run (a split's driver)

    @property
    def items_per_s(self) -> float:
        return self.items / self.wall

    @property
    def items_per_cpu_s(self) -> float:
        return self.items / self.cpu

    def peak_rss(self, *, workers_only: bool = False) -> int:
        """Bytes: the largest peak RSS of one process (of a worker process, if asked).

        A split's workers are the processes under its driver, but multiprocessing's resource
        tracker (started beside spawned workers); forked workers share the driver's command
        line, so it cannot tell them apart."""
        if not workers_only:
            return max((hwm for _, hwm in self.rss.values()), default=self.maxrss_children)
        workers = [
            hwm
            for pid, (cmd, hwm) in self.rss.items()
            if pid != self.root and "resource_tracker" not in cmd
        ]
        if not workers:
            sys.exit(f"{self.name}: no worker process was seen")
        return max(workers)


def _children(pid: int) -> list[int]:
    """Every live descendant of `pid` (scanning /proc for parent ids).

    Only processes numbered after `pid` are read: a descendant is started after it (pids
    wrap only past pid_max), and reading the stat of every process on the machine every 50
    ms cost the poller enough CPU to slow the 2-worker runs, which have no idle core."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) <= pid:
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _hwm(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return cmd, int(line.split()[1]) * 1024
    return None


def run(
    name: str, argv: list[str], items: int, *, cwd: Path | None = None, ok: tuple[int, ...] = (0,)
) -> Measure:
    """Runs `argv` to completion and measures it; fails loudly on an exit status not in `ok`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peaks: dict[int, tuple[str, int]] = {}
    done = threading.Event()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def poll() -> None:
        while not done.is_set():
            for pid in [proc.pid, *_children(proc.pid)]:
                got = _hwm(pid)
                if got is not None and got[1] >= peaks.get(pid, ("", 0))[1]:
                    peaks[pid] = got
            done.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    poller.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in ok:
        sys.exit(f"{name}: exit status {proc.returncode}\n{err.decode(errors='replace')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measure(
        name,
        items,
        wall,
        cpu,
        peaks,
        after.ru_maxrss * 1024,
        out.decode(errors="replace") + err.decode(errors="replace"),
        proc.pid,
    )


def best(runs: list[Measure]) -> Measure:
    """The run with the least CPU (the one least disturbed on a shared machine)."""
    return min(runs, key=lambda m: m.cpu)


def fastest(runs: list[Measure]) -> Measure:
    """The run with the least wall time: what the wall-time ratios (scaling) compare."""
    return min(runs, key=lambda m: m.wall)


# --------------------------------------------------------------------------------------------
# The contenders


def codec_limit(files: list[Path], items: int) -> Measure:
    script = "set -e -o pipefail\n" + "".join(
        f"gzip -dc {shlex.quote(str(f))} | zstd -3 -T1 -q > /dev/null\n" for f in files
    )
    return run("codec limit (gzip -dc | zstd -3 -T1)", ["bash", "-c", script], items)


def boto3_script(export: Path, out: Path, items: int) -> Measure:
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, str(HERE / "baseline_boto3.py"), str(export), str(out)]
    m = run("boto3 script (json + TypeDeserializer/Serializer + zstandard)", argv, items)
    counts = json.loads(m.output.strip().splitlines()[-1])
    m.output = json.dumps(dict(sorted(counts["targets"].items())))
    return m


def jq_pipeline(files: list[Path], out: Path, items: int) -> Measure:
    shutil.rmtree(out, ignore_errors=True)
    for target in TARGETS:
        (out / target / "data").mkdir(parents=True)
    script = (
        "set -e -o pipefail\n"
        f"gzip -dc {' '.join(shlex.quote(str(f)) for f in files)}"
        f" | jq -c -r {shlex.quote(JQ_PROGRAM)}"
        f" | mawk -v shards={SHARDS} -v dir={shlex.quote(str(out))} {shlex.quote(AWK_PROGRAM)}\n"
    )
    m = run("jq (gzip -dc | jq | mawk | zstd -3)", ["bash", "-c", script], items)
    counts = dict(line.split() for line in m.output.splitlines() if line.strip())
    m.output = json.dumps({t: int(counts[t]) for t in sorted(counts)})
    return m


def ddbshard(config: Path, dest: Path, workers: int, items: int) -> Measure:
    # Each timed run is a first run into an empty destination (its state lives there too).
    # Deleting the previous round's half-gigabyte of shards is no part of splitting, as the
    # codec pipeline writing to /dev/null deletes nothing; `--overwrite` would time it.
    shutil.rmtree(dest, ignore_errors=True)
    argv = [sys.executable, "-m", "ddbshard", "split", str(config)]
    argv += ["--workers", str(workers), "--quiet"]
    m = run(f"ddbshard split --workers {workers}", argv, items)
    summary = json.loads((dest / "_summary.json").read_text())
    if summary["items"]["read"] != items or summary["items"]["rejected"]:
        sys.exit(f"ddbshard: unexpected summary {summary['items']}")
    m.output = json.dumps({t: v["written"] for t, v in sorted(summary["targets"].items())})
    return m


# --------------------------------------------------------------------------------------------
# Report


def _mb(n: int) -> str:
    return f"{n / MB:,.0f}"


def table(rows: list[Measure], codec: Measure, one: Measure) -> list[str]:
    lines = [
        "| run | wall s | CPU s | items/s (wall) | items/CPU-s | items/CPU-s vs codec "
        "| ddbshard 1 worker vs this (wall) | peak RSS MB (largest process) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in rows:
        name = m.name.replace("|", "\\|")  # a pipe inside a Markdown table cell
        lines.append(
            f"| {name} | {m.wall:,.1f} | {m.cpu:,.1f} | {m.items_per_s:,.0f} "
            f"| {m.items_per_cpu_s:,.0f} | {m.items_per_cpu_s / codec.items_per_cpu_s:.2f}x "
            f"| {one.items_per_s / m.items_per_s:.2f}x | {_mb(m.peak_rss())} |"
        )
    return lines


def target(name: str, measured: str, ok: bool) -> None:
    print(f"| {name} | {measured} | {'PASS' if ok else 'FAIL'} |")


def main() -> int:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="items (default 1M)")
    parser.add_argument("--files", type=int, default=8, help="data files (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ddbshard-bench",
        help="exports (kept and reused) and outputs (default: $TMPDIR/ddbshard-bench)",
    )
    parser.add_argument("--workers", type=int, default=cores, help=f"'all cores' (default {cores})")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of the codec and ddbshard rows; least CPU"
    )
    parser.add_argument(
        "--rss-sizes",
        default="1000000,4000000",
        help="item counts to record ddbshard's peak RSS per worker for ('' for none)",
    )
    parser.add_argument("--skip-boto3", action="store_true", help="leave out the boto3 row")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    def export_for(items: int) -> Path:
        t = time.perf_counter()
        root = ensure_export(args.work, items, args.files, args.seed, jobs=cores)
        took = time.perf_counter() - t
        print(f"export: {items:,} items, {args.files} files: {root} ({took:.0f} s)")
        return root

    export = export_for(args.items)
    files = data_files(export)
    gz_bytes = sum(f.stat().st_size for f in files)
    raw_bytes = json.loads((export / "manifest-summary.json").read_text())["billedSizeBytes"]
    size = f"{raw_bytes / 1e6:,.0f} MB of JSON, {gz_bytes / 1e6:,.0f} MB gzip, {len(files)} files"
    print(f"machine: {cores} cores, {_cpu_model()}, load average {_loadavg()}")
    built = _extension_built()
    print(f"ddbshard: {built}")
    print()

    rows: list[Measure] = []
    counts: dict[str, str] = {}
    boto = None
    if not args.skip_boto3:
        boto = boto3_script(export, args.work / "out-boto3", args.items)
        rows.append(boto)
        counts[boto.name] = boto.output
        print(f"measured: {boto.name}: {boto.wall:.1f} s", flush=True)

    jq = None
    if shutil.which("jq") and shutil.which("mawk"):
        jq = jq_pipeline(files, args.work / "out-jq", args.items)
        rows.append(jq)
        counts[jq.name] = jq.output
        print(f"measured: {jq.name}: {jq.wall:.1f} s", flush=True)
    else:
        print("jq row skipped: jq (and mawk) not found on PATH; apt-get install jq mawk")

    dest = args.work / "out-ddbshard"
    config = write_config(args.work / "split.toml", export, dest)
    # The codec limit and the ddbshard runs are taken in turns, and the best of each kept:
    # on a shared machine, minutes apart is enough for the CPU cost of the same work to move
    # by 15%, which would be read as a difference between the two.
    worker_counts = sorted({1, args.workers})
    codec_runs: list[Measure] = []
    runs: dict[int, list[Measure]] = {w: [] for w in worker_counts}
    for _ in range(args.repeat):
        codec_runs.append(codec_limit(files, args.items))
        for workers in worker_counts:
            runs[workers].append(ddbshard(config, dest, workers, args.items))
    codec = best(codec_runs)
    rows.insert(0, codec)
    print(f"measured: {codec.name}: {codec.cpu:.1f} CPU s", flush=True)
    by_workers: dict[int, Measure] = {}
    for workers in worker_counts:
        m = by_workers[workers] = best(runs[workers])
        rows.append(m)
        counts[m.name] = m.output
        print(f"measured: {m.name}: {m.wall:.1f} s", flush=True)
    one = by_workers[1]
    # Every round, so a reading can be judged: the codec pipeline keeps both cores busy at
    # once, and another tenant's load inflates its CPU seconds more than a one-worker split's
    # (seen: 7.3 to 10.4 CPU s for the same files within minutes). The ratio of each round's
    # pair, taken minutes apart at most, is the second opinion.
    pairs = [c.cpu / d.cpu for c, d in zip(codec_runs, runs[1], strict=True)]
    print(
        "rounds, CPU s: codec "
        + ", ".join(f"{m.cpu:.2f}" for m in codec_runs)
        + "; ddbshard 1 worker "
        + ", ".join(f"{m.cpu:.2f}" for m in runs[1])
        + "; per-round ratio "
        + ", ".join(f"{r:.2f}x" for r in pairs),
        flush=True,
    )

    # The codec pipeline checks nothing; split reads every input file's MD5 against the
    # manifest and writes every shard's MD5 into its manifest. Their cost, measured here with
    # md5sum over the same bytes, is part of ddbshard's CPU and not of the codec row.
    shards = sorted(p for p in dest.rglob("*.json.zst") if p.is_file())
    md5 = best(
        [
            run(
                "md5sum of the input files and the shards", ["md5sum", *map(str, files + shards)], 0
            )
            for _ in range(args.repeat)
        ]
    )
    print(f"measured: {md5.name}: {md5.cpu:.1f} CPU s", flush=True)

    if len(set(counts.values())) > 1:
        print("\nWARNING: the runs wrote different item counts per target:")
        for name, c in counts.items():
            print(f"  {name}: {c}")

    print()
    print(f"{args.items:,} items ({size})")
    print()
    print("\n".join(table(rows, codec, one)))
    print()
    print("ddbshard peak RSS per worker process: " + ", ".join(
        f"{w} worker{'s' if w > 1 else ''} {_mb(m.peak_rss(workers_only=True))} MB"
        for w, m in by_workers.items()
    ))  # fmt: skip

    rss: dict[int, int] = {
        args.items: max(r.peak_rss(workers_only=True) for r in runs[args.workers])
    }
    # Worker scaling per export size, a ratio of wall times: of the fastest run of each worker
    # count, as wall-time benchmarks go (another tenant's burst slows a run, nothing speeds
    # one up). A run pays about 0.1 s to start whatever its size, which weighs on 1M items
    # and not on the exports of tens of millions the tool is for; the largest size is
    # measured with 1 worker too.
    print(
        "rounds, wall s: "
        + "; ".join(
            f"{w} worker{'s' if w > 1 else ''} " + ", ".join(f"{m.wall:.2f}" for m in runs[w])
            for w in worker_counts
        )
    )
    scaling: dict[int, float] = {
        args.items: fastest(runs[args.workers]).items_per_s / fastest(runs[1]).items_per_s
    }
    extra = [int(s) for s in args.rss_sizes.split(",") if s.strip()]
    for count in extra:
        if count in rss:
            continue
        root = export_for(count)
        cfg = write_config(args.work / f"split-{count}.toml", root, dest)
        many_runs = [ddbshard(cfg, dest, args.workers, count) for _ in range(args.repeat)]
        rss[count] = max(r.peak_rss(workers_only=True) for r in many_runs)
        m = fastest(many_runs)
        print(
            f"measured: {m.name} on {count:,} items: {m.wall:.1f} s, {m.items_per_s:,.0f} items/s"
        )
        if count == max(extra) and count > args.items and args.workers > 1:
            m1 = fastest([ddbshard(cfg, dest, 1, count) for _ in range(args.repeat)])
            scaling[count] = m.items_per_s / m1.items_per_s
            print(
                f"measured: {m1.name} on {count:,} items: {m1.wall:.1f} s, "
                f"{m1.items_per_s:,.0f} items/s"
            )
    sizes = sorted(rss)
    print(
        f"peak RSS per worker (--workers {args.workers}): "
        + ", ".join(f"{n:,} items {_mb(rss[n])} MB" for n in sizes)
    )

    if _extension_built() != built:
        print(f"WARNING: the extension was rebuilt during the run (now {_extension_built()})")
    print(f"load average at the end: {_loadavg()}")
    print()
    print("| target | measured | result |")
    print("|---|---|---|")
    ratio = one.items_per_cpu_s / codec.items_per_cpu_s
    target("1 worker ≥ 1.0x the codec limit's items/CPU-s", f"{ratio:.2f}x", ratio >= 1.0)
    median = statistics.median(pairs)
    print(
        f"| (not a target) 1 worker vs the codec limit, median of the {len(pairs)} rounds' "
        f"ratios ({min(pairs):.2f}x-{max(pairs):.2f}x) | {median:.2f}x | |"
    )
    ratio = (codec.cpu + md5.cpu) / one.cpu
    print(
        f"| (not a target) 1 worker vs the codec limit plus the MD5s split computes "
        f"({codec.cpu:.1f} + {md5.cpu:.1f} CPU s) | {ratio:.2f}x | |"
    )
    if boto is not None:
        ratio = one.items_per_s / boto.items_per_s
        target("1 worker ≥ 10x the boto3 script (wall items/s)", f"{ratio:.1f}x", ratio >= 10)
    if jq is not None:
        ratio = one.items_per_s / jq.items_per_s
        target("1 worker ≥ 4x jq (wall items/s)", f"{ratio:.1f}x", ratio >= 4)
    for n, ratio in sorted(scaling.items()):
        name = f"{args.workers} workers ≥ 1.8x 1 worker (wall items/s), {n:,} items"
        target(name, f"{ratio:.2f}x", ratio >= 1.8)
    for n in sizes:
        name = f"peak RSS per worker ≤ {RSS_LIMIT_MB} MB, {n:,} items"
        target(name, f"{_mb(rss[n])} MB", rss[n] <= RSS_LIMIT_MB * MB)
    if len(sizes) > 1:
        spread = max(rss.values()) - min(rss.values())
        same = spread <= max(16 * MB, 0.1 * min(rss.values()))
        name = f"peak RSS per worker the same for {' and '.join(f'{n:,}' for n in sizes)} items"
        target(name + " (within 10% or 16 MB)", f"{_mb(spread)} MB apart", same)
    return 0


def _extension_built() -> str:
    """Which build of the native extension the ddbshard runs use (path and modification time)."""
    found = importlib.util.find_spec("ddbshard._core")
    if found is None or found.origin is None:
        return "ddbshard._core not found"
    path = Path(found.origin)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))
    return f"{path} built {stamp}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
