"""Prints ddbshard.stream_records on one large DynamoDB Streams event (tens of MB of JSON) read
on two threads, against the same call in a process limited to one CPU, which reads every
event on the calling thread: wall and CPU seconds of the call, its peak memory growth, and
the ratios, all measured in this one run.

On two threads the reader plans records ahead of the thread that builds them, a bounded
number of records ahead, so the call should take no more memory than on one thread, and no
more time whatever the event's size (a planner whose cost grew with the event, as its table
of map shapes once did, shows here as a ratio far below 1x).

Two events: `synth`, the records of `bench_stream_records` (~1.5 KB each), and `sparse`, small
records whose new image holds its key and one attribute of 30 names, attr0 to attr29, in turn
(a table whose items carry a few of many optional attributes): maps of two names whose second
varies, some of those names sharing a slot of the planner's table of names, so renumbered
again and again (what made the planner's table of map shapes slow before its hash was fixed).

Each reading runs in a child process of its own, the fastest of `--runs` kept.

Run: `PYTHONPATH=bench .venv/bin/python bench/compare_stream_records_large.py
[--records N] [--event sparse]`
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_stream_records import stream_event, stream_record

# Peak memory from Linux's VmHWM, reset just before the call (reading the file peaks above
# what the call adds to it, so ru_maxrss would not move).
_READ = """
import json, os, sys, time
import ddbshard
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
if sys.argv[2] == "one":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
text = open(sys.argv[1], "rb").read()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
wall, cpu = time.perf_counter(), time.process_time()
records = ddbshard.stream_records(text)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
grown = status("VmHWM") - before
print(json.dumps({"records": len(records), "wall": wall, "cpu": cpu, "kb": grown}))
"""


def sparse_event(count: int) -> dict[str, Any]:
    """`count` INSERTs whose new image is its key and one of attr0..attr29, in turn."""
    records = []
    for i in range(count):
        key = {"pk": {"S": f"user#{i}"}}
        body = {
            "ApproximateCreationDateTime": 1796598123 + i // 100,
            "Keys": key,
            "NewImage": {**key, f"attr{i % 30}": {"S": "value"}},
            "SequenceNumber": f"{10**20 + i}",
            "SizeBytes": 60,
            "StreamViewType": "NEW_IMAGE",
        }
        records.append(stream_record(i, "INSERT", body))
    return {"Records": records}


def read(path: Path, cpus: str, runs: int) -> dict[str, float]:
    """The fastest of `runs` readings of the event in `path`, each in a child process."""
    best: dict[str, float] = {}
    for _ in range(runs):
        child = subprocess.run(
            [sys.executable, "-c", _READ, str(path), cpus],
            capture_output=True,
            text=True,
            check=True,
        )
        got = json.loads(child.stdout)
        if not best or got["wall"] < best["wall"]:
            best = got
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=30_000, help="records in the event")
    parser.add_argument("--runs", type=int, default=2, help="readings of each kind")
    parser.add_argument("--event", choices=["synth", "sparse"], default="synth")
    args = parser.parse_args()
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs sched_setaffinity and two CPUs")
    make = stream_event if args.event == "synth" else sparse_event
    text = json.dumps(make(args.records)).encode()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "event.json")
        path.write_bytes(text)
        one = read(path, "one", args.runs)
        two = read(path, "all", args.runs)
    assert one["records"] == two["records"] == args.records
    load = os.getloadavg()[0]
    size = f"{len(text) / 1e6:.1f} MB of JSON"
    print(f"{args.records:,}-record {args.event} event, {size}, load {load:.1f}\n")
    print(f"{'':28}{'wall s':>10}{'CPU s':>10}{'peak +MB':>10}")
    for label, got in (("one thread (one CPU)", one), ("two threads", two)):
        print(f"{label:28}{got['wall']:10.2f}{got['cpu']:10.2f}{got['kb'] / 1024:10.0f}")
    print(f"\nwall, one thread / two threads   {one['wall'] / two['wall']:.2f}x")
    print(f"peak memory growth, two / one    {two['kb'] / one['kb']:.2f}x")


if __name__ == "__main__":
    main()
