"""Prints ddbshard.stream_records against json + base64 + boto3 TypeDeserializer on a 1,000-record
DynamoDB Streams event (NEW_AND_OLD_IMAGES, ~500 B images), given as JSON text and as the dict
Lambda hands a handler: calls/s, records/s and the ratio, all measured in this one process.

stream_records reads an event of more than 32 KB on a second thread while the calling thread
builds the Python objects, so its wall time can be below its CPU time: the CPU column (process
time, all threads, of the call with the least) shows what it costs in all.

One more row for scale: pickle.loads of the images stream_records returned, which builds the
same Python objects (each shared str and Decimal made once, as stream_records makes them) from
a binary format with nothing to parse or check, with the cyclic GC off as stream_records has
it: about the least time CPython needs to make those objects at all.

Run: `.venv/bin/python bench/compare_stream_records.py [--records N]`
"""

from __future__ import annotations

import argparse
import gc
import pickle
import platform
import time
from collections.abc import Callable
from typing import Any

import ddbshard
from bench_stream_records import (
    RECORDS,
    boto3_records,
    boto3_text,
    calls_per_second,
    event_text,
    same_answer,
    stream_event,
)


def least_cpu(fn: Callable[[Any], Any], arg: Any, calls: int = 10) -> float:
    """The least CPU time (seconds, all of the process's threads) one call of `calls` took."""
    best = float("inf")
    for _ in range(calls):
        start = time.process_time()
        fn(arg)
        best = min(best, time.process_time() - start)
    return best


def _unpickle_without_gc(data: bytes) -> Any:
    gc.disable()
    try:
        return pickle.loads(data)
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=RECORDS, help="records in the event")
    args = parser.parse_args()

    event = stream_event(args.records)
    text = event_text(event)
    assert same_answer(ddbshard.stream_records(text), boto3_text(text))
    assert same_answer(ddbshard.stream_records(event), boto3_records(event))
    images = [(r.keys, r.new, r.old) for r in ddbshard.stream_records(text)]
    pickled = pickle.dumps(images, protocol=pickle.HIGHEST_PROTOCOL)
    contenders: list[tuple[str, Callable[[Any], Any], Any]] = [
        ("json + base64 + TypeDeserializer", boto3_text, text),
        ("ddbshard.stream_records(text)", ddbshard.stream_records, text),
        ("base64 + TypeDeserializer (dict)", boto3_records, event),
        ("ddbshard.stream_records(dict)", ddbshard.stream_records, event),
        ("pickle.loads of the same images", _unpickle_without_gc, pickled),
    ]
    rows = [(label, calls_per_second(fn, arg), least_cpu(fn, arg)) for label, fn, arg in contenders]

    n = args.records
    print(
        f"{n:,}-record event, {len(text) / 1e6:.2f} MB of JSON, Python {platform.python_version()}"
    )
    print()
    print(f"{'':36}{'events/s':>10}{'records/s':>12}{'CPU ms/call':>13}")
    for label, rate, cpu in rows:
        print(f"{label:36}{rate:>10.1f}{rate * n:>12,.0f}{cpu * 1e3:>13.2f}")
    print()
    print(f"{'ratio, JSON text (ddbshard / boto3)':36}{rows[1][1] / rows[0][1]:>10.1f}x")
    print(f"{'ratio, dict (ddbshard / boto3)':36}{rows[3][1] / rows[2][1]:>10.1f}x")
    print(f"{'ratio, pickle.loads / boto3 (text)':36}{rows[4][1] / rows[0][1]:>10.1f}x")
    print(f"{'CPU time, JSON text (boto3/ddbshard)':36}{rows[0][2] / rows[1][2]:>10.1f}x")


if __name__ == "__main__":
    main()
