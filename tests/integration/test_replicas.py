"""Read replicas on a real streaming replica: reads served by it, a student's own writes, lag, and a stop.

The test makes its own primary and hot standby (tests/integration/instances.py: initdb, pg_basebackup
-R and pg_ctl, as the postgres user when run as root) in temporary directories on spare ports; the
machine's PostgreSQL is never touched. Pausing the replica's replay (pg_wal_replay_pause) shows
where a read went: a row the primary committed after the pause exists only there, so an answer
without it came from the replica, and one with it from the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from course_signup.adapters import migrations
from course_signup.settings import Settings
from tests.conftest import IN_CI, JWT_SECRET, email, running_app, unique
from tests.integration.instances import (
    PostgresCluster,
    private_postgres,
    private_replica,
    replica_tools_missing,
    required_private_redis,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DATABASE = "signup"
Headers = Callable[[str], dict[str, str]]


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[PostgresCluster, PostgresCluster]]:
    """(primary, replica): a migrated database on a private primary, and a hot standby streaming from it."""
    missing = replica_tools_missing()
    if missing:
        if IN_CI:
            pytest.fail(f"the replica tests need a private primary and replica in CI: {missing}")
        pytest.skip(missing)
    with private_postgres() as primary:
        asyncio.run(_fetch(primary.admin_dsn, f'CREATE DATABASE "{DATABASE}"'))
        migrations.upgrade(Settings(database_url=primary.url(DATABASE)))
        with private_replica(primary) as replica:
            yield primary, replica


def _settings(clusters: tuple[PostgresCluster, PostgresCluster], data_dir: Path, **overrides: Any) -> Settings:
    primary, replica = clusters
    values: dict[str, Any] = {
        "database_url": primary.url(DATABASE),
        "database_replica_urls": [replica.url(DATABASE)],
        "auth_mode": "jwt",
        "jwt_secret": JWT_SECRET,
        "cache_ttl_seconds": 0.0,  # every catalogue read is a miss, so it reaches a database
        "data_dir": data_dir,
    }
    return Settings(**{**values, **overrides})


async def _fetch(dsn: str, sql: str, *args: object) -> Any:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return await connection.fetchval(sql, *args)
    finally:
        await connection.close()


async def _until(check: Callable[[], Awaitable[object]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def _caught_up(clusters: tuple[PostgresCluster, PostgresCluster]) -> None:
    """Wait until the replica has applied everything the primary has written so far."""
    primary, replica = clusters
    position = await _fetch(primary.admin_dsn, "SELECT pg_current_wal_lsn()::text")
    await _until(lambda: _fetch(replica.admin_dsn, "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", position))


@contextlib.asynccontextmanager
async def _replay_paused(replica: PostgresCluster) -> AsyncIterator[None]:
    """The replica keeps answering, but applies nothing the primary commits meanwhile."""
    connection = await asyncpg.connect(replica.admin_dsn, timeout=10)
    try:
        await connection.execute("SELECT pg_wal_replay_pause()")
        await _until(lambda: connection.fetchval("SELECT pg_get_wal_replay_pause_state() = 'paused'"))
        yield
    finally:
        await connection.execute("SELECT pg_wal_replay_resume()")
        await connection.close()


async def _replica_in_ready(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/ready")
    assert response.status_code == 200, response.text  # a replica never makes the service unready
    [replica] = response.json()["data"]["replicas"]
    return replica


async def _state_becomes(client: httpx.AsyncClient, state: str) -> dict[str, Any]:
    async def reached() -> bool:
        return (await _replica_in_ready(client))["state"] == state

    await _until(reached)
    return await _replica_in_ready(client)


async def _students(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> list[str]:
    response = await client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return sorted(item["studentId"] for item in response.json()["data"])


async def _my_courses(client: httpx.AsyncClient, student: str, auth: Headers) -> list[str]:
    response = await client.get(f"/students/{student}/courses", headers=auth(student))
    assert response.status_code == 200, response.text
    return [item["courseId"] for item in response.json()["data"]]


async def _sign_up(client: httpx.AsyncClient, student: str, course: str, auth: Headers) -> None:
    response = await client.post(f"/students/{student}/courses", json={"courseId": course}, headers=auth(student))
    assert response.status_code == 200, response.text


async def test_reads_come_from_the_replica_and_students_read_their_own_writes(
    clusters, tmp_path: Path, auth: Headers, admin_headers: dict[str, str]
):
    _, replica = clusters
    course = unique("R")
    alice, bob, carol = email("alice"), email("bob"), email("carol")
    # A lag limit far above anything this test takes: only the paused replay decides what a replica shows.
    slow = {"replica_max_lag_seconds": 60.0, "replica_read_your_writes_seconds": 60.0}
    primary_only = _settings(clusters, tmp_path / "direct", database_replica_urls=[])
    async with running_app(primary_only) as direct, running_app(_settings(clusters, tmp_path, **slow)) as client:
        created = await direct.post(
            "/courses", json={"courseId": course, "name": "Replication", "capacity": 10}, headers=admin_headers
        )
        assert created.status_code == 201
        await _sign_up(direct, alice, course, auth)
        await _caught_up(clusters)
        assert (await _state_becomes(client, "ok"))["lagSeconds"] is not None
        async with _replay_paused(replica):
            await _sign_up(direct, bob, course, auth)  # on the primary only

            # Nobody here wrote: their reads come from the replica, which has not applied Bob's sign-up.
            classmates = f"/students/{alice}/courses/{course}/classmates"
            assert await _students(client, classmates, auth(alice)) == []
            assert await _students(client, f"/courses/{course}/students", admin_headers) == [alice]
            assert await _students(client, f"/courses/{course}/events", admin_headers) == [alice]
            assert (await client.get(f"/courses/{course}")).json()["data"]["enrolled"] == 1
            assert (await direct.get(f"/courses/{course}")).json()["data"]["enrolled"] == 2

            # Carol signs up here: her own reads go to the primary at once, Alice's still to the replica.
            await _sign_up(client, carol, course, auth)
            assert await _my_courses(client, carol, auth) == [course]
            # The catalogue she goes back to shows her seat taken (it was cached from the replica before).
            assert (await client.get(f"/courses/{course}")).json()["data"]["enrolled"] == 3
            carols = f"/students/{carol}/courses/{course}/classmates"
            assert await _students(client, carols, auth(carol)) == sorted([alice, bob])
            assert await _students(client, classmates, auth(alice)) == []
            dropped = await client.delete(f"/students/{carol}/courses/{course}", headers=auth(carol))
            assert dropped.status_code == 200, dropped.text
            assert await _my_courses(client, carol, auth) == []

            # A registrar's change: the catalogue and the registrar's own reads go to the primary.
            renamed = await client.patch(f"/courses/{course}", json={"name": "Renamed"}, headers=admin_headers)
            assert renamed.status_code == 200, renamed.text
            assert (await client.get(f"/courses/{course}")).json()["data"]["name"] == "Renamed"
            assert await _students(client, f"/courses/{course}/students", admin_headers) == sorted([alice, bob])

        async def alice_sees_bob() -> bool:
            return await _students(client, classmates, auth(alice)) == [bob]

        await _until(alice_sees_bob)  # replay resumed: the replica catches up


async def test_a_write_through_one_process_is_read_back_through_another(
    clusters, tmp_path: Path, auth: Headers, admin_headers: dict[str, str]
):
    """Behind a load balancer the next request may land elsewhere: the mark goes through Redis."""
    _, replica = clusters
    course = unique("X")
    frank, gina = email("frank"), email("gina")
    primary_only = _settings(clusters, tmp_path / "direct", database_replica_urls=[])
    with required_private_redis() as redis_server:
        shared = {
            "redis_url": redis_server.url,
            "replica_max_lag_seconds": 60.0,
            "replica_read_your_writes_seconds": 60.0,
        }
        async with (
            running_app(primary_only) as direct,
            running_app(_settings(clusters, tmp_path / "one", **shared)) as one,
            running_app(_settings(clusters, tmp_path / "two", **shared)) as two,
        ):
            created = await direct.post("/courses", json={"courseId": course, "name": "Two"}, headers=admin_headers)
            assert created.status_code == 201
            await _sign_up(direct, gina, course, auth)
            await _caught_up(clusters)
            await _state_becomes(two, "ok")
            async with _replay_paused(replica):
                await _sign_up(one, frank, course, auth)
                assert await _my_courses(two, frank, auth) == [course]
                franks = f"/students/{frank}/courses/{course}/classmates"
                assert await _students(two, franks, auth(frank)) == [gina]
                # Gina wrote nothing since the pause: her reads there still come from the replica.
                ginas = f"/students/{gina}/courses/{course}/classmates"
                assert await _students(two, ginas, auth(gina)) == []


async def test_a_replica_too_far_behind_is_skipped_and_shown_in_ready(
    clusters, tmp_path: Path, auth: Headers, admin_headers: dict[str, str]
):
    _, replica = clusters
    course = unique("L")
    student = email("dana")
    primary_only = _settings(clusters, tmp_path / "direct", database_replica_urls=[])
    limit = {"replica_max_lag_seconds": 1.0, "replica_read_your_writes_seconds": 1.0}
    async with running_app(primary_only) as direct, running_app(_settings(clusters, tmp_path, **limit)) as client:
        await _caught_up(clusters)
        await _state_becomes(client, "ok")
        async with _replay_paused(replica):
            created = await direct.post("/courses", json={"courseId": course, "name": "Lag"}, headers=admin_headers)
            assert created.status_code == 201
            await _sign_up(direct, student, course, auth)

            lagging = await _state_becomes(client, "lagging")
            assert lagging["lagSeconds"] is None or lagging["lagSeconds"] > 1.0
            # Skipped: reads go to the primary, which has what the paused replica lacks.
            assert (await client.get(f"/courses/{course}")).status_code == 200
            assert await _my_courses(client, student, auth) == [course]
            assert await _students(client, f"/courses/{course}/students", admin_headers) == [student]

        await _state_becomes(client, "ok")
        # With nothing more written, the primary's WAL position stands still and the caught-up replica
        # stays in use: its lag does not grow with the time since the last transaction it replayed.
        await asyncio.sleep(3.0)
        idle = await _replica_in_ready(client)
        assert idle["state"] == "ok" and idle["lagSeconds"] <= 1.0, idle


async def test_a_stopped_replica_sends_reads_to_the_primary_and_ready_names_it(
    clusters, tmp_path: Path, auth: Headers, admin_headers: dict[str, str]
):
    _, replica = clusters
    course = unique("S")
    student = email("erin")
    primary_only = _settings(clusters, tmp_path / "direct", database_replica_urls=[])
    async with running_app(primary_only) as direct, running_app(_settings(clusters, tmp_path)) as client:
        # Written through the other app, so that nobody's reads here go to the primary for having written.
        created = await direct.post("/courses", json={"courseId": course, "name": "Stop"}, headers=admin_headers)
        assert created.status_code == 201
        await _sign_up(direct, student, course, auth)
        await _caught_up(clusters)
        await _state_becomes(client, "ok")
        assert (await client.get("/courses")).status_code == 200  # leaves a replica connection in the pool

        # In a thread, so that this process's event loop runs on meanwhile, as a server's does.
        await asyncio.to_thread(replica.stop)
        try:
            # Every read answers, from the primary: a pooled replica connection is found closed, and
            # a new one does not open (or the background check has already said so).
            assert (await client.get(f"/courses/{course}")).status_code == 200
            assert await _my_courses(client, student, auth) == [course]
            assert await _students(client, f"/courses/{course}/students", admin_headers) == [student]
            down = await _replica_in_ready(client)
            assert down == {"replica": 1, "state": "down", "lagSeconds": None}
        finally:
            await asyncio.to_thread(replica.start)
        await _state_becomes(client, "ok")  # back in use without a restart of the service
        assert (await client.get(f"/courses/{course}")).status_code == 200
