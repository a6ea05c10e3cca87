"""How much faster `sync` goes with rounds in flight: keys/s with one round after another
(concurrency 1, how sync ran before) and with 16, in the same run, against the same endpoint.

The endpoint is bench/fake_dynamodb.py in a process of its own: DescribeTable, BatchGetItem and
BatchWriteItem answered from memory, every call 10 ms late (`--delay`), many at once. Each
contender syncs its own `--keys` changed keys (20,000 by default; the source table holds them,
the target does not yet): per round of 100 keys one BatchGetItem of the source, one of the
target, four BatchWriteItem calls of 25 puts. The sync is `SyncRun` in this process, as the
command runs it (the Router of a one-target config with where/rename/drop, a `Dynamo` on a
boto3 client with botocore's retries off); each run is checked: every key read and put, none
failed. It prints keys/s of each, its CPU time per key, the calls and the most calls ever in
flight, the endpoint's CPU time per call (from /proc, to show it is not what is measured), and
the ratio against the goal (16 in flight at least 8x one after another: PASS/FAIL).

Run: `.venv/bin/python bench/compare_sync.py [--keys 20000] [--delay 0.01] [--repeat 1]`
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONFIG = """\
source = "/nowhere"
dest = "/nowhere-out"
[[target]]
name = "Posts"
where = "kind = :p"
values = { ":p" = "post" }
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "S" }
rename = { title = "headline" }
drop = ["tags"]
"""
GOAL = 8.0


def start_endpoint(items: int, delay: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "fake_dynamodb.py"), "--items", str(items), "--delay",
         str(delay)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    if not port.isdigit():
        proc.kill()
        raise SystemExit("the fake endpoint did not start")
    return proc, f"http://127.0.0.1:{port}"


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of another process so far (Linux), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sync_once(start: int, count: int, concurrency: int) -> dict[str, Any]:
    """Syncs source items start .. start + count - 1 with `concurrency`; its measures."""
    from ddbshard.catchup.dynamo import Dynamo, client
    from ddbshard.catchup.keysfile import KeyEntry
    from ddbshard.catchup.routing import Router
    from ddbshard.catchup.syncrun import SyncRun
    from ddbshard.catchup.wire import canonical
    from ddbshard.config import parse_config
    from fake_dynamodb import bench_item

    router = Router(parse_config(CONFIG))
    dynamo = Dynamo(client("us-east-1", concurrency), slots=concurrency)
    run = SyncRun(router, dynamo, "Source", ("pk", "sk"), concurrency=concurrency)
    entries = []
    for i in range(start, start + count):
        item = bench_item(i)
        keys = {"pk": item["pk"], "sk": item["sk"]}
        entries.append(KeyEntry(keys, canonical(keys)))
    wall, cpu = time.perf_counter(), time.process_time()
    tally = run.run(entries)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if (tally.keys, tally.read, tally.put, tally.failed) != (count, count, count, 0):
        raise SystemExit(f"concurrency {concurrency}: a wrong answer: {tally}")
    return {
        "concurrency": concurrency,
        "wall": wall,
        "cpu": cpu,
        "keys_s": count / wall,
        "calls": dynamo.stats.calls,
        "most_in_flight": dynamo.stats.most_in_flight,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=20_000, help="changed keys per contender")
    p.add_argument("--delay", type=float, default=0.01, help="seconds added to every call")
    p.add_argument("--concurrency", type=int, default=16, help="the contender's (default 16)")
    p.add_argument("--repeat", type=int, default=1, help="rounds of both, in turns")
    args = p.parse_args()
    contenders = (1, args.concurrency)
    runs = args.repeat * len(contenders)
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1"
    )
    os.environ.pop("AWS_PROFILE", None)
    proc, endpoint = start_endpoint(args.keys * runs, args.delay)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    print(f"endpoint {endpoint}: {args.delay * 1000:.0f} ms per call; {args.keys:,} keys a run")
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    best: dict[int, dict[str, Any]] = {}
    try:
        start = 0
        for r in range(args.repeat):
            for c in contenders:
                served = process_cpu(proc.pid)
                m = sync_once(start, args.keys, c)
                after = process_cpu(proc.pid)
                start += args.keys
                endpoint_cpu = ""
                if served is not None and after is not None:
                    endpoint_cpu = (
                        f", endpoint {(after - served) / m['calls'] * 1000:.2f} ms CPU/call"
                    )
                print(
                    f"round {r + 1}, concurrency {c:>3}: {m['wall']:6.2f} s wall, "
                    f"{m['cpu']:6.2f} s CPU ({m['cpu'] / args.keys * 1e6:.0f} µs/key), "
                    f"{m['keys_s']:8,.0f} keys/s, {m['calls']:,} calls, "
                    f"at most {m['most_in_flight']} in flight{endpoint_cpu}",
                    flush=True,
                )
                if c not in best or m["keys_s"] > best[c]["keys_s"]:
                    best[c] = m
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    ratio = best[args.concurrency]["keys_s"] / best[1]["keys_s"]
    verdict = "PASS" if ratio >= GOAL else "FAIL"
    print(
        f"concurrency {args.concurrency} vs 1 (best rounds): {ratio:.1f}x keys/s "
        f"(goal >= {GOAL:.0f}x): {verdict}"
    )


if __name__ == "__main__":
    main()
