"""Database failures the client should retry are 503 with Retry-After; anything else is a 500."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.exc import DBAPIError

from course_signup.api.errors import database_error_handler


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    "sqlstate",
    [
        "08006",  # connection failure
        "40001",  # serialization failure: also a replica's read cancelled by a conflict with recovery
        "40P01",  # deadlock detected
        "53300",  # too many connections
        "57P01",  # admin shutdown
    ],
)
async def test_a_failure_worth_retrying_is_503_with_retry_after(sqlstate: str):
    response = await database_error_handler(None, DBAPIError("SELECT 1", {}, _DriverError(sqlstate)))  # type: ignore[arg-type]
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert json.loads(response.body)["data"] == "The database is unavailable; try again shortly."


async def test_any_other_database_failure_is_a_500_without_details():
    response = await database_error_handler(None, DBAPIError("SELECT 1", {}, _DriverError("23505")))  # type: ignore[arg-type]
    assert response.status_code == 500
    assert "23505" not in response.body.decode()
