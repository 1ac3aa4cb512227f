"""Queue admission against real Redis, RabbitMQ and PostgreSQL: it loses nothing and recovers by itself.

Each test runs on a Redis server and a RabbitMQ vhost of its own (tests/integration/queue_mode.py),
with a worker; the faults are done to those, never to the machine's shared servers.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from course_signup.adapters.admission_queue import queue_name, shard_of
from course_signup.adapters.admission_state import AdmissionState
from tests.conftest import email, unique
from tests.integration.queue_mode import queue_mode
from tests.integration.servers import Server, start_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ALLOWED = {200, 202, 409, 503}


def _dsn(postgres_url: str) -> str:
    return postgres_url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture
async def http() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=2.0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        yield client


async def _course(http: httpx.AsyncClient, server: Server, admin: dict[str, str], capacity: int) -> str:
    course = unique("Q")
    response = await http.post(
        f"{server.url}/courses", json={"courseId": course, "name": "Queue", "capacity": capacity}, headers=admin
    )
    assert response.status_code == 201, response.text
    return course


async def _sign_up(http, server: Server, auth, student: str, course: str, *, waitlist: bool = False) -> httpx.Response:
    return await http.post(
        f"{server.url}/students/{student}/courses",
        json={"courseId": course, "waitlist": waitlist},
        headers=auth(student),
    )


async def _rows(postgres_url: str, course: str) -> tuple[dict[str, str], dict[str, int], Counter[str], Counter[str]]:
    """(student -> status, the course's counters, events by type, events by student) in the database."""
    connection = await asyncpg.connect(_dsn(postgres_url))
    try:
        rows = await connection.fetch("SELECT student_id, status FROM enrollments WHERE course_id = $1", course)
        counters = await connection.fetchrow("SELECT enrolled, waitlisted FROM courses WHERE course_id = $1", course)
        events = await connection.fetch("SELECT type, student_id FROM course_events WHERE course_id = $1", course)
    finally:
        await connection.close()
    return (
        {r["student_id"]: r["status"] for r in rows},
        dict(counters),
        Counter(e["type"] for e in events),
        Counter(e["student_id"] for e in events),
    )


def _admitted(answers: list[httpx.Response]) -> dict[str, str]:
    return {a.json()["data"]["studentId"]: a.json()["data"]["status"] for a in answers if a.status_code in (200, 202)}


async def _until_admitting(http, server: Server, auth, course: str, *, timeout: float = 60) -> tuple[str, float]:
    """Sign up fresh students until one is admitted; returns them and how long it took."""
    started = time.monotonic()
    while True:
        student = email("probe")
        response = await _sign_up(http, server, auth, student, course, waitlist=True)
        if response.status_code in (200, 202):
            return student, time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"]
        assert time.monotonic() - started < timeout, "admission did not resume by itself"
        await asyncio.sleep(0.2)


async def test_the_worker_killed_mid_rush_then_restarted_writes_every_admission_once(
    postgres_url: str, tmp_path: Path, http, admin_headers, auth
):
    with queue_mode(postgres_url, tmp_path, COURSE_SIGNUP_WORKER_BATCH_SIZE="16") as mode:
        server = start_server(postgres_url, tmp_path, **mode.env)
        try:
            course = await _course(http, server, admin_headers, capacity=120)
            students = [email(f"w{i}") for i in range(300)]
            rush = asyncio.gather(
                *(_sign_up(http, server, auth, s, course, waitlist=i % 2 == 0) for i, s in enumerate(students))
            )
            await asyncio.sleep(0.3)
            mode.workers[0].kill()  # mid-rush: decisions keep being queued, nothing is written
            answers = await rush
            mode.start_worker()
            await mode.written([course])
        finally:
            server.stop()
    assert {a.status_code for a in answers} <= {200, 202, 409}
    admitted = _admitted(answers)
    rows, counters, by_type, by_student = await _rows(postgres_url, course)
    assert rows == admitted  # every admitted sign-up, and nothing else
    assert Counter(rows.values())["enrolled"] == 120 == counters["enrolled"]
    assert counters["waitlisted"] == Counter(rows.values())["waitlisted"]
    assert by_type == Counter(rows.values())  # one event per row: nothing written twice
    assert set(by_student.values()) == {1}


async def test_redis_restarted_empty_mid_rush_sells_no_seat_twice_and_resumes_by_itself(
    postgres_url: str, tmp_path: Path, http, admin_headers, auth
):
    with queue_mode(postgres_url, tmp_path) as mode:
        servers = [start_server(postgres_url, tmp_path, **mode.env) for _ in range(2)]
        try:
            course = await _course(http, servers[0], admin_headers, capacity=100)
            students = [email(f"r{i}") for i in range(300)]

            async def later(i: int, student: str) -> httpx.Response:
                await asyncio.sleep(i * 0.02)  # spread over six seconds
                return await _sign_up(http, servers[i % 2], auth, student, course)

            rush = asyncio.gather(*(later(i, s) for i, s in enumerate(students)))
            await asyncio.sleep(1.0)  # some seats taken, most not
            mode.redis.kill()
            mode.redis.start()  # same port, empty: every course's state is gone
            answers = await rush
            probe, waited = await _until_admitting(http, servers[1], auth, course)
            await mode.written([course])
        finally:
            for server in servers:
                server.stop()
    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) <= ALLOWED, statuses
    admitted = _admitted(answers)
    admitted[probe] = "enrolled"
    rows, counters, _, by_student = await _rows(postgres_url, course)
    enrolled = {s for s, status in rows.items() if status == "enrolled"}
    assert len(enrolled) == counters["enrolled"] <= 100  # no seat sold twice
    assert statuses[503] > 0 and statuses[200] > 0
    assert set(admitted) <= set(rows)  # nothing admitted is lost
    # A 503 answered while Redis was away may still have been handed off (the answer was "try
    # again", never "you are in"); nobody else is in the course.
    assert set(rows) - set(admitted) <= {s for s, a in zip(students, answers, strict=True) if a.status_code == 503}
    assert set(by_student.values()) == {1}
    print(f"redis restarted empty: {dict(statuses)}; admitting again {waited:.1f} s after the rush")


