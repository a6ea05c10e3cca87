"""moto's S3 server behind a programmable fault layer: the failures AWS produces and moto does not.

Real S3 answers some requests with 503 SlowDown or 500 InternalError, drops connections, cuts
bodies short, and refuses objects a policy denies. moto never does, so code that only ever meets
moto would ship without its retry path being exercised. `FaultyS3` serves moto's own WSGI app
(the one `moto_server` runs) on 127.0.0.1 through a middleware that consults a `FaultPlan`:

    with FaultyS3() as s3:
        s3.fail(Fault.SLOW_DOWN, method="GET", key="exports/data/", ranged=True)  # 1st such GET
        s3.fail(Fault.DROP, method="PUT", key="imports/", nth=2)  # 2nd PUT under imports/
        s3.deny("exports/data/bad.json.gz")  # every request on that object: 403 AccessDenied
        ...run the code under test with AWS_ENDPOINT_URL=s3.endpoint...
        assert s3.count(Fault.SLOW_DOWN) == 1

Requests are matched by path-style address (`bucket/key`): clients reach 127.0.0.1 by IP, where
botocore and aiobotocore always use path style. moto's control API (`/moto-api/...`) is never
faulted, so `reset()` and moto's dashboards keep working whatever the plan says.

Every injected fault is recorded (`injections`), as is every request the layer saw (`requests`),
so a test can assert the faults really happened and a failure report can say which request was hit.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import os
import socket
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment
from xml.sax.saxutils import escape

from werkzeug.serving import BaseWSGIServer, make_server

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# Settings that would send a client under test elsewhere, or make it retry (or not) because of
# the developer's shell rather than its own configuration; `FaultyS3.env()` removes them and
# points the config files at nothing, so no profile's retry_mode or max_attempts applies either.
AWS_ENV_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_RETRY_MODE",
    "AWS_MAX_ATTEMPTS",
    "AWS_ENDPOINT_URL_S3",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
)


class Fault(enum.Enum):
    """What the layer does instead of (or to) moto's answer."""

    SLOW_DOWN = "SlowDown"  # 503 with S3's SlowDown XML error; the request never reaches moto
    INTERNAL_ERROR = "InternalError"  # 500 with S3's InternalError XML error; never reaches moto
    # The connection is closed before a single response byte (after the request body was read,
    # so the client is waiting for the status line, not still sending): http.client reports
    # RemoteDisconnected, aiohttp ServerDisconnectedError; both SDKs call it ConnectionClosedError.
    # The request never reaches moto, so a retry of a non-idempotent call is safe. Note that
    # aiohttp itself resends an idempotent request (GET, HEAD, PUT, DELETE) once after this,
    # so aiobotocore's retry logic only sees a DROP with times >= 2 (or on a POST).
    DROP = "drop"
    # moto answers, the status line and headers go out with the full Content-Length, then only
    # half the body before the connection is closed: the client fails while reading the body
    # (botocore: ResponseStreamingError; aiohttp: ClientPayloadError), after the call itself
    # "succeeded", which is a different code path from DROP. A body under 2 bytes is dropped.
    TRUNCATE = "truncate"
    ACCESS_DENIED = "AccessDenied"  # 403 from `deny()`, on every request for the object
    EXPIRED_TOKEN = "ExpiredToken"  # 400: the session token expired; never reaches moto


_ERRORS: dict[Fault, tuple[str, str]] = {
    Fault.SLOW_DOWN: ("503 Slow Down", "Please reduce your request rate."),
    Fault.INTERNAL_ERROR: ("500 Internal Server Error", "We encountered an internal error."),
    Fault.ACCESS_DENIED: ("403 Forbidden", "Access Denied"),
    Fault.EXPIRED_TOKEN: ("400 Bad Request", "The provided token has expired."),
}


@dataclass
class Rule:
    """Fails the `nth` .. `nth + times - 1`th requests that match all the given conditions.

    Each rule counts the requests matching it on its own, retries included: a rule with nth=1
    fails the first attempt and lets its retry through; times=2 fails the retry too.
    """

    fault: Fault
    method: str | None = None  # GET, HEAD, PUT, POST, DELETE; None: any
    key: str | None = None  # substring of "bucket/key"; None: any
    query: str | None = None  # a query parameter that must be present ("uploads", "partNumber")
    ranged: bool | None = None  # True: only requests with a Range header; False: only without
    nth: int = 1
    times: int = 1
    seen: int = 0  # requests that matched so far
    fired: int = 0  # faults this rule injected

    def matches(self, req: RequestInfo) -> bool:
        return (
            (self.method is None or req.method == self.method.upper())
            and (self.key is None or self.key in req.path)
            and (self.query is None or self.query in req.params)
            and (self.ranged is None or self.ranged == (req.range is not None))
        )

    @property
    def due(self) -> bool:
        return self.nth <= self.seen < self.nth + self.times


