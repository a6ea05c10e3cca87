"""moto's DynamoDB behind a fault layer: partial answers and throttling, as AWS gives them.

moto's BatchWriteItem applies every request (even 26 of them) and never answers with
UnprocessedItems; its BatchGetItem returns UnprocessedKeys only past 16 MB. Code that only ever
met moto would ship without its retry path exercised. `FaultyDynamo` serves moto's own WSGI app
on 127.0.0.1 through a middleware that, by rule:

- THROTTLE: answers 400 ProvisionedThroughputExceededException itself (moto never sees the call,
  as when AWS processes nothing);
- FORBIDDEN: answers an HTML 403 page, as a proxy or firewall in the way does;
- UNPROCESSED: forwards only the first half of a BatchWriteItem's requests (or a BatchGetItem's
  keys) to moto and returns the other half as UnprocessedItems (UnprocessedKeys), as AWS does
  when part of a batch is throttled.

`slow(seconds)` adds that much to every DynamoDB call, as the way to AWS does: the server is
threaded, so calls made at once wait at once.

A rewritten response body loses moto's `x-amz-crc32` header (botocore checks that checksum) and
gets a new Content-Length. Every call is logged with its operation, the number of requests or
keys it carried, and what the layer did, so a test can assert on both the faults and the calls.

    with FaultyDynamo() as ddb:
        ddb.fail(Fault.UNPROCESSED, op="BatchWriteItem", nth=2, times=3)
        ...run the code under test with AWS_ENDPOINT_URL=ddb.endpoint...
        assert max(c.requests for c in ddb.calls("BatchWriteItem")) <= 25
"""

from __future__ import annotations

import enum
import io
import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from support.s3_faults import AWS_ENV, AWS_ENV_UNSET, ThreadedMoto


class Fault(enum.Enum):
    THROTTLE = "ProvisionedThroughputExceededException"
    UNPROCESSED = "unprocessed"
    EXPIRED_TOKEN = "ExpiredTokenException"  # the session token expired; moto never sees it
    FORBIDDEN = "forbidden"  # a proxy's HTML 403 page, not DynamoDB's JSON; moto never sees it


@dataclass
class Rule:
    """Applies to the `nth` .. `nth + times - 1`th calls of `op` (retries count as calls)."""

    fault: Fault
    op: str  # "BatchWriteItem", "BatchGetItem"
    nth: int = 1
    times: int = 1
    seen: int = 0
    fired: int = 0


@dataclass(frozen=True)
class Call:
    op: str
    requests: int  # write requests (BatchWriteItem) or keys (BatchGetItem) the call carried
    outcome: str  # moto's status line, or the fault


