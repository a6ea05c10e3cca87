"""The moto server the catch-up tests against DynamoDB share: one per test module (a module's
tests may add fault rules to it), emptied before each test that asks for `fresh`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.ddb_faults import FaultyDynamo


@pytest.fixture(scope="module")
def ddb() -> Iterator[FaultyDynamo]:
    with FaultyDynamo() as server:
        yield server


@pytest.fixture
def fresh(ddb: FaultyDynamo) -> FaultyDynamo:
    ddb.reset()
    return ddb