@dataclass(frozen=True)
class RequestInfo:
    """One S3 request as the layer saw it."""

    method: str
    path: str  # "bucket/key" (path-style address, percent-decoded, no leading slash)
    query: str  # the raw query string
    range: str | None  # the Range header
    params: frozenset[str]  # query parameter names


@dataclass(frozen=True)
class Record:
    """A request and what came of it: moto's status, or the fault injected."""

    request: RequestInfo
    outcome: str  # moto's status line ("200 OK") or the fault's value ("SlowDown", "drop")


class FaultPlan:
    """The rules, the denied keys and the log. Thread-safe: werkzeug serves each request on
    its own thread, and the test thread reads counts while the server runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._denied: list[str] = []
        self._records: list[Record] = []

    def add(self, rule: Rule) -> Rule:
        if rule.nth < 1 or rule.times < 1:
            raise ValueError(f"nth and times start at 1: {rule}")
        if rule.fault is Fault.ACCESS_DENIED:
            raise ValueError("a permanent 403 is deny(key), not a counted rule")
        with self._lock:
            self._rules.append(rule)
        return rule

    def deny(self, key: str) -> None:
        with self._lock:
            self._denied.append(key)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._denied.clear()
            self._records.clear()

    def decide(self, req: RequestInfo) -> Fault | None:
        """The fault for this request, if any; counts it against every rule it matches.

        Every matching rule counts the request, so a rule's nth does not depend on which other
        rules exist; when two rules are due on the same request the first added wins and the
        other does not fire (its `fired` stays lower, which a test asserting it will notice).
        """
        with self._lock:
            # The object key proper: a denied "bucket/key" must not catch the listing of
            # "bucket" (path "bucket"), which AWS still allows when only the object is denied.
            if "/" in req.path.strip("/") and any(k in req.path for k in self._denied):
                return Fault.ACCESS_DENIED
            chosen: Rule | None = None
            for rule in self._rules:
                if rule.matches(req):
                    rule.seen += 1
                    if chosen is None and rule.due:
                        chosen = rule
            if chosen is None:
                return None
            chosen.fired += 1
            return chosen.fault

    def record(self, req: RequestInfo, outcome: str) -> None:
        with self._lock:
            self._records.append(Record(req, outcome))

    @property
    def records(self) -> list[Record]:
        with self._lock:
            return list(self._records)


_FAULT_VALUES = {f.value for f in Fault}
_request_ids = itertools.count(1)


def _request_info(environ: WSGIEnvironment) -> RequestInfo:
    # WSGI gives PATH_INFO percent-decoded as latin-1 text; S3 keys are UTF-8.
    path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
    query = environ.get("QUERY_STRING", "")
    return RequestInfo(
        method=environ["REQUEST_METHOD"].upper(),
        path=path.lstrip("/"),
        query=query,
        range=environ.get("HTTP_RANGE"),
        params=frozenset(parse_qs(query, keep_blank_values=True)),
    )


def _drain_body(environ: WSGIEnvironment) -> None:
    """Reads the request body before answering without moto.

    An answer sent while the client is still sending makes it see a reset connection instead
    of the status we chose (werkzeug's own drain after the response waits only 10 ms).
    """
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):  # chunked upload: werkzeug ends the stream itself
        while stream.read(1 << 16):
            pass
        return
    left = int(environ.get("CONTENT_LENGTH") or 0)
    while left > 0:
        chunk = stream.read(min(left, 1 << 16))
        if not chunk:
            break
        left -= len(chunk)


def _close_connection(environ: WSGIEnvironment) -> None:
    """Ends the TCP connection under werkzeug (FIN to the client). shutdown, not close: the
    socket stays valid for werkzeug, whose next write fails with BrokenPipeError, which it
    treats as a dropped connection and does not log."""
    sock: socket.socket = environ["werkzeug.socket"]
    with contextlib.suppress(OSError):  # the client went away first
        sock.shutdown(socket.SHUT_RDWR)


def _error_response(
    fault: Fault, req: RequestInfo, start_response: StartResponse
) -> Iterable[bytes]:
    status, message = _ERRORS[fault]
    request_id = f"FAULT{next(_request_ids):08d}"
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{fault.value}</Code><Message>{escape(message)}</Message>"
        f"<Resource>/{escape(req.path)}</Resource><RequestId>{request_id}</RequestId>"
        "</Error>"
    ).encode()
    if req.method == "HEAD":  # S3 sends no body with HEAD, and clients expect none
        body = b""
    start_response(
        status,
        [
            ("Content-Type", "application/xml"),
            ("Content-Length", str(len(body))),
            ("x-amz-request-id", request_id),
        ],
    )
    return [body]


class FaultMiddleware:
    """WSGI middleware: asks the plan about each S3 request, then answers it itself, forwards
    it to moto, or forwards it and spoils the answer."""

    def __init__(self, app: WSGIApplication, plan: FaultPlan) -> None:
        self.app = app
        self.plan = plan

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            return self.app(environ, start_response)
        req = _request_info(environ)
        fault = self.plan.decide(req)
        if fault is None:
            return self._forward(req, environ, start_response)
        self.plan.record(req, fault.value)
        if fault is Fault.TRUNCATE:
            return self._truncated(req, environ, start_response)
        _drain_body(environ)
        if fault is Fault.DROP:
            _close_connection(environ)
            # werkzeug needs a status to write; writing it fails on the closed socket, which
            # is the point: nothing reaches the client.
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            return [b""]
        return _error_response(fault, req, start_response)

    def _forward(
        self, req: RequestInfo, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        def recording_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            self.plan.record(req, status)
            return start_response(status, headers, exc_info)

        return self.app(environ, recording_start_response)

    def _truncated(
        self, req: RequestInfo, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterator[bytes]:
        captured: list[tuple[str, list[tuple[str, str]]]] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.append((status, headers))
            return lambda data: None  # moto returns its body; it never calls write()

        result = self.app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = captured[-1]
        if len(body) < 2:
            _close_connection(environ)
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            yield b""
            return
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        # werkzeug writes (unbuffered) each chunk before asking for the next, so the first
        # half is on the wire when the generator resumes and closes the connection.
        yield body[: len(body) // 2]
        _close_connection(environ)


def _request_handler() -> type[Any]:
    """moto's handler (it keeps S3 metadata headers with underscores), without the access log:
    the plan's own log says more, and hundreds of lines per test would bury a failure."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class QuietHandler(MotoRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    return QuietHandler


class ThreadedMoto:
    """moto's server application wrapped by a fault layer (`wrap`), served on 127.0.0.1 and a
    port the system picks, in a thread. Use as a context manager (or start()/stop())."""

    thread_name = "faulty-moto"

    def __init__(self) -> None:
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    def wrap(self, app: WSGIApplication) -> WSGIApplication:
        raise NotImplementedError

    def start(self) -> Self:
        # moto.server re-exports these; importing from where they live keeps mypy content
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        app = self.wrap(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=_request_handler()
        )
        self.endpoint = f"http://127.0.0.1:{self._server.port}"  # the port the system chose
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class FaultyS3(ThreadedMoto):
    """moto's S3 behind the fault layer, on 127.0.0.1 and a port the system picks.

    Use as a context manager (or start()/stop()); meant for a module-scoped fixture with
    `reset()` at the start of each test.
    """

    thread_name = "faulty-s3"

    def __init__(self) -> None:
        super().__init__()
        self.plan = FaultPlan()

    def wrap(self, app: WSGIApplication) -> WSGIApplication:
        return FaultMiddleware(app, self.plan)

    def reset(self) -> None:
        """Forgets every bucket (moto's reset API) and the whole plan: rules, denials, log."""
        self.plan.clear()
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()

    def clear_faults(self) -> None:
        """Forgets the plan but keeps the buckets (to set up data, then arm faults)."""
        self.plan.clear()

    def fail(
        self,
        fault: Fault,
        *,
        method: str | None = None,
        key: str | None = None,
        query: str | None = None,
        ranged: bool | None = None,
        nth: int = 1,
        times: int = 1,
    ) -> Rule:
        """Adds a rule (see `Rule`); returns it so a test can check `rule.fired`."""
        return self.plan.add(Rule(fault, method, key, query, ranged, nth, times))

    def deny(self, key: str) -> None:
        """Every request for an object whose "bucket/key" contains `key` gets 403 AccessDenied,
        as when a bucket policy denies it; listing the bucket still shows the object."""
        self.plan.deny(key)

    @property
    def requests(self) -> list[Record]:
        return self.plan.records

    @property
    def injections(self) -> list[Record]:
        return [r for r in self.plan.records if r.outcome in _FAULT_VALUES]

    def count(self, fault: Fault | None = None) -> int:
        """Faults injected so far (of one kind, or all)."""
        return sum(1 for r in self.injections if fault is None or r.outcome == fault.value)

    def env(self) -> dict[str, str]:
        """An environment for a subprocess whose AWS clients must reach this server and use
        only their own retry settings."""
        env = {k: v for k, v in os.environ.items() if k not in AWS_ENV_UNSET}
        env.update(AWS_ENV)
        env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
        env["AWS_ENDPOINT_URL"] = self.endpoint
        return env

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this server; `config` goes to botocore's Config (retries...)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(**config),
        )
