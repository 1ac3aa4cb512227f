"""Fault drills, small form: PostgreSQL restarted under load, Redis stopped, an API process killed.

Each drill breaks only a server it started itself (tests/integration/instances.py): a private
PostgreSQL cluster or redis-server on a spare port. The machine's own servers are never touched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from course_signup.adapters import migrations
from course_signup.settings import Settings
from tests.conftest import IN_CI, email, unique
from tests.integration.instances import postgres_tools_missing, private_postgres, private_redis
from tests.integration.servers import start_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# CI runs the small form; `make fault-drills` raises these for the full drill.
CLIENTS = int(os.environ.get("FAULT_DRILL_CLIENTS", "8"))
LOAD_BEFORE_SECONDS = float(os.environ.get("FAULT_DRILL_LOAD_SECONDS", "1.5"))


def _require_postgres_tools() -> None:
    missing = postgres_tools_missing()
    if missing:
        if IN_CI:
            pytest.fail(f"the fault drills need a private PostgreSQL cluster in CI: {missing}")
        pytest.skip(missing)


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        if IN_CI:
            pytest.fail(f"{tool} is needed for the fault drills in CI")
        pytest.skip(f"{tool} not installed")


async def _wait_until(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await check():
                return
        except Exception:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def drill_cluster() -> Iterator[tuple[object, str]]:
    """A private PostgreSQL cluster with a migrated database: (cluster, SQLAlchemy URL)."""
    _require_postgres_tools()
    with private_postgres() as cluster:

        async def create() -> None:
            connection = await asyncpg.connect(cluster.admin_dsn)
            try:
                await connection.execute('CREATE DATABASE "drill"')
            finally:
                await connection.close()

        asyncio.run(create())
        url = cluster.url("drill")
        migrations.upgrade(Settings(database_url=url))
        yield cluster, url


async def test_postgres_restart_under_load_loses_no_acknowledged_sign_up(
    drill_cluster, tmp_path: Path, admin_headers, auth
):
    cluster, postgres_url = drill_cluster
    server = start_server(postgres_url, tmp_path, COURSE_SIGNUP_DB_POOL_TIMEOUT="1")
    answers: list[tuple[str, int]] = []
    stop = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            course = unique("DRILL")
            created = await http.post(
                "/courses", json={"courseId": course, "name": "Drill", "capacity": 100000}, headers=admin_headers
            )
            assert created.status_code == 201

            async def student_stream() -> None:
                while not stop.is_set():
                    student = email("drill")
                    response = await http.post(
                        f"/students/{student}/courses", json={"courseId": course}, headers=auth(student)
                    )
                    answers.append((student, response.status_code))
                    if response.status_code == 503:
                        assert response.headers["Retry-After"]
                        await asyncio.sleep(0.05)

            load = [asyncio.create_task(student_stream()) for _ in range(CLIENTS)]
            await asyncio.sleep(LOAD_BEFORE_SECONDS)
            restarted = time.monotonic()
            await asyncio.to_thread(cluster.restart)
            recovered_at = len(answers)

            async def recovered() -> bool:
                return any(status == 200 for _, status in answers[recovered_at:])

            # The API process is never restarted: it must find the database again by itself.
            await _wait_until(recovered, timeout=30)
            recovery_seconds = time.monotonic() - restarted
            await asyncio.sleep(LOAD_BEFORE_SECONDS)
            stop.set()
            await asyncio.gather(*load)
            ready = await http.get("/ready")
    finally:
        stop.set()
        server.stop()

    statuses = Counter(status for _, status in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] > 0
    assert ready.status_code == 200
    connection = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        stored = {
            r["student_id"]
            for r in await connection.fetch("SELECT student_id FROM enrollments WHERE course_id = $1", course)
        }
        enrolled = await connection.fetchval("SELECT enrolled FROM courses WHERE course_id = $1", course)
    finally:
        await connection.close()
    acknowledged = {student for student, status in answers if status == 200}
    print(
        f"\nfault drill, PostgreSQL restart: {CLIENTS} clients, answers {dict(statuses)}, "
        f"first 200 again {recovery_seconds:.1f} s after the restart began, "
        f"acknowledged {len(acknowledged)}, stored {len(stored)}, lost {len(acknowledged - stored)}"
    )
    assert acknowledged <= stored, f"lost: {sorted(acknowledged - stored)[:5]}"
    assert enrolled == len(stored)
    # a 503 leaves nothing half done: stored rows are acknowledged ones, or ones whose answer was lost
    # with a dropped connection (the commit can land just as the server goes down)
    assert len(stored - acknowledged) <= statuses[503]


async def test_sign_ups_and_catalogue_keep_answering_from_the_database_when_redis_dies(
    postgres_url: str, tmp_path: Path, admin_headers, auth
):
    _require("redis-server")
    with private_redis() as redis_server:
        server = start_server(
            postgres_url,
            tmp_path,
            COURSE_SIGNUP_REDIS_URL=redis_server.url,
            COURSE_SIGNUP_RATE_LIMIT_ENABLED="true",
        )
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                course = unique("NOREDIS")
                await http.post("/courses", json={"courseId": course, "name": "x"}, headers=admin_headers)
                assert (await http.get("/ready")).status_code == 200
                redis_server.kill()
                student = email("noredis")
                signed = await http.post(
                    f"/students/{student}/courses", json={"courseId": course}, headers=auth(student)
                )
                listed = await http.get("/courses")
                ready = await http.get("/ready")
        finally:
            server.stop()
    assert signed.status_code == 200
    assert listed.status_code == 200
    assert ready.status_code == 503 and "redis" in ready.json()["data"]


async def test_killing_one_api_process_leaves_the_other_serving(postgres_url: str, tmp_path: Path, admin_headers, auth):
    first, second = start_server(postgres_url, tmp_path), start_server(postgres_url, tmp_path)
    try:
        first.kill()
        async with httpx.AsyncClient(base_url=second.url, timeout=30) as http:
            course = unique("SURVIVOR")
            assert (
                await http.post("/courses", json={"courseId": course, "name": "x"}, headers=admin_headers)
            ).status_code == 201
            student = email("survivor")
            response = await http.post(f"/students/{student}/courses", json={"courseId": course}, headers=auth(student))
    finally:
        first.stop()
        second.stop()
    assert response.status_code == 200
