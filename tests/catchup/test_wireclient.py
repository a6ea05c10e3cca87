"""The wire-form client: what goes on the wire (signed, DynamoDB JSON as sync holds it), and
that DynamoDB's error answers come back as the ClientError botocore would raise, so `Dynamo`
retries and stops exactly as it does with a boto3 client.

A small HTTP server on 127.0.0.1 answers each request with the next scripted answer and keeps
what it was sent.
"""

from __future__ import annotations

import datetime
import json
import socket
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from urllib3.util.wait import wait_for_read

from ddbshard.catchup.dynamo import Dynamo, RetryPolicy, Write, client
from ddbshard.catchup.wireclient import WireClient
from support.aws_env import isolate

Answer = tuple[int, dict[str, str], bytes]  # status, headers, body
HANG, DROP = -1, -2  # statuses that answer nothing: wait for `release`, or close at once


class Endpoint:
    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.seen: list[tuple[dict[str, str], bytes]] = []
        self.paths: list[str] = []  # the request targets (absolute through a proxy)
        self.release = threading.Event()  # ends the wait of a HANG answer
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                endpoint.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
                endpoint.paths.append(self.path)
                status, headers, out = endpoint.answers.pop(0)
                if status in (HANG, DROP):
                    if status == HANG:
                        endpoint.release.wait(30)
                    self.close_connection = True  # no answer at all
                    return
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if "x-test-cut" in headers:  # the connection lost mid-body
                    self.wfile.write(out[: len(out) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(out)
                if "x-test-close" in headers:  # then closes the connection, unannounced
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, status: int, body: Any, crc: bool = True, **headers: str) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        if crc:
            headers["x-amz-crc32"] = str(zlib.crc32(raw))
        self.answers.append(
            (status, {"Content-Type": "application/x-amz-json-1.0", **headers}, raw)
        )


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    e = Endpoint()
    isolate(monkeypatch, "AKIDWIRE")
    monkeypatch.setenv("AWS_ENDPOINT_URL", e.url)
    yield e
    e.release.set()
    e.server.shutdown()
    e.server.server_close()


def no_wait() -> RetryPolicy:
    return RetryPolicy(max_attempts=3, sleep=lambda s: None, random=lambda: 0.5)


ITEM = {"pk": {"S": "k1"}, "n": {"N": "1.50"}, "b": {"B": "AAEC/w=="}, "bs": {"BS": ["QQ=="]}}


def test_requests_are_signed_dynamodb_json_and_items_stay_in_wire_form(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-1")
    ddb = client()
    assert isinstance(ddb, WireClient)
    endpoint.answer(200, {"Responses": {"T": [ITEM]}, "UnprocessedKeys": {}})
    found, failed = Dynamo(ddb, no_wait()).get([("T", {"pk": {"S": "k1"}})])
    assert failed == []
    assert list(found.values()) == [ITEM]  # B as base64 text, N as written: no conversion
    headers, body = endpoint.seen[0]
    assert headers["x-amz-target"] == "DynamoDB_20120810.BatchGetItem"
    assert headers["content-type"] == "application/x-amz-json-1.0"
    assert (
        headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDWIRE/")
        and headers["authorization"].count("/eu-west-3/dynamodb/aws4_request") == 1
    )
    assert "x-amz-target" in headers["authorization"]  # the target is signed too
    assert headers["x-amz-date"] and headers["x-amz-security-token"] == "token-1"
    assert json.loads(body) == {
        "RequestItems": {"T": {"Keys": [{"pk": {"S": "k1"}}], "ConsistentRead": True}}
    }

    endpoint.answer(200, {"UnprocessedItems": {}, "ConsumedCapacity": []})
    assert Dynamo(ddb, no_wait()).write([Write("T", ITEM, {"pk": ITEM["pk"]}, 1)]) == []
    sent = json.loads(endpoint.seen[1][1])
    assert sent["RequestItems"] == {"T": [{"PutRequest": {"Item": ITEM}}]}


@pytest.mark.parametrize(
    "kind, field",
    [
        ("com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", "message"),
        ("ThrottlingException", "Message"),
    ],
)
def test_throttling_is_botocores_client_error_and_is_retried(
    endpoint: Endpoint, kind: str, field: str
) -> None:
    endpoint.answer(400, {"__type": kind, field: "slow down"})
    with pytest.raises(ClientError) as raised:
        client().batch_write_item(RequestItems={"T": []})
    error = raised.value.response
    assert error["Error"] == {"Code": kind.rpartition("#")[2], "Message": "slow down"}
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert raised.value.operation_name == "BatchWriteItem"
    # Through Dynamo: throttled, then applied.
    endpoint.answer(400, {"__type": kind, field: "slow down"})
    endpoint.answer(200, {"UnprocessedItems": {}})
    dynamo = Dynamo(client(), no_wait())
    assert dynamo.write([Write("T", ITEM, {"pk": ITEM["pk"]}, 1)]) == []
    assert dynamo.stats.calls == 2 and dynamo.stats.retried == 1


def test_other_errors_map_as_botocore_maps_them(endpoint: Endpoint) -> None:
    endpoint.answer(400, {"__type": "x#ValidationException", "message": "bad item"})
    endpoint.answer(502, b"<html>bad gateway</html>", crc=False)
    dynamo = Dynamo(client(), no_wait())
    assert dynamo._try("batch_get_item", RequestItems={}) == "ValidationException: bad item"
    assert dynamo._try("batch_get_item", RequestItems={}) is None  # 5xx: retried
    endpoint.answer(400, {"__type": "x#ExpiredTokenException", "message": "expired"})
    with pytest.raises(Exception, match="AWS refused the credentials"):
        dynamo._try("batch_get_item", RequestItems={})


def test_a_damaged_answer_or_a_dropped_connection_is_retried(endpoint: Endpoint) -> None:
    endpoint.answer(200, {"Responses": {}}, crc=False, **{"x-amz-crc32": "12345"})
    with pytest.raises(BotoCoreError):
        client().batch_get_item(RequestItems={})
    endpoint.answer(200, {"Responses": {}}, crc=False, **{"x-amz-crc32": "12345"})
    dynamo = Dynamo(client(), no_wait())
    assert dynamo._try("batch_get_item", RequestItems={}) is None
    endpoint.server.shutdown()
    endpoint.server.server_close()
    with pytest.raises(BotoCoreError):  # EndpointConnectionError, as botocore raises it
        client().batch_get_item(RequestItems={})


def test_no_credentials_is_botocores_error_and_not_retried(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    dynamo = Dynamo(client(), no_wait())
    with pytest.raises(NoCredentialsError):
        dynamo.get([("T", {"pk": {"S": "k"}})])
    assert endpoint.seen == [] and dynamo.stats.retried == 0


def test_other_operations_are_the_boto3_clients(endpoint: Endpoint) -> None:
    table = {"Table": {"TableName": "T", "KeySchema": [], "AttributeDefinitions": []}}
    endpoint.answer(200, table)
    assert client().describe_table(TableName="T")["Table"]["TableName"] == "T"
    assert endpoint.seen[0][0]["x-amz-target"] == "DynamoDB_20120810.DescribeTable"


def test_the_signature_on_the_wire_is_botocores(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the endpoint received, signed again by botocore at the time it says: the same
    Authorization, for the host it was sent to (a port not the default one)."""
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-2")
    endpoint.answer(200, {"UnprocessedItems": {}})
    client().batch_write_item(RequestItems={"T": [{"PutRequest": {"Item": ITEM}}]})
    headers, body = endpoint.seen[0]
    assert headers["host"] == endpoint.url.removeprefix("http://")
    at = datetime.datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *a, **k: at)
    again = AWSRequest(
        method="POST",
        url=endpoint.url,
        data=body,
        headers={k: headers[k] for k in ("content-type", "x-amz-target", "user-agent")},
    )
    creds = boto3.session.Session().get_credentials().get_frozen_credentials()
    SigV4Auth(creds, "dynamodb", "eu-west-3").add_auth(again)
    assert headers["authorization"] == again.headers["Authorization"]
    assert headers["user-agent"].startswith("ddbshard/")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there now


def wire_client(read_timeout: float = 60) -> WireClient:
    """A WireClient as client() makes it, with its own read timeout."""
    session = boto3.session.Session()
    config = Config(retries={"total_max_attempts": 1}, read_timeout=read_timeout)
    boto = session.client("dynamodb", region_name="eu-west-3", config=config)
    return WireClient(boto, session.get_credentials())


@pytest.mark.parametrize(
    "fault, raised",
    [
        ("refused", "EndpointConnectionError"),
        ("dropped", "ConnectionClosedError"),
        ("read timeout", "ReadTimeoutError"),
        ("TLS to a plain HTTP server", "SSLError"),
        ("proxy refused", "ProxyConnectionError"),
    ],
)
def test_a_failed_connection_raises_what_botocore_raises(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, fault: str, raised: str
) -> None:
    """Each failure, met by the wire path and by the boto3 client's own (DescribeTable): the
    same BotoCoreError class, which `Dynamo._try` retries."""
    read_timeout = 60.0
    if fault == "refused":
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    elif fault == "dropped":
        endpoint.answers += [(DROP, {}, b"")] * 3
    elif fault == "read timeout":
        endpoint.answers += [(HANG, {}, b"")] * 3
        read_timeout = 0.2
    elif fault == "TLS to a plain HTTP server":
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url.replace("http:", "https:"))
    else:
        monkeypatch.setenv("HTTP_PROXY", f"http://user:pw@127.0.0.1:{closed_port()}")
    ddb = wire_client(read_timeout)
    with pytest.raises(BotoCoreError) as theirs:
        ddb.describe_table(TableName="T")
    with pytest.raises(BotoCoreError) as ours:
        ddb.batch_get_item(RequestItems={})
    assert type(ours.value) is type(theirs.value)
    assert type(ours.value).__name__ == raised
    if fault == "proxy refused":
        assert "user" not in str(ours.value) and "***" in str(ours.value)  # masked, as botocore
    assert Dynamo(ddb, no_wait())._try("batch_get_item", RequestItems={}) is None  # retried


def test_through_a_proxy_as_botocore_sends_it(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY set: the request goes to the proxy (the test endpoint standing in for it)
    with the absolute URL as its target, as the boto3 client's own requests do; NO_PROXY
    naming the endpoint sends it straight there."""
    target = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", target)
    monkeypatch.setenv("HTTP_PROXY", endpoint.url)
    endpoint.answer(200, {"Table": {"TableName": "T"}})
    endpoint.answer(200, {"Responses": {}})
    ddb = wire_client()
    ddb.describe_table(TableName="T")
    assert ddb.batch_get_item(RequestItems={})["Responses"] == {}
    assert endpoint.paths == [target + "/", target + "/"]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with pytest.raises(BotoCoreError) as raised:
        wire_client().batch_get_item(RequestItems={})
    assert type(raised.value).__name__ == "EndpointConnectionError"


def test_connections_are_kept_alive_and_pooled(endpoint: Endpoint) -> None:
    """One connection for calls one after another (keep-alive), in the pool the boto3
    client's own calls use."""
    ddb = client()
    for _ in range(3):
        endpoint.answer(200, {"Responses": {}})
        ddb.batch_get_item(RequestItems={})
    endpoint.answer(200, {"Table": {"TableName": "T"}})
    ddb.describe_table(TableName="T")
    pools = list(ddb._endpoint.http_session._manager.pools._container.values())
    assert len(pools) == 1 and pools[0].num_connections == 1


@pytest.mark.parametrize("bundle", [False, True])
def test_tls_is_verified_as_botocore_verifies_it(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bundle: bool
) -> None:
    """An https endpoint: certificates required, against AWS_CA_BUNDLE when set, else
    certifi's bundle (botocore's default; it reads REQUESTS_CA_BUNDLE too)."""
    import certifi

    expected = certifi.where()
    if bundle:
        expected = str(tmp_path / "ca.pem")
        (tmp_path / "ca.pem").write_bytes(Path(certifi.where()).read_bytes())
        monkeypatch.setenv("AWS_CA_BUNDLE", expected)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url.replace("http:", "https:"))
    ddb = wire_client()
    with pytest.raises(BotoCoreError):  # the test endpoint speaks no TLS
        ddb.batch_get_item(RequestItems={})
    pool = ddb._http._pool
    assert (pool.cert_reqs, pool.ca_certs) == ("CERT_REQUIRED", expected)


@pytest.mark.parametrize("body", [b"<html>captive portal</html>", b"null", b"[1]"])
def test_a_200_that_is_not_a_json_object_is_retried_not_a_traceback(
    endpoint: Endpoint, body: bytes
) -> None:
    """A 200 whose body is no DynamoDB answer (a proxy's page, a truncated body without a
    CRC32): a failed call, retried, never a ValueError/TypeError out of `Dynamo._try` (which
    would end sync with a traceback) nor, as botocore would parse it, an answer saying that
    none of the keys asked for exists."""
    endpoint.answer(200, body, crc=False)
    with pytest.raises(BotoCoreError):
        client().batch_get_item(RequestItems={})
    endpoint.answer(200, body, crc=False)
    endpoint.answer(200, {"Responses": {"T": [ITEM]}, "UnprocessedKeys": {}})
    found, failed = Dynamo(client(), no_wait()).get([("T", {"pk": {"S": "k1"}})])
    assert failed == [] and list(found.values()) == [ITEM]


def test_a_kept_alive_connection_the_server_has_closed_is_not_a_failed_call(
    endpoint: Endpoint,
) -> None:
    """DynamoDB (and load balancers) close idle connections without a word: the next call
    opens a new one rather than failing on the dead one, as botocore's own calls do."""
    ddb = client()
    for _ in range(3):
        # Closed by the server after its answer, which says nothing of it (no Connection: close).
        endpoint.answer(200, {"Responses": {}}, True, **{"x-test-close": "1"})
    dynamo = Dynamo(ddb, no_wait())
    for _ in range(3):
        answer = dynamo._try("batch_get_item", RequestItems={})
        assert answer == {"Responses": {}, "ResponseMetadata": ANY}
        # The kept connection's socket sees the server's close before the next call.
        (kept,) = [c for c in ddb._http._pool.pool.queue if c is not None and c.sock]
        assert wait_for_read(kept.sock, timeout=10) and kept.sock.recv(1, socket.MSG_PEEK) == b""
    assert dynamo.stats.calls == 3 and len(endpoint.seen) == 3


@pytest.mark.parametrize("suffix", ["/", "/prefix", "/prefix/", "/a%20b/~x"])
def test_an_endpoint_url_with_a_path_is_posted_to_and_signed_as_botocore_does(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """AWS_ENDPOINT_URL with a path (a gateway in front of DynamoDB) or a trailing slash: the
    same request target as the boto3 client's own calls, and the signature botocore would make
    for it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url + suffix)
    ddb = wire_client()
    endpoint.answer(200, {"Table": {"TableName": "T"}})
    ddb.describe_table(TableName="T")
    endpoint.answer(200, {"Responses": {}})
    ddb.batch_get_item(RequestItems={})
    assert endpoint.paths[1] == endpoint.paths[0]
    headers, body = endpoint.seen[1]
    at = datetime.datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *a, **k: at)
    again = AWSRequest(
        method="POST",
        url=endpoint.url + endpoint.paths[1],
        data=body,
        headers={k: headers[k] for k in ("content-type", "x-amz-target")},
    )
    creds = boto3.session.Session().get_credentials().get_frozen_credentials()
    SigV4Auth(creds, "dynamodb", "eu-west-3").add_auth(again)
    assert headers["authorization"] == again.headers["Authorization"]


def test_credentials_that_expire_mid_run_are_renewed_and_signed_with(
    endpoint: Endpoint,
) -> None:
    """Refreshable credentials (an assumed role, SSO, the instance's): each call signs with
    what they hold now, so one renewed mid-run signs the next call (new key, new token),
    as botocore's own calls do."""
    from botocore.credentials import RefreshableCredentials

    issued: list[int] = []

    def renew() -> dict[str, str]:
        issued.append(len(issued))
        n = len(issued)
        # Expires at once: botocore renews them before each use (within its refresh window).
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=60 * n - 60)
        return {
            "access_key": f"AKID{n}",
            "secret_key": f"secret{n}",
            "token": f"token{n}",
            "expiry_time": expiry.isoformat(),
        }

    creds = RefreshableCredentials.create_from_metadata(renew(), renew, "test")
    session = boto3.session.Session()
    boto = session.client("dynamodb", region_name="eu-west-3")
    ddb = WireClient(boto, creds)
    for _ in range(2):
        endpoint.answer(200, {"Responses": {}})
        ddb.batch_get_item(RequestItems={})
    first, second = (h for h, _ in endpoint.seen)
    assert first["x-amz-security-token"] != second["x-amz-security-token"]
    for headers, body in endpoint.seen:
        n = headers["x-amz-security-token"].removeprefix("token")
        assert f"Credential=AKID{n}/" in headers["authorization"]
        frozen = type(creds.get_frozen_credentials())(f"AKID{n}", f"secret{n}", f"token{n}")
        at = datetime.datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
        signed = {k: headers[k] for k in ("content-type", "x-amz-target")}
        again = AWSRequest(method="POST", url=endpoint.url + "/", data=body, headers=signed)
        with pytest.MonkeyPatch.context() as m:
            m.setattr("botocore.auth.get_current_datetime", lambda *a, at=at, **k: at)
            SigV4Auth(frozen, "dynamodb", "eu-west-3").add_auth(again)
        assert headers["authorization"] == again.headers["Authorization"]


@pytest.mark.parametrize("crc", [True, False])
def test_an_answer_cut_short_by_a_lost_connection_is_retried(endpoint: Endpoint, crc: bool) -> None:
    """The connection lost in the middle of the body (urllib3 is told, as botocore tells it,
    not to check Content-Length): the CRC32 DynamoDB sends finds it out, and without one (a
    proxy that drops the header) the half a JSON object does; either way a failed call that
    is retried, and then the whole answer is taken."""
    whole = {"Responses": {"T": [ITEM]}, "UnprocessedKeys": {}}
    endpoint.answer(200, whole, crc=crc, **{"x-test-cut": "1"})
    endpoint.answer(200, whole, crc=crc)
    dynamo = Dynamo(client(), no_wait())
    found, failed = dynamo.get([("T", {"pk": {"S": "k1"}})])
    assert failed == [] and list(found.values()) == [ITEM]
    assert dynamo.stats.calls == 2


@pytest.mark.parametrize(
    "region, env",
    [
        ("local", {}),  # DynamoDB Local: botocore signs for us-east-1 (its endpoint rules)
        ("us-east-1", {}),
        ("us-east-1", {"AWS_USE_FIPS_ENDPOINT": "true"}),
        ("cn-north-1", {"AWS_USE_DUALSTACK_ENDPOINT": "true"}),
        ("us-east-1", {"AWS_ACCOUNT_ID": "123456789012"}),  # an account-based endpoint
    ],
)
def test_the_endpoint_and_signing_region_are_what_botocore_resolves(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, region: str, env: dict[str, str]
) -> None:
    """Where botocore's own BatchGetItem would go and the region it signs for, from
    DynamoDB's endpoint rules (not only the client's region_name and endpoint_url): nothing is
    sent, both requests are taken before they leave."""
    from botocore.awsrequest import AWSResponse

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_REGION", region)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    at = datetime.datetime(2026, 12, 7, 2, 45, 1)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *a, **k: at)
    monkeypatch.setattr("time.time", lambda: at.replace(tzinfo=datetime.UTC).timestamp())
    ddb = client()
    taken: list[tuple[str, str]] = []

    def scope(authorization: str) -> str:
        return authorization.partition(", Signature=")[0]  # the bodies differ in spacing

    class Raw:
        def stream(self, **kwargs: Any) -> Iterator[bytes]:
            yield b'{"Responses": {}}'

    def theirs(request: Any, **kwargs: Any) -> Any:
        taken.append((request.url, scope(request.headers["Authorization"].decode())))
        return AWSResponse(request.url, 200, {}, Raw())

    ddb.meta.events.register("before-send.dynamodb.BatchGetItem", theirs)
    ddb._boto.batch_get_item(RequestItems={})

    def ours(headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        taken.append((ddb._http._url, scope(headers["Authorization"])))
        return 200, {}, b'{"Responses": {}}'

    monkeypatch.setattr(ddb._http, "post", ours)
    ddb.batch_get_item(RequestItems={})
    assert taken[1] == taken[0]


def test_a_proxys_error_page_is_a_short_one_line_reason(endpoint: Endpoint) -> None:
    """A 4xx whose body is a proxy's HTML page: not retried (code the status, as botocore
    gives it), and the reason each key fails with (in the failed-keys file, once per key) is
    one short line, not the page."""
    page = b"<html>\n<head><title>403 Forbidden</title></head>\n<body>" + b"x" * 20_000
    endpoint.answer(403, page + b"</body>\n</html>\n", crc=False)
    reason = Dynamo(client(), no_wait())._try("batch_get_item", RequestItems={})
    assert isinstance(reason, str) and reason.startswith("403: <html> <head><title>403 Forbidden")
    assert "\n" not in reason and len(reason) < 300
