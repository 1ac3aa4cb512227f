"""The catalogue cache shared through Redis: two `serve` processes, one database, one Redis of the test's own.

A change committed on one process is seen on the other at once (the generation bump and its
announcement), long before the 1 s that the TTL alone would allow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio

from course_signup.adapters import migrations
from course_signup.adapters.cache import InProcessCache, RedisCache
from course_signup.adapters.redis_link import RedisLink
from course_signup.settings import Settings
from tests.conftest import JWT_SECRET, email, running_app, unique
from tests.integration.instances import RedisServer, required_private_redis
from tests.integration.servers import Server, start_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# Without the announcement a process keeps its copy for up to the TTL (1 s); with it, a few ms.
AT_ONCE_SECONDS = 0.3


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with required_private_redis() as server:
        yield server


@pytest.fixture(scope="module")
def two_servers(
    postgres_url: str, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    data_dir = tmp_path_factory.mktemp("shared-cache")
    first = start_server(postgres_url, data_dir / "a", COURSE_SIGNUP_REDIS_URL=redis_server.url)
    try:
        second = start_server(postgres_url, data_dir / "b", COURSE_SIGNUP_REDIS_URL=redis_server.url)
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


async def _seen_within(seconds: float, check: Callable[[], Awaitable[bool]]) -> float:
    """How long until `check()` holds, polling; fails the test after `seconds`."""
    began = time.monotonic()
    while not await check():
        elapsed = time.monotonic() - began
        assert elapsed < seconds, f"not seen after {elapsed:.3f} s"
        await asyncio.sleep(0.005)
    return time.monotonic() - began


async def test_a_registrars_change_on_one_process_is_seen_on_the_other_at_once(two_servers, admin_headers):
    a, b = two_servers
    course = unique("SHARED")
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as on_a, httpx.AsyncClient(base_url=b.url) as on_b:
        created = await on_a.post("/courses", json={"courseId": course, "name": "Before"}, headers=admin_headers)
        assert created.status_code == 201
        # B holds fresh copies of the course and of a page listing it, in both tiers
        for _ in range(2):
            assert (await on_b.get(f"/courses/{course}")).json()["data"]["name"] == "Before"
            assert (await on_b.get("/courses", params={"q": course})).json()["data"][0]["name"] == "Before"

        changed = await on_a.patch(f"/courses/{course}", json={"name": "After"}, headers=admin_headers)
        assert changed.status_code == 200

        async def b_has_it() -> bool:
            one = (await on_b.get(f"/courses/{course}")).json()["data"]["name"]
            page = (await on_b.get("/courses", params={"q": course})).json()["data"][0]["name"]
            return one == page == "After"

        waited = await _seen_within(AT_ONCE_SECONDS, b_has_it)
    print(f"\nB saw A's change after {waited * 1000:.1f} ms")


async def test_seat_figures_agree_on_both_processes_right_after_a_sign_up(two_servers, admin_headers, auth):
    a, b = two_servers
    course = unique("SEATS")
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as on_a, httpx.AsyncClient(base_url=b.url) as on_b:
        body = {"courseId": course, "name": "Seats", "capacity": 5}
        assert (await on_a.post("/courses", json=body, headers=admin_headers)).status_code == 201
        for client in (on_a, on_b, on_a, on_b):
            assert (await client.get(f"/courses/{course}")).json()["data"]["enrolled"] == 0

        for enrolled, (writer, reader) in enumerate([(on_a, on_b), (on_b, on_a), (on_a, on_b)], start=1):
            student = email("seat")
            signed = await writer.post(f"/students/{student}/courses", json={"courseId": course}, headers=auth(student))
            assert signed.status_code == 200
            # the writer sees its own write at once, with no polling at all
            assert (await writer.get(f"/courses/{course}")).json()["data"]["enrolled"] == enrolled

            async def reader_agrees(reader: httpx.AsyncClient = reader, enrolled: int = enrolled) -> bool:
                data = (await reader.get(f"/courses/{course}")).json()["data"]
                return (data["enrolled"], data["seatsLeft"]) == (enrolled, 5 - enrolled)

            await _seen_within(AT_ONCE_SECONDS, reader_agrees)


def _lookups(metrics: str) -> dict[str, float]:
    prefix = "course_cache_lookups_total{result="
    return {line.split('"')[1]: float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(prefix)}


async def test_entries_are_shared_through_redis_under_the_current_generation(
    two_servers, redis_server: RedisServer, admin_headers
):
    a, b = two_servers
    course = unique("TIER")
    client = redis.asyncio.from_url(redis_server.url)
    try:
        async with httpx.AsyncClient(base_url=a.url, timeout=10) as on_a, httpx.AsyncClient(base_url=b.url) as on_b:
            created = await on_a.post("/courses", json={"courseId": course, "name": "Tiers"}, headers=admin_headers)
            assert created.status_code == 201
            await asyncio.sleep(0.05)  # the bump is sent after the answer
            generation = (await client.get("course-signup:catalogue:generation")).decode()
            from_a = await on_a.get(f"/courses/{course}")
            keys = {key.decode() for key in await client.keys(f"course-signup:catalogue:{generation}:*{course}*")}
            assert f"course-signup:catalogue:{generation}:course:{course}" in keys
            assert f"course-signup:catalogue:{generation}:http:/courses/{course}?" in keys
            # no shared entry outlives the 1 s that API.md allows
            assert 0 < await client.pttl(f"course-signup:catalogue:{generation}:course:{course}") <= 1000

            # B has never read this course: its first answer is A's, from Redis, not a database read
            before = _lookups((await on_b.get("/metrics")).text)
            from_b = await on_b.get(f"/courses/{course}")
            after = _lookups((await on_b.get("/metrics")).text)
    finally:
        await client.aclose()
    assert from_b.content == from_a.content
    assert after["hit"] == before["hit"] + 1
    assert after.get("miss", 0) == before.get("miss", 0)


async def test_the_first_page_and_its_courses_are_warmed_at_start(tmp_path: Path, admin_headers, redis_server):
    settings = Settings(data_dir=tmp_path, jwt_secret=JWT_SECRET, redis_url=redis_server.url.replace("/0", "/1"))
    await asyncio.to_thread(migrations.upgrade, settings)
    async with running_app(settings) as client:
        for course in ("WARM1", "WARM2"):
            assert (
                await client.post("/courses", json={"courseId": course, "name": course}, headers=admin_headers)
            ).status_code == 201
    shared = redis.asyncio.from_url(settings.redis_url)
    try:
        async with running_app(settings):  # a new process's start: nothing read yet

            async def warmed() -> bool:
                keys = {key.decode().split(":", 3)[3] for key in await shared.keys("course-signup:catalogue:*:*")}
                return {"http:/courses?", "http:/courses/WARM1?", "http:/courses/WARM2?"} <= keys

            await _seen_within(0.9, warmed)
        await shared.flushdb()  # the test's own Redis and database index
    finally:
        await shared.aclose()


async def test_a_value_read_before_a_write_is_never_kept_after_it(redis_server: RedisServer):
    link = RedisLink(redis_server.url.replace("/0", "/2"), timeout=0.025, retry_seconds=1.0)
    other_process = RedisCache(link, 1.0)
    try:
        for cache in (InProcessCache(1.0), RedisCache(link, 1.0)):
            assert await cache.get("page") is None  # a read misses and goes to the database...
            cache.forget_courses()  # ...a write commits meanwhile...
            await cache.put("page", b"before the write")  # ...and the read's answer comes back
            await asyncio.sleep(0.05)  # the write's announcement has landed
            assert await cache.get("page") is None
            await cache.put("page", b"after the write")
            assert await cache.get("page") == b"after the write"
        assert await other_process.get("page") == b"after the write"  # from Redis
        await link.client.flushdb()  # the test's own Redis and database index
    finally:
        await link.close()


async def test_a_value_built_from_a_cached_one_expires_no_later_than_it(redis_server: RedisServer):
    link = RedisLink(redis_server.url.replace("/0", "/3"), timeout=0.025, retry_seconds=1.0)
    try:
        for cache in (InProcessCache(0.3), RedisCache(link, 0.3)):

            async def build_page(cache: InProcessCache = cache) -> None:
                assert await cache.get("page") is None
                await cache.put("page", b"rows")

            # another request: its answer is made from the kept page
            async def build_answer(cache: InProcessCache = cache) -> None:
                assert await cache.get("answer") is None
                assert await cache.get("page") == b"rows"
                await cache.put("answer", b"answer made from rows")

            await asyncio.create_task(build_page())
            await asyncio.sleep(0.2)
            await asyncio.create_task(build_answer())
            await asyncio.sleep(0.15)  # the page has expired (0.35 s > 0.3 s), so must the answer
            assert await cache.get("page") is None
            assert await cache.get("answer") is None
        await link.client.flushdb()  # the test's own Redis and database index
    finally:
        await link.close()
