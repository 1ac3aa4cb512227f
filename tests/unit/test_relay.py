"""The relay loop on fakes of its two ports: order, stamping only after the confirm, outages, one leader."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from course_signup.adapters.relay import (
    BrokerUnavailableError,
    OutboxEvent,
    OutboxUnavailableError,
    message_body,
    routing_key,
    tail_line,
)
from course_signup.api.schemas import event_out
from course_signup.domain.events import EventType
from course_signup.domain.models import CourseEvent
from course_signup.services.relay import Relay

AT = datetime(2026, 11, 25, 8, 0, 0, 123456, tzinfo=UTC)


class Database:
    """The outbox table, the leader lock and the failures to inject, shared by every FakeOutbox."""

    def __init__(self) -> None:
        self.events: dict[int, OutboxEvent] = {}
        self.published_at: dict[int, datetime] = {}
        self.leader: FakeOutbox | None = None
        self.fail_marks = 0  # the next N stamps fail, after the broker has confirmed
        self.down = False

    def add(self, course_id: str, type: str, student_id: str) -> int:
        event_id = len(self.events) + 1
        self.events[event_id] = OutboxEvent(event_id, course_id, type, student_id, AT, f"req-{event_id}")
        return event_id

    def all_published(self) -> bool:
        return set(self.published_at) == set(self.events)


class FakeOutbox:
    def __init__(self, database: Database) -> None:
        self.db = database

    def _check(self) -> None:
        if self.db.down:
            raise OutboxUnavailableError("connection refused")

    async def try_lead(self) -> bool:
        self._check()
        if self.db.leader is None:
            self.db.leader = self
        return self.db.leader is self

    async def unpublished(self, limit: int) -> Sequence[OutboxEvent]:
        self._check()
        waiting = [e for i, e in sorted(self.db.events.items()) if i not in self.db.published_at]
        return waiting[:limit]

    async def mark_published(self, event_ids: Sequence[int], at: datetime) -> None:
        self._check()
        if self.db.fail_marks:
            self.db.fail_marks -= 1
            raise OutboxUnavailableError("server closed the connection")
        for event_id in event_ids:
            self.db.published_at[event_id] = at

    async def close(self) -> None:
        if self.db.leader is self:
            self.db.leader = None


class Broker:
    """What reached the exchange, in order, and the failures to inject."""

    def __init__(self) -> None:
        self.delivered: list[OutboxEvent] = []
        self.fail_publishes = 0
        self.connections = 0

    def first_deliveries(self) -> list[int]:
        seen: dict[int, None] = {}
        for event in self.delivered:
            seen.setdefault(event.event_id, None)
        return list(seen)


class FakePublisher:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.closed = False

    async def publish(self, events: Sequence[OutboxEvent]) -> None:
        if self.closed:
            raise BrokerUnavailableError("channel closed")
        if self.broker.fail_publishes:
            self.broker.fail_publishes -= 1
            self.broker.delivered.extend(events[: len(events) // 2])  # some arrived, none confirmed
            raise BrokerUnavailableError("connection reset")
        self.broker.delivered.extend(events)

    async def close(self) -> None:
        self.closed = True


def relay(database: Database, broker: Broker, **options: float) -> Relay:
    async def open_outbox() -> FakeOutbox:
        return FakeOutbox(database)

    async def connect() -> FakePublisher:
        broker.connections += 1
        return FakePublisher(broker)

    defaults = {"batch_size": 3, "poll_seconds": 0.01, "standby_seconds": 0.01}
    return Relay(open_outbox, connect, **{**defaults, **options})  # type: ignore[arg-type]


async def run_until(relays: Sequence[Relay], done: Callable[[], bool], timeout: float = 5.0) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in relays]
    try:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.005)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def two_courses(database: Database, rounds: int = 4) -> None:
    for n in range(rounds):
        database.add("CS101", EventType.ENROLLED, f"a{n}@example.com")
        database.add("MATH255", EventType.WAITLISTED, f"b{n}@example.com")
        database.add("CS101", EventType.DROPPED, f"a{n}@example.com")


async def test_events_are_published_in_event_order_and_stamped_after_their_confirm():
    database, broker = Database(), Broker()
    two_courses(database)
    await run_until([relay(database, broker)], database.all_published)
    assert [e.event_id for e in broker.delivered] == sorted(database.events)
    assert broker.connections == 1


async def test_a_batch_the_broker_did_not_confirm_stays_unstamped_and_is_published_again(
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO, logger="course_signup.relay")
    database, broker = Database(), Broker()
    two_courses(database)
    broker.fail_publishes = 2
    await run_until([relay(database, broker)], database.all_published)
    assert broker.first_deliveries() == sorted(database.events)
    assert len(broker.delivered) > len(database.events)  # the unconfirmed halves went again
    assert broker.connections == 3  # a failed publisher is closed and a new one connected
    messages = [r.getMessage() for r in caplog.records]
    assert sum("broker unavailable (connection reset)" in m for m in messages) == 1
    assert sum("broker back after" in m for m in messages) == 1


async def test_a_stamp_lost_after_the_confirm_publishes_the_batch_again_and_loses_nothing():
    database, broker = Database(), Broker()
    two_courses(database, rounds=2)
    database.fail_marks = 1
    await run_until([relay(database, broker)], database.all_published)
    assert broker.first_deliveries() == sorted(database.events)
    assert [e.event_id for e in broker.delivered[:6]] == [1, 2, 3, 1, 2, 3]


async def test_a_second_relay_stands_by_until_the_leader_stops_then_takes_over():
    database, broker = Database(), Broker()
    two_courses(database, rounds=1)
    leader, standby = relay(database, broker), relay(database, broker)
    stop_leader, stop_standby = asyncio.Event(), asyncio.Event()
    leading = asyncio.create_task(leader.run(stop_leader))
    async with asyncio.timeout(5):
        while not database.all_published():
            await asyncio.sleep(0.005)
    standing_by = asyncio.create_task(standby.run(stop_standby))
    await asyncio.sleep(0.05)
    assert database.leader is not None
    published_by_leader = len(broker.delivered)
    stop_leader.set()
    await leading
    two_courses(database, rounds=1)
    async with asyncio.timeout(5):
        while not database.all_published():
            await asyncio.sleep(0.005)
    stop_standby.set()
    await standing_by
    assert broker.first_deliveries() == sorted(database.events)
    assert len(broker.delivered) == published_by_leader + 3


async def test_a_database_outage_is_logged_once_and_stop_ends_the_relay_while_it_waits(
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO, logger="course_signup.relay")
    database, broker = Database(), Broker()
    two_courses(database, rounds=1)
    database.down = True
    stop = asyncio.Event()
    task = asyncio.create_task(relay(database, broker).run(stop))
    await asyncio.sleep(0.7)  # several retries
    database.down = False
    async with asyncio.timeout(5):
        while not database.all_published():
            await asyncio.sleep(0.005)
    database.down = True
    await asyncio.sleep(0.05)
    stop.set()
    async with asyncio.timeout(1):
        await task
    messages = [r.getMessage() for r in caplog.records]
    assert sum("database unavailable (connection refused)" in m for m in messages) == 2  # two outages
    assert sum("database back after" in m for m in messages) == 1


def test_the_message_body_is_the_audit_trail_item_and_the_routing_key_names_the_type():
    event = OutboxEvent(42, "CS101", EventType.PROMOTED, "bob@example.com", AT, "req-7")
    row = CourseEvent(event_id=42, course_id="CS101", type="promoted", student_id="bob@example.com", at=AT)
    row.request_id = "req-7"
    assert message_body(event) == event_out(row)
    assert message_body(event)["at"] == "2026-11-25T08:00:00Z"
    assert routing_key(event) == "enrollment.promoted"
    late = OutboxEvent(43, "CS101", EventType.LEFT_WAITLIST, "c@example.com", AT + timedelta(hours=1), None)
    assert routing_key(late) == "enrollment.left_waitlist"
    assert message_body(late)["requestId"] is None


def test_a_tail_line_names_type_course_student_time_and_event_id():
    body = orjson.dumps(message_body(OutboxEvent(42, "CS101", "promoted", "bob@example.com", AT, None)))
    line = tail_line(body, "enrollment.promoted")
    assert line.split() == ["promoted", "CS101", "bob@example.com", "2026-11-25T08:00:00Z", "#42"]
    assert tail_line(b"not json", "enrollment.x") == "enrollment.x: not an enrollment event (8 bytes)"