class FaultMiddleware:
    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.rules: list[Rule] = []
        self.log: list[Call] = []
        self.delay = 0.0

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("DynamoDB_"):
            return self.app(environ, start_response)  # moto-api, S3, streams: untouched
        op = target.split(".", 1)[1]
        if self.delay:
            time.sleep(self.delay)  # the round trip to AWS, not a wait for something
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        request = json.loads(body or b"{}")
        count = _count(op, request)
        fault = self._decide(op)
        if fault is Fault.THROTTLE:
            self._record(Call(op, count, fault.value))
            return _error(start_response, fault.value, "The level of configured provisioned "
                          "throughput for the table was exceeded.")  # fmt: skip
        if fault is Fault.EXPIRED_TOKEN:
            self._record(Call(op, count, fault.value))
            return _error(start_response, fault.value, "The security token included in the "
                          "request is expired")  # fmt: skip
        if fault is Fault.FORBIDDEN:
            self._record(Call(op, count, fault.value))
            page = b"<html><head><title>403 Forbidden</title></head><body>proxy</body></html>"
            start_response("403 Forbidden", [("Content-Type", "text/html"),
                                             ("Content-Length", str(len(page)))])  # fmt: skip
            return [page]
        if fault is Fault.UNPROCESSED and count > 1:
            self._record(Call(op, count, fault.value))
            return self._partial(op, request, environ, start_response)
        _set_body(environ, body)
        status: list[str] = []

        def recording(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(s)
            return start_response(s, headers, exc_info)

        result = self.app(environ, recording)
        self._record(Call(op, count, status[0] if status else "?"))
        return result

    def _decide(self, op: str) -> Fault | None:
        with self.lock:
            chosen = None
            for rule in self.rules:
                if rule.op == op:
                    rule.seen += 1
                    if chosen is None and rule.nth <= rule.seen < rule.nth + rule.times:
                        chosen = rule
            if chosen is None:
                return None
            chosen.fired += 1
            return chosen.fault

    def _record(self, call: Call) -> None:
        with self.lock:
            self.log.append(call)

    def _partial(
        self,
        op: str,
        request: dict[str, Any],
        environ: WSGIEnvironment,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        """Forwards half of the batch; the other half comes back unprocessed."""
        if op == "BatchWriteItem":
            flat = [(t, r) for t, rs in request["RequestItems"].items() for r in rs]
        else:
            flat = [(t, k) for t, spec in request["RequestItems"].items() for k in spec["Keys"]]
        keep, back = flat[: (len(flat) + 1) // 2], flat[(len(flat) + 1) // 2 :]
        forwarded = dict(request)
        if op == "BatchWriteItem":
            forwarded["RequestItems"] = _group(keep)
        else:
            specs = request["RequestItems"]
            forwarded["RequestItems"] = {
                t: {**specs[t], "Keys": keys} for t, keys in _group(keep).items()
            }
        _set_body(environ, json.dumps(forwarded).encode())
        captured: list[tuple[str, list[tuple[str, str]]]] = []

        def capture(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.append((s, headers))
            return lambda data: None

        result = self.app(environ, capture)
        try:
            raw = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = captured[-1]
        answer = json.loads(raw)
        if status.startswith("200"):
            if op == "BatchWriteItem":
                answer["UnprocessedItems"] = _group(back)
            else:
                specs = request["RequestItems"]
                answer["UnprocessedKeys"] = {
                    t: {**specs[t], "Keys": keys} for t, keys in _group(back).items()
                }
        out = json.dumps(answer).encode()
        # botocore checks x-amz-crc32 against the body it gets: the rewritten body has none.
        headers = [(k, v) for k, v in headers if k.lower() not in ("x-amz-crc32", "content-length")]
        headers.append(("Content-Length", str(len(out))))
        start_response(status, headers)
        return [out]


def _count(op: str, request: dict[str, Any]) -> int:
    items = request.get("RequestItems", {})
    if op == "BatchWriteItem":
        return sum(len(rs) for rs in items.values())
    if op == "BatchGetItem":
        return sum(len(spec.get("Keys", [])) for spec in items.values())
    return 1


def _group(pairs: list[tuple[str, Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for table, x in pairs:
        out.setdefault(table, []).append(x)
    return out


def _set_body(environ: WSGIEnvironment, body: bytes) -> None:
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))


def _error(start_response: StartResponse, code: str, message: str) -> Iterable[bytes]:
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})
    start_response(
        "400 Bad Request",
        [
            ("Content-Type", "application/x-amz-json-1.0"),
            ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", "FAULT"),
        ],
    )
    return [body.encode()]


class FaultyDynamo(ThreadedMoto):
    """moto (all services) behind the DynamoDB fault layer, on 127.0.0.1 and a free port."""

    thread_name = "faulty-dynamodb"

    def __init__(self) -> None:
        super().__init__()
        self.middleware: FaultMiddleware | None = None

    def wrap(self, app: WSGIApplication) -> WSGIApplication:
        self.middleware = FaultMiddleware(app)
        return self.middleware

    @property
    def _mw(self) -> FaultMiddleware:
        assert self.middleware is not None, "not started"
        return self.middleware

    def reset(self) -> None:
        """Forgets every table and bucket (moto's reset API), the rules and the log."""
        self.clear_faults()
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()

    def clear_faults(self) -> None:
        with self._mw.lock:
            self._mw.rules.clear()
            self._mw.log.clear()
            self._mw.delay = 0.0

    def slow(self, seconds: float) -> None:
        """Adds `seconds` to every DynamoDB call from now on (until `clear_faults`)."""
        with self._mw.lock:
            self._mw.delay = seconds

    def fail(self, fault: Fault, *, op: str, nth: int = 1, times: int = 1) -> Rule:
        rule = Rule(fault, op, nth, times)
        with self._mw.lock:
            self._mw.rules.append(rule)
        return rule

    def calls(self, op: str | None = None) -> list[Call]:
        with self._mw.lock:
            return [c for c in self._mw.log if op is None or c.op == op]

    def env(self) -> dict[str, str]:
        """Environment for a subprocess whose AWS clients must reach this server only."""
        env = {k: v for k, v in os.environ.items() if k not in AWS_ENV_UNSET}
        env.update(AWS_ENV)
        env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
        env["AWS_ENDPOINT_URL"] = self.endpoint
        return env

    def client(self, service: str = "dynamodb") -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