async def test_broker_connections_closed_answer_503_then_recover(
    postgres_url: str, tmp_path: Path, http, admin_headers, auth
):
    with queue_mode(postgres_url, tmp_path) as mode:
        server = start_server(postgres_url, tmp_path, **mode.env)
        try:
            course = await _course(http, server, admin_headers, capacity=500)
            before = [await _sign_up(http, server, auth, email("b"), course) for _ in range(5)]
            mode.vhost.close_connections()  # the API's and the worker's: as a broker fail-over does
            during = [await _sign_up(http, server, auth, email("d"), course) for _ in range(20)]
            probe, waited = await _until_admitting(http, server, auth, course)
            after = [await _sign_up(http, server, auth, email("a"), course) for _ in range(5)]
            await mode.written([course])
        finally:
            server.stop()
    assert [a.status_code for a in before] == [200] * 5
    assert {a.status_code for a in during} <= {200, 503}
    assert 503 in {a.status_code for a in during}, "the closed connections went unnoticed"
    assert all(
        a.json()["data"] == "Sign-ups are paused for a moment; try again shortly."
        for a in during
        if a.status_code == 503
    )
    assert [a.status_code for a in after] == [200] * 5
    admitted = _admitted(before + during + after) | {probe: "enrolled"}
    rows, counters, _, _ = await _rows(postgres_url, course)
    assert rows == admitted  # the 503s admitted nothing
    assert counters["enrolled"] == len(rows)
    print(f"broker connections closed: admitting again after {waited:.1f} s")


async def test_a_decision_never_handed_off_is_released_by_the_reconciler(
    postgres_url: str, tmp_path: Path, http, admin_headers, auth
):
    """An API process that dies between its decision and the broker's confirm: the seat comes back."""
    with queue_mode(postgres_url, tmp_path, COURSE_SIGNUP_QUEUE_PENDING_SECONDS="2") as mode:
        server = start_server(postgres_url, tmp_path, **mode.env)
        client = aioredis.Redis.from_url(mode.redis.url)
        try:
            course = await _course(http, server, admin_headers, capacity=1)
            # What an API process does first, and then dies before publishing:
            lost = email("lost")
            decision = await AdmissionState(client).sign_up(
                course,
                lost,
                waitlist=False,
                at=datetime.now(UTC),
                pending_ms=2000,
                request_id="died",
            )
            assert decision.verdict == "enrolled"
            full = await _sign_up(http, server, auth, email("late"), course)
            waiter = email("waiter")
            waiting = await _sign_up(http, server, auth, waiter, course, waitlist=True)
            started = time.monotonic()
            while (await http.get(f"{server.url}/courses/{course}")).json()["data"]["waitlisted"] != 0:
                assert time.monotonic() - started < 30, "the lost decision was never settled"
                await asyncio.sleep(0.1)
            released = time.monotonic() - started
            await mode.written([course])
        finally:
            await client.aclose()
            server.stop()
    assert full.status_code == 409 and full.json()["data"] == "Course is full."
    assert waiting.status_code == 202 and waiting.json()["data"]["position"] == 1
    rows, counters, by_type, _ = await _rows(postgres_url, course)
    assert rows == {waiter: "enrolled"}  # the seat went to the head of the waitlist; the lost one is not in
    assert counters == {"enrolled": 1, "waitlisted": 0}
    assert by_type == Counter({"waitlisted": 1, "promoted": 1})
    print(f"a decision never handed off: seat released {released:.1f} s after it was held")


