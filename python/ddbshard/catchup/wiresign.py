"""SigV4 for the one request shape WireClient posts: POST of DynamoDB JSON to the endpoint.

botocore's SigV4Auth works out, on every request, what is the same for all of them here: the
headers to sign and their order, the host, the path, the credential scope, and the signing key
(four HMACs of the secret key, the date, the region and the service). For sync's calls that was
a tenth of its CPU time per key. `Signer` fixes the shape once and keeps the signing key for as
long as the secret key and the day stay the same, so a refreshed secret or a new day (UTC) gets
a new key; what is left per request is two SHA-256 digests and one HMAC.

The result is what SigV4Auth produces for the same request, credentials and time, byte for byte
(tests/catchup/test_wiresign.py compares them): headers signed are content-type, host,
x-amz-date, x-amz-security-token (when the credentials have a token) and x-amz-target, and the
payload hash is the body's SHA-256 (botocore sends no x-amz-content-sha256 for DynamoDB).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = ["CONTENT_TYPE", "Signer"]

CONTENT_TYPE = "application/x-amz-json-1.0"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _canonical_value(value: str) -> str:
    return " ".join(value.split())  # as SigV4 canonicalises a header value


class Signer:
    """Signs POSTs to `url` for `service` in `region`; `headers` gives the headers to send."""

    def __init__(self, url: str, region: str, service: str) -> None:
        from botocore.utils import normalize_url_path

        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"  # an IPv6 literal, bracketed as in the Host header
        if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
            host = f"{host}:{parts.port}"
        path = quote(normalize_url_path(parts.path), safe="/~")
        pairs = sorted(p.partition("=") for p in parts.query.split("&")) if parts.query else []
        query = "&".join(f"{k}={v}" for k, _, v in pairs)
        # The canonical request up to the x-amz-date value, and the headers after it.
        self._head = f"POST\n{path}\n{query}\ncontent-type:{CONTENT_TYPE}\nhost:{host}\n"
        self._suffix = f"/{region}/{service}/aws4_request"
        self._region = region
        self._service = service
        self._key: tuple[str, str, bytes] = ("", "", b"")  # secret key, date, signing key

    def _signing_key(self, secret: str, date: str) -> bytes:
        cached = self._key  # one tuple: threads read and replace it whole
        if cached[0] == secret and cached[1] == date:
            return cached[2]
        key = _hmac(f"AWS4{secret}".encode(), date)
        for part in (self._region, self._service, "aws4_request"):
            key = _hmac(key, part)
        self._key = (secret, date, key)
        return key

    def headers(
        self, credentials: Any, target: str, body: bytes, now: float | None = None
    ) -> dict[str, str]:
        """The signed request's headers for frozen `credentials` (access_key, secret_key,
        token) at `now` (seconds since the epoch; the clock if None), in the order botocore
        sends them."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
        date = stamp[:8]
        token = credentials.token
        if token:
            signed = "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
            canonical_headers = (
                f"x-amz-date:{stamp}\nx-amz-security-token:{_canonical_value(token)}\n"
                f"x-amz-target:{_canonical_value(target)}\n"
            )
        else:
            signed = "content-type;host;x-amz-date;x-amz-target"
            canonical_headers = f"x-amz-date:{stamp}\nx-amz-target:{_canonical_value(target)}\n"
        canonical = f"{self._head}{canonical_headers}\n{signed}\n{hashlib.sha256(body).hexdigest()}"
        scope = date + self._suffix
        to_sign = (
            f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = hmac.new(
            self._signing_key(credentials.secret_key, date), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": target, "X-Amz-Date": stamp}
        if token:
            headers["X-Amz-Security-Token"] = token
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return headers
