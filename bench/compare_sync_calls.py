"""CPU time of one of sync's calls, spoken straight on the pool's connection
(catchup/wireexchange.py) against the same call through urllib3's `urlopen` (which a proxy or
unchecked TLS still use), in the same run, in turns, on the same client and connection.

The endpoint is bench/fake_dynamodb.py in a process of its own with no delay; the calls are
the two sync makes: a BatchGetItem of 100 keys (about 23 KB answered) and a BatchWriteItem of
25 puts. Each contender makes `--calls` of each, one after another; the script prints the CPU
time per call of each (this process only) and the ratio.

Run: `.venv/bin/python bench/compare_sync_calls.py [--calls 2000] [--repeat 2]`
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from compare_sync import start_endpoint
from fake_dynamodb import bench_item


def cpu_per_call(ddb: Any, calls: int, get: dict[str, Any], put: dict[str, Any]) -> float:
    start = time.process_time()
    for _ in range(calls):
        ddb.batch_get_item(RequestItems=get)
        ddb.batch_write_item(RequestItems=put)
    return (time.process_time() - start) / (2 * calls)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=2000, help="calls of each kind per contender")
    p.add_argument("--repeat", type=int, default=2, help="rounds of both, in turns")
    args = p.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1"
    )
    os.environ.pop("AWS_PROFILE", None)
    proc, endpoint = start_endpoint(100, 0.0)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    from ddbshard.catchup.dynamo import client

    items = [bench_item(i) for i in range(100)]
    get = {"Source": {"Keys": [{"pk": i["pk"], "sk": i["sk"]} for i in items]}}
    put = {"Posts": [{"PutRequest": {"Item": i}} for i in items[:25]]}
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    try:
        ddb = client("us-east-1")
        ddb.batch_get_item(RequestItems=get)  # the pool and the connection, resolved once
        spoken_host = ddb._http._host
        if spoken_host is None:
            raise SystemExit("the endpoint is not spoken to on the pool's connections")
        best: dict[str, float] = {}
        for r in range(args.repeat):
            for name, host in (("urlopen", None), ("on the pool", spoken_host)):
                ddb._http._host = host
                cpu = cpu_per_call(ddb, args.calls, get, put)
                best[name] = min(best.get(name, cpu), cpu)
                print(f"round {r + 1}, {name:<11}: {cpu * 1e6:6.0f} µs CPU per call", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    ratio = best["urlopen"] / best["on the pool"]
    saved = (best["urlopen"] - best["on the pool"]) * 1e6
    print(f"on the pool vs urlopen (best rounds): {ratio:.2f}x less CPU, {saved:.0f} µs per call")


if __name__ == "__main__":
    main()
