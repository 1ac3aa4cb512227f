"""/ready checks every configured dependency against the real servers, and names what is down."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from course_signup.adapters import migrations
from course_signup.settings import Settings
from tests.conftest import IN_CI, JWT_SECRET, running_app

BROKER_URL = os.environ.get("COURSE_SIGNUP_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("COURSE_SIGNUP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require_broker() -> None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError as exc:
        if IN_CI:
            pytest.fail(f"RabbitMQ is required in CI: {exc}")
        pytest.skip(f"RabbitMQ not reachable: {exc}")


async def _ready(tmp_path: Path, **settings: str) -> tuple[int, object]:
    config = Settings(data_dir=tmp_path, jwt_secret=JWT_SECRET, **settings)  # type: ignore[arg-type]
    await asyncio.to_thread(migrations.upgrade, config)
    async with running_app(config) as client:
        response = await client.get("/ready")
    return response.status_code, response.json()["data"]


async def test_ready_checks_the_broker_and_redis_when_configured(tmp_path: Path):
    _require_broker()
    status, data = await _ready(tmp_path, broker_url=BROKER_URL, redis_url=REDIS_URL)
    assert (status, data) == (200, {"database": "ok", "redis": "ok", "broker": "ok"})


async def test_ready_names_an_unreachable_broker(tmp_path: Path):
    status, data = await _ready(tmp_path, broker_url=f"amqp://guest:guest@127.0.0.1:{_closed_port()}/")
    assert status == 503
    assert data == "Not ready: broker unavailable."
