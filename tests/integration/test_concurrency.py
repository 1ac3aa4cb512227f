"""API.md §5 under real concurrency: two `serve` processes on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import email, unique
from tests.integration.queue_mode import QueueMode, queue_mode
from tests.integration.servers import Server, start_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class Servers(list[Server]):
    """The running API processes, and how to wait until what they decided is in the database."""

    def __init__(self, running: list[Server], queue: QueueMode | None = None) -> None:
        super().__init__(running)
        self.queue = queue

    async def written(self, course: str) -> None:
        if self.queue is not None:  # queue mode: the worker writes after the answer
            await self.queue.written([course])


@pytest.fixture(scope="module", params=["batched", "one-by-one", "queue"])
def servers(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Servers]:
    """Two processes on one database: batching concurrent sign-ups per course or not, or queue admission."""
    data_dir = tmp_path_factory.mktemp("multi")
    with contextlib.ExitStack() as stack:
        env = {"COURSE_SIGNUP_BATCH_ADMISSION": str(request.param == "batched").lower()}
        queue = None
        if request.param == "queue":
            queue = stack.enter_context(queue_mode(postgres_url, data_dir))
            env.update(queue.env)
        running = [start_server(postgres_url, data_dir, **env), start_server(postgres_url, data_dir, **env)]
        stack.callback(lambda: [server.stop() for server in running])
        yield Servers(running, queue)


@pytest.fixture
async def http() -> httpx.AsyncClient:
    # Idle connections are dropped after 2 s, before the server's 5 s keep-alive timeout closes them:
    # reusing one just as the server closes it is a transport error that says nothing about us.
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=2.0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        yield client


def _dsn(postgres_url: str) -> str:
    return postgres_url.replace("postgresql+asyncpg://", "postgresql://")


async def _create_course(http: httpx.AsyncClient, server: Server, admin: dict[str, str], capacity: int) -> str:
    course = unique("RUSH")
    response = await http.post(
        f"{server.url}/courses", json={"courseId": course, "name": "Rush", "capacity": capacity}, headers=admin
    )
    assert response.status_code == 201, response.text
    return course


async def test_last_seats_go_to_exactly_capacity_students(servers, http, admin_headers, auth, postgres_url):
    course = await _create_course(http, servers[0], admin_headers, capacity=50)
    students = [email(f"rush{i}") for i in range(400)]

    async def attempt(i: int, student: str) -> httpx.Response:
        server = servers[i % len(servers)]
        return await http.post(
            f"{server.url}/students/{student}/courses", json={"courseId": course}, headers=auth(student)
        )

    answers = await asyncio.gather(*(attempt(i, s) for i, s in enumerate(students)))
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: 50, 409: 350}, statuses
    assert {a.json()["data"] for a in answers if a.status_code == 409} == {"Course is full."}
    winners = sorted(a.json()["data"]["studentId"] for a in answers if a.status_code == 200)
    await servers.written(course)
    connection = await asyncpg.connect(_dsn(postgres_url))
    try:
        rows = await connection.fetch(
            "SELECT student_id FROM enrollments WHERE course_id = $1 AND status = 'enrolled' ORDER BY 1", course
        )
        enrolled = await connection.fetchval("SELECT enrolled FROM courses WHERE course_id = $1", course)
    finally:
        await connection.close()
    assert [r["student_id"] for r in rows] == winners
    assert enrolled == 50


async def test_identical_concurrent_sign_ups_enroll_once(servers, http, admin_headers, auth):
    course = await _create_course(http, servers[0], admin_headers, capacity=10)
    student = email("twin")
    answers = await asyncio.gather(
        *(
            http.post(
                f"{servers[i % 2].url}/students/{student}/courses", json={"courseId": course}, headers=auth(student)
            )
            for i in range(20)
        )
    )
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: 1, 409: 19}, statuses
    assert {a.json()["data"] for a in answers if a.status_code == 409} == {
        "Student has already signed up for this course."
    }


async def test_a_storm_of_sign_ups_and_drops_keeps_every_invariant(servers, http, admin_headers, auth, postgres_url):
    capacity = 15
    course = await _create_course(http, servers[0], admin_headers, capacity=capacity)
    students = [email(f"storm{i}") for i in range(60)]
    rng = random.Random(7)

    async def student_life(i: int, student: str) -> list[int]:
        statuses = []
        for _ in range(4):
            server = servers[rng.randrange(2)]
            if rng.random() < 0.6:
                response = await http.post(
                    f"{server.url}/students/{student}/courses",
                    json={"courseId": course, "waitlist": rng.random() < 0.7},
                    headers=auth(student),
                )
            else:
                response = await http.delete(f"{server.url}/students/{student}/courses/{course}", headers=auth(student))
            statuses.append(response.status_code)
        return statuses

    outcomes = await asyncio.gather(*(student_life(i, s) for i, s in enumerate(students)))
    assert all(status in (200, 202, 404, 409) for statuses in outcomes for status in statuses)
    await servers.written(course)

    connection = await asyncpg.connect(_dsn(postgres_url))
    try:
        course_row = await connection.fetchrow(
            "SELECT enrolled, waitlisted, capacity FROM courses WHERE course_id = $1", course
        )
        rows = await connection.fetch(
            "SELECT student_id, status, waitlist_seq FROM enrollments WHERE course_id = $1", course
        )
        events = Counter(
            r["type"] for r in await connection.fetch("SELECT type FROM course_events WHERE course_id = $1", course)
        )
    finally:
        await connection.close()
    enrolled = [r for r in rows if r["status"] == "enrolled"]
    waiting = [r for r in rows if r["status"] == "waitlisted"]
    assert course_row["enrolled"] == len(enrolled) <= capacity
    assert course_row["waitlisted"] == len(waiting)
    if waiting:
        assert len(enrolled) == capacity  # nobody waits while a seat is free
    assert events["enrolled"] + events["promoted"] - events["dropped"] == len(enrolled)
    assert events["waitlisted"] - events["promoted"] - events["left_waitlist"] == len(waiting)

    roster = (await http.get(f"{servers[1].url}/courses/{course}/students?limit=1000", headers=admin_headers)).json()[
        "data"
    ]
    positions = [r["position"] for r in roster if r["status"] == "waitlisted"]
    assert positions == list(range(1, len(waiting) + 1))
    by_seq = sorted(waiting, key=lambda r: r["waitlist_seq"])
    assert [r["studentId"] for r in roster if r["status"] == "waitlisted"] == [r["student_id"] for r in by_seq]


async def test_an_acknowledged_sign_up_survives_kill_9(postgres_url, tmp_path: Path, admin_headers, auth):
    server = start_server(postgres_url, tmp_path)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            course = await _create_course(http, server, admin_headers, capacity=5)
            student = email("durable")
            response = await http.post(
                f"{server.url}/students/{student}/courses", json={"courseId": course}, headers=auth(student)
            )
            server.kill()  # the instant the 200 arrived
    finally:
        server.stop()
    assert response.status_code == 200
    connection = await asyncpg.connect(_dsn(postgres_url))
    try:
        row = await connection.fetchrow(
            "SELECT status FROM enrollments WHERE course_id = $1 AND student_id = $2", course, student
        )
        enrolled = await connection.fetchval("SELECT enrolled FROM courses WHERE course_id = $1", course)
    finally:
        await connection.close()
    assert row is not None and row["status"] == "enrolled"
    assert enrolled == 1


async def test_seats_hold_on_the_embedded_database_with_two_processes(tmp_path: Path, admin_headers, auth):
    running = [start_server(None, tmp_path), start_server(None, tmp_path)]  # one SQLite file, two writers
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            course = await _create_course(http, running[0], admin_headers, capacity=10)
            students = [email(f"lite{i}") for i in range(80)]
            answers = await asyncio.gather(
                *(
                    http.post(f"{running[i % 2].url}/students/{s}/courses", json={"courseId": course}, headers=auth(s))
                    for i, s in enumerate(students)
                )
            )
            detail = (await http.get(f"{running[1].url}/courses/{course}")).json()["data"]
    finally:
        for server in running:
            server.stop()
    assert Counter(a.status_code for a in answers) == {200: 10, 409: 70}
    assert detail["enrolled"] == 10 and detail["seatsLeft"] == 0