async def test_an_answered_sign_up_survives_kill_9_of_its_api_process(
    postgres_url: str, tmp_path: Path, http, admin_headers, auth
):
    with queue_mode(postgres_url, tmp_path) as mode:
        server = start_server(postgres_url, tmp_path, **mode.env)
        try:
            course = await _course(http, server, admin_headers, capacity=5)
            student = email("durable")
            response = await _sign_up(http, server, auth, student, course)
            server.kill()  # the instant the answer arrived: the decision is on the broker's disk
            await mode.written([course])
        finally:
            server.stop()
    assert response.status_code == 200
    rows, counters, _, _ = await _rows(postgres_url, course)
    assert rows == {student: "enrolled"} and counters["enrolled"] == 1


def test_queue_mode_needs_redis_and_the_broker(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "course_signup", "serve", "--port", "0"],
        env={"PATH": "/usr/bin:/bin", "COURSE_SIGNUP_ADMISSION": "queue", "COURSE_SIGNUP_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "COURSE_SIGNUP_REDIS_URL" in lines[0] and "COURSE_SIGNUP_BROKER_URL" in lines[0]


async def test_registrar_changes_go_through_the_admission_state(
    postgres_url: str, tmp_path: Path, http, admin_headers, auth
):
    with queue_mode(postgres_url, tmp_path) as mode:
        server = start_server(postgres_url, tmp_path, **mode.env)
        try:
            ready = (await http.get(f"{server.url}/ready")).json()["data"]
            course = await _course(http, server, admin_headers, capacity=1)
            first, second, third = email("first"), email("second"), email("third")
            assert (await _sign_up(http, server, auth, first, course)).status_code == 200
            assert (await _sign_up(http, server, auth, second, course, waitlist=True)).status_code == 202
            assert (await _sign_up(http, server, auth, third, course, waitlist=True)).status_code == 202
            lowered = await http.patch(f"{server.url}/courses/{course}", json={"capacity": 0}, headers=admin_headers)
            kept = await http.delete(f"{server.url}/courses/{course}", headers=admin_headers)
            raised = await http.patch(f"{server.url}/courses/{course}", json={"capacity": 2}, headers=admin_headers)
            # The command line's import goes through the state too: the third student gets the new seat.
            csv = tmp_path / "courses.csv"
            csv.write_text(f"courseId,name,capacity\n{course},Queue,3\n")
            imported = subprocess.run(
                [sys.executable, "-m", "course_signup", "import-courses", str(csv)],
                env={**os.environ, **mode.env, "COURSE_SIGNUP_DATABASE_URL": postgres_url},
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            await mode.written([course])
            detail = (await http.get(f"{server.url}/courses/{course}")).json()["data"]
            rows, counters, by_type, _ = await _rows(postgres_url, course)
            deleted = await http.delete(f"{server.url}/courses/{course}?force=true", headers=admin_headers)
            after = await _sign_up(http, server, auth, email("after"), course)
        finally:
            server.stop()
    assert ready["admission"] == "ok"
    assert lowered.status_code == 409 and lowered.json()["data"] == "Capacity is below current enrollment."
    assert kept.status_code == 409 and kept.json()["data"] == "Course has enrollments."
    assert raised.status_code == 200 and raised.json()["data"]["enrolled"] == 2  # live: second promoted
    assert imported.returncode == 0, imported.stderr
    assert (detail["capacity"], detail["enrolled"], detail["waitlisted"]) == (3, 3, 0)
    assert rows == {first: "enrolled", second: "enrolled", third: "enrolled"}
    assert counters == {"enrolled": 3, "waitlisted": 0}
    assert by_type == Counter({"enrolled": 1, "waitlisted": 2, "promoted": 2})
    assert deleted.status_code == 200
    assert after.status_code == 404 and after.json()["data"] == "Course not found."


async def test_a_decision_delivered_twice_is_written_once_and_a_foreign_message_blocks_nothing(
    postgres_url: str, tmp_path: Path, http, admin_headers, auth
):
    with queue_mode(postgres_url, tmp_path) as mode:
        server = start_server(postgres_url, tmp_path, **mode.env)
        client = aioredis.Redis.from_url(mode.redis.url)
        connection = await aio_pika.connect(mode.vhost.url)
        try:
            course = await _course(http, server, admin_headers, capacity=5)
            shard_queue = queue_name(shard_of(course, 4))
            channel = await connection.channel()
            await channel.default_exchange.publish(aio_pika.Message(b"not a decision"), routing_key=shard_queue)
            twice = email("twice")
            state = AdmissionState(client)
            decision = await state.sign_up(
                course, twice, waitlist=False, at=datetime.now(UTC), pending_ms=60_000,
                request_id="twice",
            )  # fmt: skip
            for _ in range(2):  # as a reconciler republishing it while the first copy waits in the queue
                await channel.default_exchange.publish(aio_pika.Message(decision.message), routing_key=shard_queue)
            after = email("after")
            answered = await _sign_up(http, server, auth, after, course)
            await mode.written([course])
            log = mode.workers[0].log.read_text()
        finally:
            await connection.close()
            await client.aclose()
            server.stop()
    assert answered.status_code == 200
    rows, counters, by_type, by_student = await _rows(postgres_url, course)
    assert rows == {twice: "enrolled", after: "enrolled"} and counters["enrolled"] == 2
    assert by_student == Counter({twice: 1, after: 1}) and by_type == Counter({"enrolled": 2})
    assert "discarding a message that is not an admission decision" in log


async def test_a_lost_drop_that_must_stand_does_not_stall_the_decisions_queued_behind_it(
    postgres_url: str, tmp_path: Path, http, admin_headers, auth
):
    """A drop whose process died, on a course whose seat is resold meanwhile, cannot be undone; the
    decisions behind it wait for it. With a prefetch of 4, more than 4 of them fill the worker's
    window: the drop must still be written first, from Redis, not from the back of the queue."""
    settings = {"COURSE_SIGNUP_QUEUE_PENDING_SECONDS": "2", "COURSE_SIGNUP_WORKER_BATCH_SIZE": "2"}
    with queue_mode(postgres_url, tmp_path, **settings) as mode:
        server = start_server(postgres_url, tmp_path, **mode.env)
        client = aioredis.Redis.from_url(mode.redis.url)
        try:
            course = await _course(http, server, admin_headers, capacity=1)
            holder = email("holder")
            assert (await _sign_up(http, server, auth, holder, course)).status_code == 200
            await mode.written([course])
            lost = await AdmissionState(client).drop(
                course, holder, at=datetime.now(UTC), pending_ms=2000, request_id="died"
            )  # never published: its process died
            assert lost.verdict == "dropped"
            students = [email(f"behind{i}") for i in range(10)]
            answers = [await _sign_up(http, server, auth, s, course, waitlist=True) for s in students]
            await mode.written([course], timeout=30)
        finally:
            await client.aclose()
            server.stop()
    assert [a.status_code for a in answers] == [200] + [202] * 9  # the first took the freed seat
    rows, counters, by_type, _ = await _rows(postgres_url, course)
    assert rows == {students[0]: "enrolled"} | {s: "waitlisted" for s in students[1:]}
    assert counters == {"enrolled": 1, "waitlisted": 9}
    assert by_type == Counter({"enrolled": 2, "dropped": 1, "waitlisted": 9})


async def test_a_course_changed_in_the_catalogue_behind_the_states_back_is_aligned_by_the_worker(
    postgres_url: str, tmp_path: Path, http, admin_headers, auth
):
    """As when an API process dies between its database commit and the admission state."""
    with queue_mode(postgres_url, tmp_path, COURSE_SIGNUP_QUEUE_PENDING_SECONDS="1") as mode:
        server = start_server(postgres_url, tmp_path, **mode.env)
        try:
            course, changed = unique("QS"), await _course(http, server, admin_headers, capacity=1)
            assert (await _sign_up(http, server, auth, email("one"), changed)).status_code == 200
            connection = await asyncpg.connect(_dsn(postgres_url))
            try:
                await connection.execute(
                    "INSERT INTO courses (course_id, name, lessons, capacity, enrolled, waitlisted, waitlist_seq, "
                    "created_at, updated_at) VALUES ($1, 'Behind', 0, 1, 0, 0, 0, now(), now())",
                    course,
                )
                await connection.execute("UPDATE courses SET capacity = 2 WHERE course_id = $1", changed)
            finally:
                await connection.close()
            started = time.monotonic()
            while (await _sign_up(http, server, auth, email("new"), course)).status_code != 200:
                assert time.monotonic() - started < 30, "the new course never reached the admission state"
                await asyncio.sleep(0.2)
            while (await _sign_up(http, server, auth, email("two"), changed)).status_code != 200:
                assert time.monotonic() - started < 30, "the raised capacity never reached the admission state"
                await asyncio.sleep(0.2)
        finally:
            server.stop()
