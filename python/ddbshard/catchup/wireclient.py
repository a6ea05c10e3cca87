"""BatchGetItem and BatchWriteItem posted as DynamoDB's own JSON, which is sync's wire form.

DynamoDB's protocol is JSON with numbers as text and binaries as base64 text: exactly the wire
form sync holds items in (wire.py). botocore's client would walk the API model to turn that
into its own form and back (B as bytes, then base64 again on the way out), and sync would
convert every item into and out of that form around it: measured, about half of sync's CPU
time per key, which is what bounds how fast rounds in flight go (docs/performance.md).

So for these two calls `WireClient` does only what cannot be skipped: `json.dumps` of the
request, a SigV4 signature (wiresign.py: botocore's, with what is the same for every request
worked out once), the POST (wirehttp.py: on the boto3 client's own connection pool, looked up
once), `json.loads` of the answer. Everything else stays botocore's, from the boto3 client it
wraps: the credentials (refreshable ones are frozen per request), the endpoint and signing
region its endpoint rules give (AWS_ENDPOINT_URL, FIPS, DynamoDB Local, an account's endpoint,
...), and the HTTP session's settings (proxies, CA bundle, the pool sized to the calls in
flight, timeouts), so a connection that fails raises the same BotoCoreError it always did.
An error answer is raised as botocore's ClientError with the response it would have built
(Error.Code from `__type`, Error.Message, ResponseMetadata.HTTPStatusCode), so `Dynamo._try`
classifies throttling, refused credentials and the rest as before. Every other operation
(DescribeTable, Scan, ...) is the boto3 client's own, in its own form.
"""

from __future__ import annotations

import json
import zlib
from typing import Any
from urllib.parse import urlsplit

import ddbshard
from ddbshard.catchup.wire import wire_json
from ddbshard.catchup.wirehttp import Transport
from ddbshard.catchup.wiresign import Signer

__all__ = ["WireClient"]

_TARGET = "DynamoDB_20120810."
# The operations posted here (boto3's names); the rest go to the boto3 client.
_OPS = {"batch_get_item": "BatchGetItem", "batch_write_item": "BatchWriteItem"}


