"""The SigV4 of WireClient's requests is botocore's: for the same request, credentials and time,
`Signer` gives the headers SigV4Auth adds, byte for byte, with or without a session token,
across midnight (UTC) and with refreshable credentials that rotate under it."""

from __future__ import annotations

import calendar
import datetime
import json
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials

from ddbshard.catchup.wiresign import Signer

BODY = json.dumps({"RequestItems": {"T": {"Keys": [{"pk": {"S": "k é"}}]}}}).encode()
TARGET = "DynamoDB_20120810.BatchGetItem"


def botocore_headers(
    monkeypatch: pytest.MonkeyPatch, url: str, creds: Any, at: datetime.datetime, body: bytes
) -> dict[str, str]:
    """What SigV4Auth adds to the request WireClient used to build, at time `at`."""
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *a, **k: at)
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": TARGET,
            "User-Agent": "ddbshard/test",
        },
    )
    SigV4Auth(creds, "dynamodb", "eu-west-3").add_auth(request)
    return {k: v for k, v in request.headers.items() if k != "User-Agent"}


def epoch(at: datetime.datetime) -> float:
    return calendar.timegm(at.timetuple())


@pytest.mark.parametrize(
    "url",
    [
        "https://dynamodb.eu-west-3.amazonaws.com",
        "https://dynamodb.eu-west-3.amazonaws.com:443",
        "http://127.0.0.1:8000",
        "http://localhost:80",
        "https://Example.COM:8443/prefix/../ddb",
        "http://[::1]:8000",
    ],
)
@pytest.mark.parametrize("token", [None, "FQoGZXIvYXdzE token/with+chars=="])
def test_headers_are_sigv4auths(
    monkeypatch: pytest.MonkeyPatch, url: str, token: str | None
) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    at = datetime.datetime(2026, 12, 7, 2, 45, 1)
    ours = Signer(url, "eu-west-3", "dynamodb").headers(
        creds.get_frozen_credentials(), TARGET, BODY, epoch(at)
    )
    assert ours == botocore_headers(monkeypatch, url, creds, at, BODY)
    assert ("X-Amz-Security-Token" in ours) == (token is not None)
    assert "x-amz-content-sha256" not in {k.lower() for k in ours}


def test_a_new_day_gets_a_new_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://dynamodb.eu-west-3.amazonaws.com"
    creds = Credentials("AKID", "secret", "token")
    signer = Signer(url, "eu-west-3", "dynamodb")
    signatures = []
    for at in (
        datetime.datetime(2026, 12, 7, 23, 59, 59),
        datetime.datetime(2026, 12, 8, 0, 0, 1),
        datetime.datetime(2026, 12, 8, 0, 0, 1),
        datetime.datetime(2026, 12, 7, 23, 59, 59),  # a clock set back: the old day again
    ):
        ours = signer.headers(creds.get_frozen_credentials(), TARGET, BODY, epoch(at))
        assert ours == botocore_headers(monkeypatch, url, creds, at, BODY)
        signatures.append(ours["Authorization"])
    assert "/20261208/eu-west-3/dynamodb/aws4_request" in signatures[1]
    assert signatures[0] != signatures[1] == signatures[2] and signatures[3] == signatures[0]


def test_rotating_refreshable_credentials_sign_with_the_current_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An assumed role renewed between requests: each request is signed with the keys frozen
    for it, never with a signing key cached from the previous secret."""
    issued: list[dict[str, str]] = []

    def refresh() -> dict[str, str]:
        n = len(issued)
        # Expiring in a minute: botocore renews at every get_frozen_credentials.
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)
        issued.append(
            {
                "access_key": f"ASIA{n}",
                "secret_key": f"secret-{n}",
                "token": f"token-{n}",
                "expiry_time": expiry.isoformat(),
            }
        )
        return issued[-1]

    creds = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    url = "http://127.0.0.1:8000"
    signer = Signer(url, "eu-west-3", "dynamodb")
    at = datetime.datetime(2026, 12, 7, 12, 0, 0)
    seen = set()
    for _ in range(3):
        frozen = creds.get_frozen_credentials()
        ours = signer.headers(frozen, TARGET, BODY, epoch(at))
        assert ours == botocore_headers(monkeypatch, url, frozen, at, BODY)
        assert ours["X-Amz-Security-Token"] == frozen.token
        seen.add(frozen.secret_key)
    assert len(seen) == 3  # they did rotate, on the same day


def test_the_clock_is_used_when_no_time_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: epoch(datetime.datetime(2027, 1, 2, 3, 4, 5)))
    creds = Credentials("AKID", "secret")
    ours = Signer("http://127.0.0.1:1", "eu-west-3", "dynamodb").headers(creds, TARGET, b"")
    assert ours["X-Amz-Date"] == "20270102T030405Z"


def test_sixteen_threads_sharing_one_signer_across_rotations_and_midnight() -> None:
    """sync's 16 calls in flight share one Signer while the secret rotates and the day turns:
    every signature is the one a Signer of its own would make (the cached key is never one
    thread's secret or day used for another's request)."""
    import threading

    url = "http://127.0.0.1:8000"
    days = [
        epoch(datetime.datetime(2026, 12, 7, 23, 59, 59)),
        epoch(datetime.datetime(2026, 12, 8)),
    ]
    keys = [Credentials(f"AKID{n}", f"secret-{n}", None) for n in range(3)]
    cases = [(k, d) for k in range(3) for d in range(2)]
    expected = {
        (k, d): Signer(url, "eu-west-3", "dynamodb").headers(keys[k], TARGET, BODY, days[d])
        for k, d in cases
    }
    shared = Signer(url, "eu-west-3", "dynamodb")
    wrong: list[tuple[int, int]] = []
    start = threading.Barrier(16)

    def sign(n: int) -> None:
        start.wait()
        for i in range(300):
            k, d = cases[(n + i) % len(cases)]
            if shared.headers(keys[k], TARGET, BODY, days[d]) != expected[(k, d)]:
                wrong.append((k, d))

    threads = [threading.Thread(target=sign, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
