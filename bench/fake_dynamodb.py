"""A stand-in DynamoDB endpoint for the sync benchmark: the three operations sync uses, answered
from memory, each `--delay` seconds late (the round trip to AWS), many at once.

moto would answer the same calls, but it spends milliseconds of CPU on a 100-key batch, which
on a 2-core machine becomes the thing measured; this answers a batch in well under one, in a
process of its own, so what the benchmark sees is the client: its rounds and its waits.

- DescribeTable: the key schema given on the command line (every key attribute a string);
- BatchGetItem: the items found, never any UnprocessedKeys;
- BatchWriteItem: puts and deletes applied, ConsumedCapacity of one unit per request;
- anything else: 400 UnknownOperationException.

The source table holds `--items` items from the start, `bench_item(i)` for i in 0 .. items-1.

    python bench/fake_dynamodb.py --items 40000 --delay 0.01    # prints the port, then serves
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SOURCE = "Source"
TABLES = {SOURCE: ("pk", "sk"), "Posts": ("pk", "sk")}


def bench_item(i: int) -> dict[str, Any]:
    """Item `i` of the source table (DynamoDB JSON): a post of about 200 bytes."""
    return {
        "pk": {"S": f"USER#{i:08d}"},
        "sk": {"S": f"POST#2026-12-07T00:00:00Z#{i:06x}"},
        "kind": {"S": "post"},
        "title": {"S": f"a post about item {i}, long enough to look like one"},
        "score": {"N": str(i % 997)},
        "tags": {"SS": ["bench", f"t{i % 7}"]},
    }


class Store:
    def __init__(self, items: int) -> None:
        self.lock = threading.Lock()
        self.tables: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in TABLES}
        for i in range(items):
            item = bench_item(i)
            self.tables[SOURCE][self.key(SOURCE, item)] = item

    @staticmethod
    def key(table: str, item: dict[str, Any]) -> str:
        return json.dumps([item[name] for name in TABLES[table]], sort_keys=True)

    def answer(self, op: str, request: dict[str, Any]) -> dict[str, Any] | None:
        if op == "DescribeTable":
            names = TABLES[request["TableName"]]
            return {
                "Table": {
                    "TableName": request["TableName"],
                    "KeySchema": [
                        {"AttributeName": n, "KeyType": kind}
                        for n, kind in zip(names, ("HASH", "RANGE"), strict=False)
                    ],
                    "AttributeDefinitions": [
                        {"AttributeName": n, "AttributeType": "S"} for n in names
                    ],
                }
            }
        if op == "BatchGetItem":
            responses: dict[str, list[dict[str, Any]]] = {}
            with self.lock:
                for table, spec in request["RequestItems"].items():
                    rows = self.tables[table]
                    found = (rows.get(self.key(table, k)) for k in spec["Keys"])
                    responses[table] = [it for it in found if it is not None]
            return {"Responses": responses, "UnprocessedKeys": {}}
        if op == "BatchWriteItem":
            consumed = []
            with self.lock:
                for table, requests in request["RequestItems"].items():
                    rows = self.tables[table]
                    for r in requests:
                        if "PutRequest" in r:
                            item = r["PutRequest"]["Item"]
                            rows[self.key(table, item)] = item
                        else:
                            rows.pop(self.key(table, r["DeleteRequest"]["Key"]), None)
                    consumed.append({"TableName": table, "CapacityUnits": float(len(requests))})
            return {"UnprocessedItems": {}, "ConsumedCapacity": consumed}
        return None


def serve(items: int, delay: float) -> None:
    store = Store(items)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: boto3 reuses its connections
        # Headers and body in one segment, sent at once: written apart, Nagle's algorithm and
        # the client's delayed ACK would add 40 ms to every call.
        disable_nagle_algorithm = True
        wbufsize = 1 << 16

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            op = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
            time.sleep(delay)  # the round trip to AWS
            answer = store.answer(op, json.loads(body or b"{}"))
            status = 200
            if answer is None:
                status, answer = 400, {"__type": "UnknownOperationException", "message": op}
            out = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per call would cost more than the call

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=40_000)
    p.add_argument("--delay", type=float, default=0.01)
    args = p.parse_args()
    try:
        serve(args.items, args.delay)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
