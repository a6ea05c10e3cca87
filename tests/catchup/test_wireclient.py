"""The wire-form client: what goes on the wire (signed, DynamoDB JSON as sync holds it), and
that DynamoDB's error answers come back as the ClientError botocore would raise, so `Dynamo`
retries and stops exactly as it does with a boto3 client.

A small HTTP server on 127.0.0.1 answers each request with the next scripted answer and keeps
what it was sent.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ddbshard.catchup.dynamo import Dynamo, RetryPolicy, Write, client
from ddbshard.catchup.wireclient import WireClient

Answer = tuple[int, dict[str, str], bytes]  # status, headers, body


class Endpoint:
    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.seen: list[tuple[dict[str, str], bytes]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                endpoint.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status, headers, out = endpoint.answers.pop(0)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

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
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_USE_FIPS_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/ddbshard-test/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/ddbshard-test/credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDWIRE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", e.url)
    yield e
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
