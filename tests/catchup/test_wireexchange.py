"""sync's POST spoken straight on the pool's connections (wireexchange.py): the same bytes on
the wire as urllib3 writes, every shape of HTTP/1.x answer read as urllib3 reads it, every
fault raised as the BotoCoreError the boto3 client's own calls raise; and the cases it leaves
to urllib3 (a proxy, certificates not checked) go there.

A raw socket server on 127.0.0.1 answers each request with the next scripted bytes, keeps the
raw requests, and counts the connections it accepted.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from ddbshard.catchup.dynamo import Dynamo, RetryPolicy
from ddbshard.catchup.wireclient import WireClient
from ddbshard.catchup.wireexchange import host_header
from ddbshard.io.storage import aws_setup_problem
from support.aws_env import isolate

CLOSE = b""  # a scripted answer: close the connection without a word


class RawEndpoint:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.answers: list[tuple[bytes, bool]] = []  # raw answer, close after it
        self.requests: list[bytes] = []  # raw requests, head and body
        self.connections = 0
        self.tls = tls
        # Answers written `pace[0]` bytes at a time, `pace[1]` seconds apart (small TCP
        # segments, a slow trickle).
        self.pace: tuple[int, float] | None = None
        self.cut: int | None = None  # or written in two parts, cut at this byte
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def answer(self, raw: bytes, close: bool = False) -> None:
        self.answers.append((raw, close))

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed by the fixture
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    more = conn.recv(65536)
                    if not more or more.startswith(b"\x16"):  # closed, or TLS to plain HTTP
                        return
                    buf += more
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(buf) < length:
                    buf += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + buf[:length])
                buf = buf[length:]
                raw, close = self.answers.pop(0)
                if raw == CLOSE:
                    return
                self._send(conn, raw)
                if close:
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    def _send(self, conn: socket.socket, raw: bytes) -> None:
        if self.pace is not None:
            size, pause = self.pace
            parts = [raw[i : i + size] for i in range(0, len(raw), size)]
        elif self.cut is not None:
            parts, pause = [raw[: self.cut], raw[self.cut :]], 0.05
        else:
            conn.sendall(raw)
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, part in enumerate(parts):
            if i:
                time.sleep(pause)  # the server's pacing, not a wait for something
            conn.sendall(part)


def ok(body: bytes, *extra: str, version: str = "HTTP/1.1") -> bytes:
    """A 200 as DynamoDB sends it (Content-Length, the body's CRC32), with `extra` headers."""
    headers = [
        f"{version} 200 OK",
        "Content-Type: application/x-amz-json-1.0",
        f"Content-Length: {len(body)}",
        f"x-amz-crc32: {zlib.crc32(body)}",
        *extra,
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch, "AKIDRAW")


@pytest.fixture
def raw(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[RawEndpoint]:
    e = RawEndpoint()
    monkeypatch.setenv("AWS_ENDPOINT_URL", e.url)
    yield e
    e.sock.close()


def wire_client(**config: Any) -> WireClient:
    session = boto3.session.Session()
    boto = session.client(
        "dynamodb",
        region_name="eu-west-3",
        config=Config(retries={"total_max_attempts": 1}, **config),
    )
    return WireClient(boto, session.get_credentials())


def ours(ddb: WireClient) -> bool:
    """Whether the client's last request was spoken by wireexchange.py (not urlopen)."""
    return ddb._http._host is not None


def no_wait() -> RetryPolicy:
    return RetryPolicy(max_attempts=3, sleep=lambda s: None, random=lambda: 0.5)


def test_the_request_on_the_wire_is_byte_for_byte_urllib3s(
    raw: RawEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same request, at the same moment, spoken here and by urlopen: the same bytes
    (request line, Host, Accept-Encoding, Content-Length, the signed headers, in order)."""
    monkeypatch.setattr("time.time", lambda: 1_796_615_000.0)
    ddb = wire_client()
    for _ in range(2):
        raw.answer(ok(b'{"Responses":{}}'))
    ddb.batch_get_item(RequestItems={"T": {"Keys": [{"pk": {"S": "é\ud800"}}]}})
    assert ours(ddb)
    ddb._http._host = None  # urlopen for the next request
    ddb.batch_get_item(RequestItems={"T": {"Keys": [{"pk": {"S": "é\ud800"}}]}})
    spoken, urllib3s = raw.requests
    assert spoken == urllib3s
    assert spoken.startswith(b"POST / HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b'"\\u00e9\\ud800"' in spoken  # ASCII JSON, the lone surrogate as written


@pytest.mark.parametrize(
    "host, port, https",
    [
        ("127.0.0.1", 8000, False),
        ("dynamodb.eu-west-3.amazonaws.com", 443, True),
        ("dynamodb.eu-west-3.amazonaws.com", 80, False),
        ("dynamodb.eu-west-3.amazonaws.com", 80, True),
        ("::1", 8000, False),
        ("fe80::1%eth0", 443, True),
        ("bücher.example", 8443, True),
    ],
)
def test_the_host_header_is_http_clients(host: str, port: int, https: bool) -> None:
    cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
    conn = cls(host, port)
    conn.putrequest("POST", "/")
    (theirs,) = [line for line in conn._buffer if line.startswith(b"Host: ")]  # type: ignore[attr-defined]
    assert host_header(host, port, 443 if https else 80).encode() == theirs.removeprefix(b"Host: ")


BODY = b'{"Responses":{"T":[{"pk":{"S":"k1"}}]},"UnprocessedKeys":{}}'


SHAPES = [
    (ok(BODY), 1),
    # Chunked (a proxy re-encoding it), with a chunk extension and a trailer.
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x;ext=1\r\n" % 10
        + BODY[:10]
        + b"\r\n%x\r\n" % (len(BODY) - 10)
        + BODY[10:]
        + b"\r\n0\r\nx-trailer: 1\r\n\r\n",
        1,
    ),
    (b"HTTP/1.1 100 Continue\r\n\r\n" + ok(BODY), 1),  # an interim answer first
    (ok(BODY, "Connection: close"), 2),  # the server says it closes: a new connection
    (ok(BODY, version="HTTP/1.0"), 2),
    (ok(BODY) + b"HTTP/1.1 200 OK\r\n", 2),  # bytes after the answer: not used again
    (ok(BODY, "X-Many: a", "x-many: b"), 1),
]


@pytest.mark.parametrize("answer, connections", SHAPES)
def test_every_shape_of_answer_is_read_and_the_connection_kept_only_when_it_may_be(
    raw: RawEndpoint, answer: bytes, connections: int
) -> None:
    ddb = wire_client()
    for _ in range(2):
        raw.answer(answer)
        got = ddb.batch_get_item(RequestItems={})
        assert got["Responses"] == {"T": [{"pk": {"S": "k1"}}]}
    assert ours(ddb) and raw.connections == connections
    headers = got["ResponseMetadata"]["HTTPHeaders"]
    if b"X-Many" in answer:
        assert headers["x-many"] == "a, b"  # joined, as urllib3's HTTPHeaderDict gives them


def test_header_values_are_latin_1_text_split_at_line_ends_only(raw: RawEndpoint) -> None:
    """As http.client reads them: a byte that str.splitlines would take for a line end (0x85,
    0x1c) stays in its value."""
    answer = ok(BODY, "X-Request-Id: abc")
    raw.answer(answer.replace(b"abc", b"a\x85b\x1cc\xe9"))
    got = wire_client().batch_get_item(RequestItems={})
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-request-id"] == "a\x85b\x1cc\xe9"


def test_a_body_until_the_connection_closes_is_read_whole(raw: RawEndpoint) -> None:
    raw.answer(b"HTTP/1.0 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n\r\n" + BODY, True)
    raw.answer(ok(BODY))
    ddb = wire_client()
    for _ in range(2):
        assert ddb.batch_get_item(RequestItems={})["Responses"]["T"] == [{"pk": {"S": "k1"}}]
    assert raw.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",  # not HTTP
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        CLOSE,
    ],
)
def test_an_answer_that_is_not_http_fails_as_the_boto3_clients_own_calls_fail(
    raw: RawEndpoint, answer: bytes
) -> None:
    """The same BotoCoreError class as DescribeTable (botocore, urllib3) gets for the same
    bytes, and `Dynamo._try` retries it."""
    ddb = wire_client()
    raw.answer(answer, close=True)
    with pytest.raises(BotoCoreError) as theirs:
        ddb.describe_table(TableName="T")
    raw.answer(answer, close=True)
    with pytest.raises(BotoCoreError) as spoken:
        ddb.batch_get_item(RequestItems={})
    assert ours(ddb)
    assert type(spoken.value) is type(theirs.value)
    raw.answer(answer, close=True)
    assert Dynamo(ddb, no_wait())._try("batch_get_item", RequestItems={}) is None


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Le",  # closed in the head
    ],
)
def test_a_head_http_client_would_half_read_is_a_failed_call_then_retried(
    raw: RawEndpoint, answer: bytes
) -> None:
    """http.client ends the head at a line without a colon (the rest taken for the body) or
    at the connection's end, and the body then fails as JSON: here the answer is refused as
    not HTTP. Either way a failed call, retried."""
    raw.answer(answer, close=True)
    raw.answer(ok(BODY))
    found, failed = Dynamo(wire_client(), no_wait()).get([("T", {"pk": {"S": "k1"}})])
    assert failed == [] and list(found.values()) == [{"pk": {"S": "k1"}}]
    assert len(raw.requests) == 2


def test_a_body_cut_short_is_a_failed_call_then_retried(raw: RawEndpoint) -> None:
    """Content-Length promises more than arrives: as urllib3 (told by botocore not to enforce
    the length) the part is taken, the CRC32 refuses it, the call is retried."""
    raw.answer(ok(BODY)[:-5], close=True)
    raw.answer(ok(BODY))
    found, failed = Dynamo(wire_client(), no_wait()).get([("T", {"pk": {"S": "k1"}})])
    assert failed == [] and list(found.values()) == [{"pk": {"S": "k1"}}]
    assert len(raw.requests) == 2 and raw.connections == 2


def test_through_a_proxy_or_with_certificates_unchecked_urlopen_speaks(
    raw: RawEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy wants its own request form (the absolute URL as the target), an unchecked
    https connection urllib3's warning: both stay urlopen's."""
    target = "http://127.0.0.1:9"  # never connected: the proxy is asked
    monkeypatch.setenv("AWS_ENDPOINT_URL", target)
    monkeypatch.setenv("HTTP_PROXY", raw.url)
    raw.answer(ok(BODY))
    ddb = wire_client()
    assert ddb.batch_get_item(RequestItems={})["Responses"]["T"] == [{"pk": {"S": "k1"}}]
    assert not ours(ddb) and raw.requests[0].startswith(f"POST {target}/ HTTP/1.1".encode())

    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.setenv("AWS_ENDPOINT_URL", raw.url.replace("http:", "https:"))
    unchecked = wire_client()
    unchecked._boto._endpoint.http_session._verify = False
    with pytest.raises(BotoCoreError):  # the raw endpoint speaks no TLS
        unchecked.batch_get_item(RequestItems={})
    assert not ours(unchecked) and unchecked._http._pool.cert_reqs == "CERT_NONE"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("bundle", ["given", "none", "missing"])
def test_tls_is_checked_against_the_ca_bundle_botocore_resolves(
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    certificate: tuple[Path, Path],
    bundle: str,
) -> None:
    """An https endpoint whose certificate only AWS_CA_BUNDLE vouches for: spoken here over
    the TLS connection urllib3 makes and checks; without the bundle, or with a bundle file
    that does not exist, the same SSLError the boto3 client's own calls raise (which sync
    reports as a setup problem when the file is missing), and nothing is sent."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    e = RawEndpoint(tls=context)
    monkeypatch.setenv("AWS_ENDPOINT_URL", e.url)
    if bundle == "given":
        monkeypatch.setenv("AWS_CA_BUNDLE", str(certificate[0]))
    elif bundle == "missing":
        monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "no-such-ca.pem"))
    try:
        ddb = wire_client()
        if bundle == "given":
            for _ in range(2):
                e.answer(ok(BODY))
                assert ddb.batch_get_item(RequestItems={})["Responses"]["T"]
            assert ours(ddb) and e.connections == 1
            assert ddb._http._pool.ca_certs == str(certificate[0])
            return
        with pytest.raises(BotoCoreError) as theirs:
            ddb.describe_table(TableName="T")
        with pytest.raises(BotoCoreError) as spoken:
            ddb.batch_get_item(RequestItems={})
        assert ours(ddb) and e.requests == []
        assert type(spoken.value) is type(theirs.value)
        assert type(spoken.value).__name__ == "SSLError"
        if bundle == "none":
            assert "CERTIFICATE_VERIFY_FAILED" in str(spoken.value)
        else:
            assert aws_setup_problem(spoken.value) == aws_setup_problem(theirs.value)
            assert "no-such-ca.pem" in str(aws_setup_problem(spoken.value))
    finally:
        e.sock.close()


# Hostile answers (issue 20's review): segments, trickles, lies and faults.


@pytest.mark.parametrize(
    "answer, connections",
    [shape for shape in SHAPES if not shape[0].endswith(b"200 OK\r\n")],  # no tail to pace
)
def test_an_answer_in_many_small_segments_is_read_as_a_whole_one(
    raw: RawEndpoint, answer: bytes, connections: int
) -> None:
    """Every shape of answer arriving a few bytes at a time (split inside CRLFs, chunk
    sizes, the head's end) reads as it does in one piece."""
    raw.pace = (3, 0.0005)
    ddb = wire_client()
    for _ in range(2):
        raw.answer(answer)
        assert ddb.batch_get_item(RequestItems={})["Responses"] == {"T": [{"pk": {"S": "k1"}}]}
    assert ours(ddb) and raw.connections == connections


def test_a_slow_trickle_is_read_and_a_stall_past_the_read_timeout_fails_as_urllib3s(
    raw: RawEndpoint,
) -> None:
    """The read timeout bounds each wait for bytes, as a socket timeout does for urllib3: an
    answer trickling in for longer than the timeout is read; a stall longer than it is
    botocore's ReadTimeoutError, the same as the boto3 client's own calls get, and its
    connection is not used again (the late bytes would be taken for the next answer)."""
    ddb = wire_client(read_timeout=1)
    raw.pace = (len(ok(BODY)) // 6 + 1, 0.3)  # 1.5 s in all, 0.3 s between segments
    raw.answer(ok(BODY))
    started = time.monotonic()
    assert ddb.batch_get_item(RequestItems={})["Responses"]["T"] == [{"pk": {"S": "k1"}}]
    assert time.monotonic() - started > 1
    raw.pace = (len(ok(BODY)) // 2, 1.5)
    for _ in range(2):
        raw.answer(ok(BODY))
    with pytest.raises(BotoCoreError) as theirs:
        ddb.describe_table(TableName="T")
    with pytest.raises(BotoCoreError) as spoken:
        ddb.batch_get_item(RequestItems={})
    assert type(spoken.value) is type(theirs.value)
    assert type(spoken.value).__name__ == "ReadTimeoutError"
    raw.pace = None
    raw.answer(ok(BODY))
    assert ddb.batch_get_item(RequestItems={})["Responses"]["T"] == [{"pk": {"S": "k1"}}]
    assert raw.connections == 3  # each stalled connection closed, none used again


def test_a_content_length_far_beyond_the_body_reserves_no_memory_for_it(
    raw: RawEndpoint,
) -> None:
    """A Content-Length of 1 GiB, 20 bytes, then the connection closed: a failed call,
    retried, without a buffer of the promised size (16 calls in flight would hold 16 GiB)."""
    import tracemalloc

    raw.answer(
        ok(b"x" * 20).replace(b"Content-Length: 20", b"Content-Length: %d" % (1 << 30)), True
    )
    raw.answer(ok(BODY))
    tracemalloc.start()
    try:
        found, failed = Dynamo(wire_client(), no_wait()).get([("T", {"pk": {"S": "k1"}})])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert failed == [] and list(found.values()) == [{"pk": {"S": "k1"}}]
    assert peak < 64 << 20


def test_a_negative_chunk_size_is_not_http() -> None:
    """int(text, 16) takes a sign; a chunk size is hex digits only. A negative one took bytes
    back out of the body: here it gave the body b"0\\r\\n", which no chunk held."""
    from ddbshard.catchup.wireexchange import Malformed, read_answer

    ours_, theirs_ = socket.socketpair()
    with ours_, theirs_:
        theirs_.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n0\r\n\r\n")
        theirs_.shutdown(socket.SHUT_WR)
        with pytest.raises(Malformed):
            read_answer(ours_)


def test_a_huge_chunk_size_reserves_no_memory_and_many_small_chunks_read_whole() -> None:
    """A chunk of 1 TB promised, 10 bytes sent, the connection closed: not HTTP, without
    asking the socket for a buffer of that size (MemoryError, or gigabytes reserved); and a
    body in 5000 one-byte chunks is read whole."""
    import tracemalloc

    from ddbshard.catchup.wireexchange import Malformed, read_answer

    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    ours_, theirs_ = socket.socketpair()
    tracemalloc.start()
    try:
        with ours_, theirs_:
            theirs_.sendall(head + b"10000000000\r\n0123456789")
            theirs_.shutdown(socket.SHUT_WR)
            with pytest.raises(Malformed, match="closed in a chunked body"):
                read_answer(ours_)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    body = bytes(range(256)) * 20
    ours_, theirs_ = socket.socketpair()
    with ours_, theirs_:
        chunks = b"".join(b"1\r\n%c\r\n" % b for b in body[:5000])
        threading.Thread(target=theirs_.sendall, args=(head + chunks + b"0\r\n\r\n",)).start()
        assert read_answer(ours_) == ((200, {"transfer-encoding": "chunked"}, body[:5000]), True)


@pytest.mark.parametrize("status", [204, 304])
def test_an_answer_without_a_body_leaves_the_connection_for_the_next(status: int) -> None:
    from ddbshard.catchup.wireexchange import read_answer

    ours_, theirs_ = socket.socketpair()
    with ours_, theirs_:
        theirs_.sendall(b"HTTP/1.1 %d Nothing\r\nContent-Length: 0\r\n\r\n" % status + ok(BODY))
        assert read_answer(ours_) == ((status, {"content-length": "0"}, b""), False)
    ours_, theirs_ = socket.socketpair()
    with ours_, theirs_:
        theirs_.sendall(b"HTTP/1.1 %d Nothing\r\n\r\n" % status)
        assert read_answer(ours_) == ((status, {}, b""), True)
        theirs_.sendall(ok(BODY))
        assert read_answer(ours_)[0][2] == BODY


def test_a_kept_connection_closed_as_the_request_reaches_it_is_retried_once(
    raw: RawEndpoint,
) -> None:
    """The keep-alive race: the server closes a kept connection just as the next request
    arrives (too late for the pool's check). The call fails as botocore's own does
    (ConnectionClosedError), `Dynamo` sends it again on a new connection, and the key is
    found once."""
    ddb = wire_client()
    raw.answer(ok(BODY))
    assert ddb.batch_get_item(RequestItems={})["Responses"]["T"]
    raw.answer(CLOSE)
    with pytest.raises(BotoCoreError) as spoken:
        ddb.batch_get_item(RequestItems={})
    assert type(spoken.value).__name__ == "ConnectionClosedError"
    raw.answer(ok(BODY))
    assert ddb.batch_get_item(RequestItems={})["Responses"]["T"]
    raw.answer(CLOSE)
    raw.answer(ok(BODY))
    dynamo = Dynamo(ddb, no_wait())
    found, failed = dynamo.get([("T", {"pk": {"S": "k1"}})])
    assert failed == [] and list(found.values()) == [{"pk": {"S": "k1"}}]
    assert dynamo.stats.calls == 2 and "Connection was closed" in dynamo.retry_reason()
    assert raw.connections == 3 and len(raw.requests) == 5


def test_a_connection_reset_mid_request_is_a_failed_call_and_no_socket_is_left(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server resets the connection while a 1 MB request is still being written (RST,
    not FIN): a failed call, retried, and the socket closed."""
    import struct

    def reset(conn: socket.socket) -> None:
        conn.recv(1024)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            reset(conn)

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    try:
        ddb = wire_client()
        before = open_sockets(port)
        big = {"T": {"Keys": [{"pk": {"S": "x" * 1000}}] * 1000}}
        for _ in range(3):
            with pytest.raises(BotoCoreError) as spoken:
                ddb.batch_get_item(RequestItems=big)
            assert type(spoken.value).__name__ == "ConnectionClosedError"
            assert ours(ddb)
        assert open_sockets(port) == before == 0
    finally:
        server.close()


def open_sockets(port: int) -> int:
    """This process's TCP sockets connected to 127.0.0.1:`port` (from /proc/net/tcp)."""
    import os

    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            remote, inode = fields[2], fields[9]
            if remote == f"0100007F:{port:04X}" and inode in inodes:
                count += 1
    return count


class EchoEndpoint:
    """Answers each request with the key it asked for; every 7th request is closed without
    an answer and every 11th cut short, on whatever connection it came."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.count = 0
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    more = conn.recv(65536)
                    if not more:
                        return
                    buf += more
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(buf) < length:
                    more = conn.recv(65536)
                    if not more:
                        return
                    buf += more
                body, buf = buf[:length], buf[length:]
                with self.lock:
                    self.count += 1
                    n = self.count
                if n % 7 == 0:
                    return
                key = body.split(b'"S":"')[1].split(b'"')[0]
                answer = ok(b'{"Responses":{"T":[{"pk":{"S":"%s"}}]}}' % key)
                if n % 11 == 0:
                    conn.sendall(answer[:-5])
                    return
                conn.sendall(answer)


def test_sixteen_threads_share_the_pool_without_sharing_a_connection_or_leaking_one(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 threads, 40 calls each, one pool of 16, faults among the answers: every answer that
    arrives is the answer to its own thread's request (two threads on one connection would
    cross or garble them), every fault is a BotoCoreError, and after it all this process
    holds no more sockets to the endpoint than the pool's size."""
    e = EchoEndpoint()
    monkeypatch.setenv("AWS_ENDPOINT_URL", e.url)
    try:
        ddb = wire_client(max_pool_connections=16)
        failures: list[BaseException] = []
        answered: list[str] = []
        failed: list[str] = []

        def calls(thread: int) -> None:
            for i in range(40):
                key = f"t{thread}-{i}"
                try:
                    got = ddb.batch_get_item(RequestItems={"T": {"Keys": [{"pk": {"S": key}}]}})
                except BotoCoreError:
                    failed.append(key)
                    continue
                except BaseException as error:
                    failures.append(error)
                    return
                if got["Responses"] != {"T": [{"pk": {"S": key}}]}:
                    failures.append(AssertionError(f"{key}: {got['Responses']}"))
                answered.append(key)

        threads = [threading.Thread(target=calls, args=(t,)) for t in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        assert ours(ddb) and len(answered) + len(failed) == 640 == e.count
        assert len(failed) >= 640 // 7  # the faults were met and raised
        assert open_sockets(e.port) <= 16
        assert e.connections <= 16 + len(failed)  # a new connection only after a failure
    finally:
        e.sock.close()


def test_over_tls_faults_fail_as_the_boto3_clients_own_calls_fail(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]
) -> None:
    """On a checked TLS connection: an answer in tiny TLS records is read, the connection
    kept; closed without an answer (no close_notify) and cut short, the same BotoCoreError
    classes as DescribeTable gets, and `Dynamo` retries both."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    e = RawEndpoint(tls=context)
    monkeypatch.setenv("AWS_ENDPOINT_URL", e.url)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(certificate[0]))
    try:
        ddb = wire_client()
        e.pace = (5, 0.0005)
        for _ in range(2):
            e.answer(ok(BODY))
            assert ddb.batch_get_item(RequestItems={})["Responses"]["T"] == [{"pk": {"S": "k1"}}]
        assert ours(ddb) and e.connections == 1
        e.pace = None
        for fault in (CLOSE, ok(BODY)[:-5]):
            e.answer(fault, close=True)
            with pytest.raises(BotoCoreError) as theirs:
                ddb.describe_table(TableName="T")
            e.answer(fault, close=True)
            with pytest.raises(BotoCoreError) as spoken:
                ddb.batch_get_item(RequestItems={})
            assert type(spoken.value) is type(theirs.value)
            e.answer(fault, close=True)
            e.answer(ok(BODY))
            found, failed = Dynamo(ddb, no_wait()).get([("T", {"pk": {"S": "k1"}})])
            assert failed == [] and list(found.values()) == [{"pk": {"S": "k1"}}]
    finally:
        e.sock.close()


@pytest.mark.parametrize(
    "extra, read",
    [
        (["X-Big: " + "a" * 40_000, "X-Big2: " + "b" * 40_000], True),  # 80 KB of head
        ([f"X-H{i}: {i}" for i in range(96)], True),  # 99 headers with ok()'s 3
        ([f"X-H{i}: {i}" for i in range(97)], False),  # 100
        (["X-Big: " + "a" * 70_000], False),  # one line longer than 64 KB
    ],
)
def test_huge_heads_are_read_or_refused_as_http_client_reads_or_refuses_them(
    raw: RawEndpoint, extra: list[str], read: bool
) -> None:
    ddb = wire_client()
    raw.answer(ok(BODY, *extra), close=not read)
    raw.answer(ok(BODY, *extra), close=not read)
    if read:
        assert ddb._boto.batch_get_item(RequestItems={})["Responses"]["T"]
        assert ddb.batch_get_item(RequestItems={})["Responses"]["T"] == [{"pk": {"S": "k1"}}]
        return
    with pytest.raises(BotoCoreError) as theirs:
        ddb._boto.batch_get_item(RequestItems={})
    with pytest.raises(BotoCoreError) as spoken:
        ddb.batch_get_item(RequestItems={})
    assert ours(ddb) and type(spoken.value) is type(theirs.value)


def test_an_answer_before_the_request_is_written_whole_is_read(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server answers (413, Connection: close) after the head of an 8 MB request, while
    the body is still being written: the answer waits and is read once the write is done,
    as urllib3 reads it: a ClientError with its status, and the connection not kept."""
    from botocore.exceptions import ClientError

    big = {"T": {"Keys": [{"pk": {"S": "x" * 1000}}] * 8000}}
    answer = (
        b"HTTP/1.1 413 Request Entity Too Large\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    )
    early = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = early.accept()
            except OSError:
                return
            with conn:
                buf = b""
                while b"\r\n\r\n" not in buf:
                    buf += conn.recv(65536)
                conn.sendall(answer)
                # The rest of the request read and dropped, then closed: a close with it
                # unread would be a reset, which may discard the answer on its way.
                length = int(buf.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                left = length - len(buf.partition(b"\r\n\r\n")[2])
                while left > 0 and (more := conn.recv(1 << 20)):
                    left -= len(more)

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{early.getsockname()[1]}")
    try:
        ddb = wire_client()
        for call in (ddb._boto.batch_get_item, ddb.batch_get_item):
            with pytest.raises(ClientError) as error:
                call(RequestItems=big)
            assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
        assert ours(ddb)
    finally:
        early.close()


@pytest.mark.parametrize("end", [b"0\r\n", b"0\r\nx-trailer: 1\r\n", b"0\r\nx-trai"])
def test_a_connection_closed_after_the_last_chunk_ends_the_body_as_for_http_client(
    raw: RawEndpoint, end: bytes
) -> None:
    """The last chunk came, then the connection closed in (or before) the trailers: the body
    is whole to http.client, so to urllib3 and the boto3 client's own calls; read alike
    here (it failed as not HTTP), the connection not kept."""
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (
        len(BODY),
        BODY,
    )
    ddb = wire_client()
    raw.answer(answer + end, close=True)
    assert ddb._boto.batch_get_item(RequestItems={})["Responses"]["T"]
    for _ in range(2):
        raw.answer(answer + end, close=True)
        assert ddb.batch_get_item(RequestItems={})["Responses"]["T"] == [{"pk": {"S": "k1"}}]
    assert ours(ddb) and raw.connections == 3


@pytest.mark.parametrize(
    "length, read",
    [(b"%d, %d" % (len(BODY), len(BODY)), True), (b"%d, 2" % len(BODY), False), (b"\xb2", False)],
)
def test_a_repeated_content_length_is_read_as_urllib3_reads_it(
    raw: RawEndpoint, length: bytes, read: bool
) -> None:
    """Content-Length twice (a proxy adding its own): the same value twice is read, as the
    boto3 client's own calls read it; two values, or a digit that is not ASCII ("\xb2" is
    "²", a digit to str.isdigit), are not HTTP, a failed call retried, not some other error."""
    answer = ok(BODY).replace(b"Content-Length: %d" % len(BODY), b"Content-Length: " + length)
    ddb = wire_client()
    if read:
        for _ in range(2):
            raw.answer(answer)
            assert ddb.batch_get_item(RequestItems={})["Responses"]["T"] == [{"pk": {"S": "k1"}}]
        assert raw.connections == 1
        return
    raw.answer(answer, close=True)
    with pytest.raises(BotoCoreError) as spoken:
        ddb.batch_get_item(RequestItems={})
    assert type(spoken.value).__name__ == "ConnectionClosedError"


def test_over_tls_bytes_past_the_answer_in_its_last_record_do_not_answer_the_next_call(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]
) -> None:
    """A server that sends a second answer in the TLS record that ends the first: its bytes
    wait decrypted in the TLS layer, where the pool's check for a dropped connection (the
    socket readable) does not see them. The connection is not used again, so the next call
    gets its own answer, not that one (it got that one: another request's answer)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    e = RawEndpoint(tls=context)
    monkeypatch.setenv("AWS_ENDPOINT_URL", e.url)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(certificate[0]))
    stale = b'{"Responses":{"T":[{"pk":{"S":"stale"}}]}}'
    head = len(ok(BODY)) - len(BODY)
    try:
        ddb = wire_client()
        e.cut = head  # the head in one record, the body and the stale answer in the next
        e.answer(ok(BODY) + ok(stale))
        assert ddb.batch_get_item(RequestItems={})["Responses"]["T"] == [{"pk": {"S": "k1"}}]
        e.cut = None
        e.answer(ok(BODY))
        assert ddb.batch_get_item(RequestItems={})["Responses"]["T"] == [{"pk": {"S": "k1"}}]
        assert ours(ddb) and e.connections == 2
    finally:
        e.sock.close()


def test_a_connection_made_again_waits_the_connect_timeout_not_the_read_timeout(
    raw: RawEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """urlopen leaves a connection's timeout at the read timeout after its request (the boto3
    client's DescribeTable shares the pool); when that connection is dropped and made again
    here, the connect timeout applies, as urlopen sets it before connecting."""
    import urllib3.connection

    made: list[float | None] = []
    real = urllib3.connection.connection.create_connection

    def recording(address: Any, timeout: Any = None, *args: Any, **kwargs: Any) -> Any:
        made.append(timeout)
        return real(address, timeout, *args, **kwargs)

    monkeypatch.setattr(urllib3.connection.connection, "create_connection", recording)
    ddb = wire_client(connect_timeout=2, read_timeout=30)
    raw.answer(ok(b"{}"), close=True)  # then closed by the server: dropped at the next get
    ddb.describe_table(TableName="T")
    (kept,) = [c for c in ddb._boto._endpoint.http_session._manager.connection_from_url(
        raw.url).pool.queue if c is not None and c.sock]  # fmt: skip
    raw.answer(ok(BODY))
    assert kept.sock.recv(1, socket.MSG_PEEK) == b""  # the server's close has arrived
    assert ddb.batch_get_item(RequestItems={})["Responses"]["T"] == [{"pk": {"S": "k1"}}]
    assert ours(ddb) and made == [2, 2]


def test_an_endpoint_the_proxy_settings_exempt_is_spoken_to_here(
    raw: RawEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY set, the endpoint in NO_PROXY: botocore sends it straight, so it is spoken
    here, not through the proxy (a closed port, which would fail every call)."""
    with socket.create_server(("127.0.0.1", 0)) as closed:
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    raw.answer(ok(BODY))
    ddb = wire_client()
    assert ddb.batch_get_item(RequestItems={})["Responses"]["T"] == [{"pk": {"S": "k1"}}]
    assert ours(ddb) and ddb._http._proxy_url is None
