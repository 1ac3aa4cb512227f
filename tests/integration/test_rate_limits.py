"""Rate limits: 429 with Retry-After, per token subject on writes and per address on the catalogue;
shared by every process through the real Redis when REDIS_URL is set."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
import redis.asyncio

from course_signup.adapters import migrations
from course_signup.api.routes import courses as courses_routes
from course_signup.settings import Settings
from tests.api.helpers import assert_error
from tests.conftest import IN_CI, JWT_SECRET, running_app

REDIS_URL = os.environ.get("COURSE_SIGNUP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


async def _settings(data_dir: Path, **overrides: object) -> Settings:
    settings = Settings(
        data_dir=data_dir,
        jwt_secret=JWT_SECRET,
        rate_limit_enabled=True,
        rate_limit_writes="3/minute",
        rate_limit_anonymous="5/minute",
        **overrides,  # type: ignore[arg-type]
    )
    await asyncio.to_thread(migrations.upgrade, settings)  # Alembic runs its own event loop
    return settings


@pytest.fixture
async def redis_url() -> str:
    client = redis.asyncio.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (OSError, redis.RedisError) as exc:
        if IN_CI:
            pytest.fail(f"Redis is required in CI: {exc}")
        pytest.skip(f"Redis not reachable: {exc}")
    finally:
        await client.aclose()
    return REDIS_URL


async def test_writes_are_limited_per_token_subject(tmp_path: Path, tokens):
    async with running_app(await _settings(tmp_path)) as client:
        alice = {"Authorization": f"Bearer {tokens.issue('alice@example.com')}"}
        bob = {"Authorization": f"Bearer {tokens.issue('bob@example.com')}"}
        admin = {"Authorization": f"Bearer {tokens.issue('registrar@example.com', admin=True)}"}
        created = await client.post("/courses", json={"courseId": "CS101", "name": "Intro"}, headers=admin)
        assert created.status_code == 201
        answers = [
            (await client.post("/students/alice@example.com/courses", json={"courseId": "CS101"}, headers=alice))
            for _ in range(4)
        ]
        assert [a.status_code for a in answers[:3]] == [200, 409, 409]
        assert_error(answers[3], 429)
        assert answers[3].json()["message"] == "Too Many Requests"
        assert 1 <= int(answers[3].headers["Retry-After"]) <= 60
        # another student has a budget of their own
        other = await client.post("/students/bob@example.com/courses", json={"courseId": "CS101"}, headers=bob)
        assert other.status_code == 200


async def test_the_catalogue_is_limited_per_address(tmp_path: Path):
    async with running_app(await _settings(tmp_path)) as client:
        statuses = [(await client.get("/courses")).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        assert (await client.get("/health")).status_code == 200  # probes are never limited


async def test_limits_are_shared_through_redis(tmp_path: Path, tokens, redis_url: str):
    prefix = uuid.uuid4().hex[:8]
    student = f"{prefix}@example.com"
    headers = {"Authorization": f"Bearer {tokens.issue(student)}"}
    first = await _settings(tmp_path / "a", redis_url=redis_url)
    second = await _settings(tmp_path / "b", redis_url=redis_url)
    async with running_app(first) as one, running_app(second) as two:
        statuses = []
        for client in (one, two, one, two):
            response = await client.get(f"/students/{student}/courses", headers=headers)
            statuses.append(response.status_code)
            response = await client.delete(f"/students/{student}/courses/CS101", headers=headers)
            statuses.append(response.status_code)
        # reads are not limited; the 3 writes allowed per minute are counted across both apps
        assert statuses[0::2] == [200] * 4
        assert statuses[1::2] == [404, 404, 404, 429]
        ready = (await one.get("/ready")).json()["data"]
        assert ready == {"database": "ok", "redis": "ok"}


async def test_with_rate_limits_on_the_catalogue_is_counted_once_and_still_served_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    served_by_route = 0
    original = courses_routes.courses.list_courses

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal served_by_route
        served_by_route += 1
        return await original(*args, **kwargs)

    monkeypatch.setattr(courses_routes.courses, "list_courses", counting)
    settings = await _settings(tmp_path, cache_ttl_seconds=1.0)
    async with running_app(settings) as client:
        statuses = [(await client.get("/courses?limit=3")).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]  # each request counted once, cached or not
    assert served_by_route == 1  # the other four 200s came from the response cache
