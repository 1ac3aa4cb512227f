"""The catalogue cache: repeated reads come from memory, yet a process sees its own writes at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from course_signup.adapters import migrations
from course_signup.api.routes import courses as courses_routes
from course_signup.settings import Settings
from tests.api.helpers import assert_error
from tests.conftest import JWT_SECRET, running_app


async def test_cached_reads_follow_every_local_write(tmp_path: Path, tokens):
    settings = Settings(data_dir=tmp_path, jwt_secret=JWT_SECRET, cache_ttl_seconds=1.0)
    await asyncio.to_thread(migrations.upgrade, settings)
    admin = {"Authorization": f"Bearer {tokens.issue('registrar@example.com', admin=True)}"}
    student = "cached@example.com"
    async with running_app(settings) as client:
        created = await client.post("/courses", json={"courseId": "C1", "name": "One", "capacity": 3}, headers=admin)
        assert created.status_code == 201
        first = await client.get("/courses?limit=10")
        again = await client.get("/courses?limit=10")
        assert first.content == again.content
        assert again.headers["X-Request-ID"] != first.headers["X-Request-ID"]
        assert again.headers["content-type"] == "application/json"
        assert again.headers["Cache-Control"] == "no-cache"
        assert (await client.get("/courses/c1")).json()["data"]["enrolled"] == 0

        signed = await client.post(
            f"/students/{student}/courses",
            json={"courseId": "C1"},
            headers={"Authorization": f"Bearer {tokens.issue(student)}"},
        )
        assert signed.status_code == 200
        # the write cleared the cache: both views show the seat at once, not after the TTL
        assert (await client.get("/courses?limit=10")).json()["data"][0]["enrolled"] == 1
        assert (await client.get("/courses/c1")).json()["data"]["seatsLeft"] == 2

        await client.patch("/courses/C1", json={"name": "Renamed"}, headers=admin)
        assert (await client.get("/courses/C1")).json()["data"]["name"] == "Renamed"

        # answers that are not 200 are never cached, and bad queries still get their 400
        assert_error(await client.get("/courses/NOPE"), 404)
        assert_error(await client.get("/courses?limit=0"), 400)
        assert_error(await client.get("/courses?limit=0"), 400)
        metrics = (await client.get("/metrics")).text
        assert 'course_cache_lookups_total{result="hit"}' in metrics
        assert 'route="/courses"' in metrics


async def test_concurrent_misses_of_one_page_read_the_database_once(tmp_path: Path, monkeypatch):
    settings = Settings(data_dir=tmp_path, jwt_secret=JWT_SECRET, cache_ttl_seconds=1.0)
    await asyncio.to_thread(migrations.upgrade, settings)
    reads = 0
    original = courses_routes.courses.list_courses

    async def slow_read(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.05)  # keeps the first read in flight while the others arrive
        return await original(*args, **kwargs)

    monkeypatch.setattr(courses_routes.courses, "list_courses", slow_read)
    async with running_app(settings) as client:
        answers = await asyncio.gather(*(client.get("/courses?limit=5") for _ in range(20)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert reads == 1  # an expired entry under load costs one database read, not one per request