class WireClient:
    """A boto3 DynamoDB client whose batch_get_item and batch_write_item take and return wire
    form (B as base64 text); `Dynamo` skips its client-form conversions for it (`wire_form`)."""

    wire_form = True

    def __init__(self, boto_client: Any, credentials: Any) -> None:
        self._boto = boto_client
        self._credentials = credentials  # None: there are none (NoCredentialsError per call)
        meta = boto_client.meta
        url, region, service = _resolve(boto_client)
        # DynamoDB's operations are POSTs to "/" under the endpoint, as botocore joins them.
        if not urlsplit(url).path:
            url += "/"
        self._signer = Signer(url, region, service)
        # The client's own HTTP session: botocore resolved its proxies, CA bundle, pool size and
        # timeouts from the config and the environment (wirehttp.py).
        self._http = Transport(boto_client._endpoint.http_session, url)
        self._agent = f"ddbshard/{ddbshard.__version__} {meta.config.user_agent or ''}".strip()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._boto, name)  # DescribeTable, Scan, meta, ...

    def batch_get_item(self, **request: Any) -> dict[str, Any]:
        return self._post("batch_get_item", request)

    def batch_write_item(self, **request: Any) -> dict[str, Any]:
        return self._post("batch_write_item", request)

    def _post(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        if self._credentials is None:
            from botocore.exceptions import NoCredentialsError

            raise NoCredentialsError()  # as botocore raises it when it signs
        name = _OPS[op]
        body = wire_json(request).encode()  # ASCII: lone surrogates as \u escapes
        # Frozen per request: a refreshable provider (SSO, an assumed role) renews here.
        frozen = self._credentials.get_frozen_credentials()
        headers = self._signer.headers(frozen, _TARGET + name, body)
        headers["User-Agent"] = self._agent
        status, answer_headers, answer_body = self._http.post(headers, body)
        _check_crc32(answer_headers, answer_body)
        if status >= 300:
            raise _client_error(name, status, answer_headers, answer_body)
        answer = _parse_answer(answer_body)
        answer["ResponseMetadata"] = _metadata(status, answer_headers)
        return answer


def _parse_answer(body: bytes) -> dict[str, Any]:
    """The JSON object of a 200. Anything else (a proxy's page, a body cut short with no CRC32
    to catch it) is a failed call, retried: not a ValueError out of `Dynamo._try`, which
    would end the run with a traceback, nor, as botocore parses it, `{"message": body}`, an
    answer that names no item and so says that none of the keys asked for exists."""
    try:
        answer = json.loads(body)
    except ValueError as e:  # UnicodeDecodeError too
        answer = e
    if isinstance(answer, dict):
        return answer
    from botocore.exceptions import HTTPClientError

    raise HTTPClientError(error=f"DynamoDB's answer is not a JSON object: {_shortened(body)!r}")


def _shortened(body: bytes, limit: int = 200) -> str:
    text = " ".join(body[: limit * 4].decode("utf-8", "replace").split())
    return text if len(text) <= limit else text[:limit] + "..."


def _resolve(boto: Any) -> tuple[str, str, str]:
    """The URL, signing region and signing name of botocore's own BatchGetItem, from
    DynamoDB's endpoint rules as the client resolves them for each call. They may differ from
    the client's endpoint_url and region_name: region "local" is DynamoDB Local's
    http://localhost:8000 signed for us-east-1 (which DynamoDB Local keeps its tables under),
    and credentials that carry an account ID go to the account's endpoint. The same for every
    call here (no table ARNs), so resolved once; the client's own values if the resolver (a
    private part of botocore) is not as known here, or cannot resolve without a call."""
    meta = boto.meta
    url, region, service = meta.endpoint_url, meta.region_name, meta.service_model.signing_name
    resolver: Any = getattr(boto, "_ruleset_resolver", None)
    if not hasattr(resolver, "construct_endpoint"):
        return url, region, service
    from botocore.exceptions import BotoCoreError

    try:
        operation = meta.service_model.operation_model("BatchGetItem")
        endpoint = resolver.construct_endpoint(operation, {"RequestItems": {}}, {})
        schemes = endpoint.properties.get("authSchemes")
        signing = resolver.auth_schemes_to_signing_ctx(schemes)[1] if schemes else {}
    except BotoCoreError:
        # No credentials yet, an account ID required but unknown, ...: every call raises
        # it from botocore's own client; here from the signing or the endpoint itself.
        return url, region, service
    return (
        str(endpoint.url),
        str(signing.get("region") or region),
        str(signing.get("signing_name") or service),
    )


def _check_crc32(headers: Any, body: bytes) -> None:
    """DynamoDB sends the body's CRC32: a body damaged on the way is a failed call (retried),
    as botocore treats it."""
    expected = headers.get("x-amz-crc32")
    if expected is None:
        return
    actual = zlib.crc32(body) & 0xFFFFFFFF
    if str(actual) != expected.strip():
        from botocore.exceptions import ChecksumError

        raise ChecksumError(
            checksum_type="crc32", expected_checksum=expected, actual_checksum=str(actual)
        )


def _metadata(status: int, headers: Any) -> dict[str, Any]:
    return {
        "RequestId": headers.get("x-amzn-requestid", ""),
        "HTTPStatusCode": status,
        "HTTPHeaders": {k.lower(): v for k, v in headers.items()},
        "RetryAttempts": 0,
    }


def _client_error(op: str, status: int, headers: Any, body: bytes) -> Exception:
    """botocore's ClientError for an error answer, with the response botocore would build:
    `{"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": ...}`
    gives Code "ThrottlingException"; a body that is not JSON (a proxy's page) gives the
    status as the code, as botocore does."""
    from botocore.exceptions import ClientError

    code, message = str(status), ""
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = None
        # One short line: it becomes the reason of every key the call held (the failed-keys
        # file, once per key), and a proxy's page may be long and many lines.
        message = _shortened(body)
    if isinstance(parsed, dict):
        kind = parsed.get("__type") or headers.get("x-amzn-errortype") or ""
        code = str(kind).rpartition("#")[2].partition(":")[0] or code
        message = str(parsed.get("message") or parsed.get("Message") or "")
    error = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": _metadata(status, headers),
    }
    made: Exception = ClientError(error, op)
    return made
