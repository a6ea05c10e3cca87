"""Fixtures shared by the test modules: where the real data is, skipping cleanly without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from oracle import REALDATA


@pytest.fixture(scope="session")
def realdata() -> Path:
    """`../shared/realdata` beside the repository (real DynamoDB JSON nobody here wrote)."""
    if not REALDATA.is_dir():
        pytest.skip(f"real data not found at {REALDATA} (expected beside the repository)")
    return REALDATA
