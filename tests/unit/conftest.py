"""Fixtures shared by the service-layer unit tests: a fresh fake unit of work and cache per test."""

from __future__ import annotations

import pytest

from tests.fakes import FakeCache, FakeUnitOfWork

# The helpers assert too; rewriting keeps their failure messages as detailed as the tests' own.
pytest.register_assert_rewrite("tests.unit.helpers")


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork(request_id="req-1")


@pytest.fixture
def cache() -> FakeCache:
    return FakeCache()
