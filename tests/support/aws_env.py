"""An AWS environment of the test's own: nothing from the machine's profiles, proxies, CA
bundles or instance metadata reaches botocore, only fixed keys and a Region."""

from __future__ import annotations

import pytest

_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    *(v for proxy in ("http_proxy", "https_proxy", "no_proxy") for v in (proxy, proxy.upper())),
)


def isolate(monkeypatch: pytest.MonkeyPatch, key_id: str) -> None:
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/ddbshard-test/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/ddbshard-test/credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
