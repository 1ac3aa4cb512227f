"""Redis trouble costs little and is said once: a `serve` process on a redis-server of the test's own,
which the test kills and restarts empty, or pauses with SIGSTOP, while requests flow.

Every answer stays right (the catalogue and rate limits fall back to the database and to counting
in the process), the process is never restarted, and its log says "Redis unavailable" once and
"Redis back" once.
"""

from __future__ import annotations

import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio

from course_signup.settings import Settings
from tests.conftest import email, unique
from tests.integration.instances import RedisServer, required_private_redis
from tests.integration.servers import Server, start_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# Rate limits on, as in production, so every request also asks Redis for its count.
LIMITS = {
    "COURSE_SIGNUP_RATE_LIMIT_ENABLED": "true",
    "COURSE_SIGNUP_RATE_LIMIT_ANONYMOUS": "100000/minute",
    "COURSE_SIGNUP_RATE_LIMIT_WRITES": "100000/minute",
}
EXTRA_SECONDS_ALLOWED = 0.050
REDIS_DEADLINE_SECONDS = Settings.model_fields["redis_timeout_seconds"].default


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with required_private_redis() as server:
        yield server


@pytest.fixture
def server(postgres_url: str, tmp_path: Path, redis_server: RedisServer) -> Iterator[Server]:
    process = start_server(postgres_url, tmp_path, COURSE_SIGNUP_REDIS_URL=redis_server.url, **LIMITS)
    yield process
    process.stop()


class Traffic:
    """Rounds of catalogue reads and sign-ups on one course, each answer checked against the seats taken."""

    def __init__(self, http: httpx.AsyncClient, auth, course: str) -> None:  # type: ignore[no-untyped-def]
        self.http, self.auth, self.course = http, auth, course
        self.enrolled = 0
        self.timings: list[tuple[str, float]] = []

    async def _timed(self, kind: str, method: str, url: str, **kwargs: object) -> httpx.Response:
        began = time.perf_counter()
        response = await self.http.request(method, url, **kwargs)  # type: ignore[arg-type]
        self.timings.append((kind, time.perf_counter() - began))
        assert response.status_code == 200, (kind, response.status_code, response.text)
        return response

    async def round(self) -> None:
        course = (await self._timed("course", "GET", f"/courses/{self.course}")).json()["data"]
        assert course["enrolled"] == self.enrolled
        student = email("outage")
        await self._timed(
            "sign-up",
            "POST",
            f"/students/{student}/courses",
            json={"courseId": self.course},
            headers=self.auth(student),
        )
        self.enrolled += 1
        # this process sees its own write at once, Redis or not
        course = (await self._timed("course", "GET", f"/courses/{self.course}")).json()["data"]
        assert (course["enrolled"], course["seatsLeft"]) == (self.enrolled, 10_000 - self.enrolled)
        page = (await self._timed("page", "GET", "/courses", params={"limit": 1000})).json()["data"]
        assert [c["enrolled"] for c in page if c["courseId"] == self.course] == [self.enrolled]

    async def run_for(self, seconds: float) -> list[tuple[str, float]]:
        first = len(self.timings)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.round()
        return self.timings[first:]

    async def run_until_logged(self, server: Server, line: str, limit: float = 10.0) -> None:
        deadline = time.monotonic() + limit
        while line not in server.log.read_text():
            assert time.monotonic() < deadline, f"{line!r} not logged:\n{server.log.read_text()}"
            await self.round()


async def _traffic(http: httpx.AsyncClient, admin_headers, auth) -> Traffic:  # type: ignore[no-untyped-def]
    course = unique("OUTAGE")
    created = await http.post(
        "/courses", json={"courseId": course, "name": course, "capacity": 10_000}, headers=admin_headers
    )
    assert created.status_code == 201
    return Traffic(http, auth, course)


def _said_once(server: Server) -> None:
    log = server.log.read_text()
    assert log.count("Redis unavailable") == 1, log
    assert log.count("Redis back") == 1, log
    assert "Traceback" not in log, log


async def _shared_entries(url: str, course: str) -> list[bytes]:
    client = redis.asyncio.from_url(url)
    try:
        return await client.keys(f"course-signup:catalogue:*:course:{course}")
    finally:
        await client.aclose()


async def test_answers_stay_right_while_redis_is_killed_and_restarted_empty(
    server: Server, redis_server: RedisServer, admin_headers, auth
):
    pid = server.process.pid
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        traffic = await _traffic(http, admin_headers, auth)
        await traffic.run_for(0.5)
        assert await _shared_entries(redis_server.url, traffic.course)

        redis_server.kill()
        await traffic.run_for(1.5)
        ready = await http.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["data"] == "Not ready: redis unavailable."

        redis_server.start()  # same port, empty
        await traffic.run_until_logged(server, "Redis back")
        await traffic.run_for(0.3)
        assert (await http.get("/ready")).status_code == 200
        # the shared tier fills again, in the new, empty Redis
        assert await _shared_entries(redis_server.url, traffic.course)
    assert server.process.poll() is None and server.process.pid == pid  # never restarted
    _said_once(server)


async def test_a_paused_redis_adds_at_most_50_ms_to_any_answer(
    server: Server, redis_server: RedisServer, admin_headers, auth
):
    assert redis_server.process is not None
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        traffic = await _traffic(http, admin_headers, auth)
        await traffic.run_for(0.3)  # connections and statements warmed, not measured
        healthy = await traffic.run_for(1.5)
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            paused = await traffic.run_for(2.5)
            ready = await http.get("/ready")
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        await traffic.run_until_logged(server, "Redis back")
    assert ready.status_code == 503 and ready.json()["data"] == "Not ready: redis unavailable."

    median = {kind: statistics.median(t for k, t in healthy if k == kind) for kind, _ in healthy}
    extra = sorted((t - median[kind], kind) for kind, t in paused)
    over = [(round(e * 1000, 1), kind) for e, kind in extra if e > EXTRA_SECONDS_ALLOWED]
    print(
        f"\nmedian with Redis healthy (ms): { {k: round(v * 1000, 1) for k, v in median.items()} }; Redis paused: "
        f"{len(paused)} answers, the median {statistics.median(e for e, _ in extra) * 1000:+.1f} ms and the "
        f"slowest {extra[-1][0] * 1000:+.1f} ms against their kind's median, "
        f"{len(over)} more than {EXTRA_SECONDS_ALLOWED * 1000:.0f} ms over"
    )
    # On a shared machine a few answers are slow for reasons of their own: 2% (at least 2) may be.
    assert len(over) <= max(2, len(paused) // 50), over
    # The breaker skips Redis after a failure, so the typical answer pays nothing, where without it
    # every answer would wait out a deadline (25 ms here; seconds with the old socket timeouts).
    assert statistics.median(e for e, _ in extra) < REDIS_DEADLINE_SECONDS / 2
    _said_once(server)
