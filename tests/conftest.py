"""Fixtures shared by the test modules: where the real data is, skipping cleanly without it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.oracle import REALDATA
from support.s3_server import moto_server

# The runs the tests start keep their state and destination locks under XDG_CACHE_HOME: a
# folder of this test session's own, so that neither the user's cache nor another test session
# on the same machine (whose moto server has buckets of the same names) is touched.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="ddbshard-test-cache-")


@pytest.fixture(scope="session")
def realdata() -> Path:
    """`../shared/realdata` beside the repository (real DynamoDB JSON nobody here wrote)."""
    if not REALDATA.is_dir():
        pytest.skip(f"real data not found at {REALDATA} (expected beside the repository)")
    return REALDATA


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3/DynamoDB server on 127.0.0.1, started once for the session (on first use)
    with this process's AWS clients pointed at it; a module that uses it resets it first."""
    with moto_server() as endpoint:
        yield endpoint
