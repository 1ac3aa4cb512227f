"""The event relay on real PostgreSQL (or SQLite) and RabbitMQ: every event at least once, in order per course.

Each test has its own database and its own RabbitMQ vhost. Events come from the real use cases;
a durable queue bound to the exchange before the relay starts keeps everything published, also
across closed connections, and is read at the end. "In order per course" is judged on the first
delivery of each event id: an at-least-once relay may repeat a batch, and a consumer drops an id
it has seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import aio_pika
import asyncpg
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from course_signup.adapters import database, migrations
from course_signup.adapters.relay import declare_exchange
from course_signup.services import courses, enrollments
from course_signup.services.relay import EventRelay
from course_signup.services.unit_of_work import SqlAlchemyUnitOfWork
from course_signup.settings import Settings
from tests.conftest import IN_CI, PG_ADMIN_DSN, email, unique
from tests.fakes import FakeCache
from tests.integration.instances import RabbitVhost, private_vhost

pytestmark = pytest.mark.postgres

PG_BASE = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
QUEUE = "relay-test"
LEADING, STANDING_BY = "event relay: publishing to", "event relay: another relay is publishing; standing by"
ALL_TYPES = {"enrolled", "waitlisted", "promoted", "dropped", "left_waitlist"}


@pytest.fixture
def vhost() -> Iterator[RabbitVhost]:
    with private_vhost() as own:
        yield own


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture
def database_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own, migrated, dropped afterwards."""
    name = f"course_signup_relay_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    url = f"{PG_BASE}/{name}"
    try:
        migrations.upgrade(Settings(database_url=url))
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.asynccontextmanager
async def engine_for(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = database.create_engine(settings)
    try:
        yield engine
    finally:
        await engine.dispose()


async def history(engine: AsyncEngine) -> str:
    """A one-seat course through all five kinds of event, by the use cases the API calls."""
    uow, cache = SqlAlchemyUnitOfWork(database.create_sessions(engine)), FakeCache()
    course, a, b, c = unique("RELAY"), email("a"), email("b"), email("c")
    await courses.create_course(uow, cache, course_id=course, name="Relay", capacity=1)
    await enrollments.sign_up(uow, cache, student_id=a, course_id=course, waitlist=False)  # enrolled
    await enrollments.sign_up(uow, cache, student_id=b, course_id=course, waitlist=True)  # waitlisted
    await enrollments.sign_up(uow, cache, student_id=c, course_id=course, waitlist=True)  # waitlisted
    await enrollments.drop(uow, cache, student_id=c, course_id=course)  # left_waitlist
    await enrollments.drop(uow, cache, student_id=a, course_id=course)  # dropped, promoted b
    await enrollments.drop(uow, cache, student_id=b, course_id=course)  # dropped
    return course


@contextlib.asynccontextmanager
async def producing(engine: AsyncEngine, lanes: int = 3) -> AsyncIterator[None]:
    """Histories on `lanes` courses at a time, so event ids of different courses interleave, until the block ends."""
    stop = asyncio.Event()

    async def lane() -> None:
        while not stop.is_set():
            await history(engine)

    tasks = [asyncio.create_task(lane()) for _ in range(lanes)]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


@contextlib.asynccontextmanager
async def relaying(url: str, engine: AsyncEngine) -> AsyncIterator[EventRelay]:
    relay = EventRelay(url, engine, poll_seconds=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield relay
    finally:
        stop.set()
        await task


async def bind_queue(url: str) -> None:
    """A durable queue on every enrollment key: it keeps what is published until the test reads it."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await declare_exchange(channel)
        queue = await channel.declare_queue(QUEUE, durable=True)
        await queue.bind(exchange, routing_key="enrollment.#")


async def drain(url: str) -> list[AbstractIncomingMessage]:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(QUEUE)
        messages = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            messages.append(message)
    return messages


async def stamped(engine: AsyncEngine, *, at_least: int = 1, timeout: float = 30) -> None:
    """Wait until at least `at_least` events exist and none is unpublished (or at least that many are stamped)."""
    async with asyncio.timeout(timeout):
        while True:
            async with engine.connect() as connection:
                total, waiting = (
                    await connection.execute(
                        text("SELECT count(*), count(*) FILTER (WHERE published_at IS NULL) FROM course_events")
                        if connection.dialect.name == "postgresql"
                        else text("SELECT count(*), sum(published_at IS NULL) FROM course_events")
                    )
                ).one()
            if total >= at_least and not waiting:
                return
            await asyncio.sleep(0.05)


async def stamped_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text("SELECT count(*) FROM course_events WHERE published_at IS NOT NULL")))


async def assert_delivered_in_order(engine: AsyncEngine, messages: list[AbstractIncomingMessage]) -> dict[str, int]:
    """Every event delivered, its first delivery in order within its course, each as the audit row says.

    Returns how many events of each type there were.
    """
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT event_id, course_id, type, student_id, at, request_id FROM course_events ORDER BY event_id"
                )
            )
        ).all()
    by_id = {row.event_id: row for row in rows}
    first: dict[int, AbstractIncomingMessage] = {}
    for message in messages:
        first.setdefault(int(message.message_id or 0), message)
    assert sorted(first) == sorted(by_id), f"missing: {sorted(set(by_id) - set(first))[:10]}"
    per_course: dict[str, list[int]] = {}
    for event_id, message in first.items():
        row, body = by_id[event_id], orjson.loads(message.body)
        per_course.setdefault(row.course_id, []).append(event_id)
        assert body["eventId"] == event_id
        assert (body["courseId"], body["type"], body["studentId"]) == (row.course_id, row.type, row.student_id)
        assert body["requestId"] == row.request_id
        moment = row.at if isinstance(row.at, datetime) else datetime.fromisoformat(row.at)
        assert body["at"] == moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert message.routing_key == f"enrollment.{row.type}"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.content_type == "application/json"
    for course_id, ids in per_course.items():
        assert ids == sorted(ids), f"{course_id} out of order: {ids}"
    types: dict[str, int] = {}
    for row in rows:
        types[row.type] = types.get(row.type, 0) + 1
    return types


async def test_every_kind_of_event_is_delivered_in_order_per_course(database_url: str, vhost: RabbitVhost):
    await bind_queue(vhost.url)
    async with engine_for(Settings(database_url=database_url)) as engine:
        async with relaying(vhost.url, engine):
            await asyncio.gather(*(history(engine) for _ in range(4)))  # four courses at once
            await stamped(engine, at_least=4 * 7)
        messages = await drain(vhost.url)
        types = await assert_delivered_in_order(engine, messages)
    assert set(types) == ALL_TYPES
    assert types == {"enrolled": 4, "waitlisted": 8, "left_waitlist": 4, "dropped": 8, "promoted": 4}


@pytest.fixture
def embedded(tmp_path: Path) -> Settings:
    """A migrated embedded SQLite database of this test's own."""
    settings = Settings(data_dir=tmp_path)
    migrations.upgrade(settings)
    return settings


async def test_the_relay_works_on_the_embedded_sqlite_database(embedded: Settings, vhost: RabbitVhost):
    await bind_queue(vhost.url)
    async with engine_for(embedded) as engine:
        await history(engine)  # written before the relay starts: the backlog goes first
        async with relaying(vhost.url, engine):
            await history(engine)
            await stamped(engine, at_least=14)
        types = await assert_delivered_in_order(engine, await drain(vhost.url))
    assert sum(types.values()) == 14


def relay_process(database_url: str, vhost: RabbitVhost, log: Path) -> subprocess.Popen[bytes]:
    """`course-signup relay` as an operator runs it, logging to `log`."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COURSE_SIGNUP_")},
        "COURSE_SIGNUP_DATABASE_URL": database_url,
        "COURSE_SIGNUP_BROKER_URL": vhost.url,
        "COURSE_SIGNUP_DATA_DIR": str(log.parent),
    }
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "course_signup", "relay"], env=environment, stdout=sink, stderr=subprocess.STDOUT
        )


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)


async def grows(engine: AsyncEngine, beyond: int, timeout: float = 30) -> int:
    """Wait until more than `beyond` events are stamped; returns how many are."""
    async with asyncio.timeout(timeout):
        while (count := await stamped_count(engine)) <= beyond:
            await asyncio.sleep(0.05)
    return count


async def test_a_relay_killed_mid_way_and_restarted_loses_nothing(
    database_url: str, vhost: RabbitVhost, tmp_path: Path
):
    await bind_queue(vhost.url)
    log = tmp_path / "relay.log"
    relays: list[subprocess.Popen[bytes]] = []
    async with engine_for(Settings(database_url=database_url)) as engine:
        try:
            async with producing(engine):
                relays.append(relay_process(database_url, vhost, log))
                before_kill = await grows(engine, 20)
                kill(relays[0])  # SIGKILL mid-stream: what it published but had not stamped goes again
                await asyncio.sleep(0.3)  # events keep coming while no relay runs
                relays.append(relay_process(database_url, vhost, log))
                await grows(engine, before_kill + 20)
            await stamped(engine)
            relays[1].terminate()
            assert relays[1].wait(timeout=10) == 0, log.read_text()
        finally:
            for process in relays:
                kill(process)
        await assert_delivered_in_order(engine, await drain(vhost.url))
    assert "Traceback" not in log.read_text()


async def test_two_relays_at_once_one_publishes_the_other_takes_over_when_it_dies(
    database_url: str, vhost: RabbitVhost, tmp_path: Path
):
    await bind_queue(vhost.url)
    logs = [tmp_path / "relay-1.log", tmp_path / "relay-2.log"]
    relays: list[subprocess.Popen[bytes]] = []
    async with engine_for(Settings(database_url=database_url)) as engine:
        try:
            async with producing(engine):
                relays = [relay_process(database_url, vhost, log) for log in logs]
                before_kill = await grows(engine, 20)
                async with asyncio.timeout(10):
                    while not all(LEADING in log.read_text() or STANDING_BY in log.read_text() for log in logs):
                        await asyncio.sleep(0.05)
                leader = next(n for n, log in enumerate(logs) if LEADING in log.read_text())
                other = 1 - leader
                assert STANDING_BY in logs[other].read_text()
                kill(relays[leader])
                await grows(engine, before_kill + 20)
            await stamped(engine)
            assert LEADING in logs[other].read_text()
        finally:
            for process in relays:
                kill(process)
        await assert_delivered_in_order(engine, await drain(vhost.url))


async def test_the_relay_recovers_by_itself_when_the_broker_closes_its_connections(
    database_url: str, vhost: RabbitVhost, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="course_signup.relay")
    await bind_queue(vhost.url)
    async with engine_for(Settings(database_url=database_url)) as engine:
        async with relaying(vhost.url, engine):
            await history(engine)
            await stamped(engine, at_least=7)
            await asyncio.to_thread(vhost.close_connections)
            await asyncio.gather(history(engine), history(engine))
            await stamped(engine, at_least=21)
        await assert_delivered_in_order(engine, await drain(vhost.url))
    said = [r.getMessage() for r in caplog.records if r.name == "course_signup.relay"]
    assert sum("broker unavailable" in line for line in said) == 1, said
    assert sum("broker back after" in line for line in said) == 1, said


async def test_the_relay_recovers_by_itself_when_its_database_connection_is_cut(
    database_url: str, vhost: RabbitVhost, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="course_signup.relay")
    await bind_queue(vhost.url)
    name = database_url.rsplit("/", 1)[1]
    async with engine_for(Settings(database_url=database_url)) as engine:
        async with relaying(vhost.url, engine):
            await history(engine)
            await stamped(engine, at_least=7)
            # Every session on this test's own database ends, the relay's (and its leader lock) with them.
            await _admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
            await engine.dispose()  # the pool's connections were cut too
            await history(engine)
            await stamped(engine, at_least=14)
        await assert_delivered_in_order(engine, await drain(vhost.url))
    said = [r.getMessage() for r in caplog.records if r.name == "course_signup.relay"]
    assert sum("database unavailable" in line for line in said) == 1, said
    assert sum("database back after" in line for line in said) == 1, said


def cli_environment(**settings: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("COURSE_SIGNUP_")}, **settings}


async def test_events_tail_prints_a_line_for_each_event_as_it_is_published(
    database_url: str, vhost: RabbitVhost, tmp_path: Path
):
    tail = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "course_signup",
        "events",
        "tail",
        "--key",
        "enrollment.promoted",
        env=cli_environment(COURSE_SIGNUP_BROKER_URL=vhost.url),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert tail.stdout is not None and tail.stderr is not None
        ready = b""
        async with asyncio.timeout(30):
            while b"showing course_signup.events events matching enrollment.promoted" not in ready:
                ready = await tail.stderr.readline()
                assert ready, "events tail ended before it was ready"
        async with engine_for(Settings(database_url=database_url)) as engine, relaying(vhost.url, engine):
            course = await history(engine)
            async with asyncio.timeout(30):
                line = (await tail.stdout.readline()).decode()
            async with engine.connect() as connection:
                promoted = (
                    await connection.execute(
                        text("SELECT event_id, student_id FROM course_events WHERE type = 'promoted'")
                    )
                ).one()
        assert line.split()[:3] == ["promoted", course, promoted.student_id]
        assert line.split()[4] == f"#{promoted.event_id}"
        tail.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            rest, errors = await tail.communicate()
        assert tail.returncode == 0, errors
        assert rest == b""  # only the promotion matched the key
        assert b"Traceback" not in errors
    finally:
        if tail.returncode is None:
            tail.kill()
            await tail.wait()


@pytest.mark.parametrize("command", [["relay"], ["events", "tail"]])
def test_relay_and_tail_without_a_broker_url_say_so_in_one_line(command: list[str], tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "course_signup", *command],
        env=cli_environment(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"course-signup: {' '.join(command)} needs COURSE_SIGNUP_BROKER_URL (amqp://user:password@host:5672/)"
    ]
