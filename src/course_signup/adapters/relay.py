"""The event relay's two ends: the outbox (unpublished audit rows) and the `course_signup.events` exchange."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import orjson
from aio_pika.abc import AbstractExchange, AbstractRobustConnection
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from course_signup.domain.events import event_view
from course_signup.domain.models import CourseEvent

EXCHANGE = "course_signup.events"
ROUTING_PREFIX = "enrollment."
CONNECT_TIMEOUT_SECONDS = 5.0
# The key of the PostgreSQL advisory lock whose holder is the one relay publishing ("cs_relay" in ASCII).
LEADER_LOCK_KEY = 0x63735F72656C6179
# What a stopped, unreachable or closing broker raises.
_BROKER_FAILURES = (AMQPError, ChannelInvalidStateError, OSError, TimeoutError)
_COLUMNS = (
    CourseEvent.event_id,
    CourseEvent.course_id,
    CourseEvent.type,
    CourseEvent.student_id,
    CourseEvent.at,
    CourseEvent.request_id,
)


class OutboxUnavailableError(Exception):
    """The database failed while reading or stamping the outbox."""


class BrokerUnavailableError(Exception):
    """The broker failed, refused or did not confirm in time: nothing may be taken as published."""


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    event_id: int
    course_id: str
    type: str
    student_id: str
    at: datetime
    request_id: str | None


def routing_key(event: OutboxEvent) -> str:
    return ROUTING_PREFIX + event.type


def message_body(event: OutboxEvent) -> dict[str, Any]:
    """The message body: the same object GET /courses/{courseId}/events answers for this event."""
    return event_view(event)


def message(event: OutboxEvent) -> aio_pika.Message:
    return aio_pika.Message(
        orjson.dumps(message_body(event)),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(event.event_id),
        type=event.type,
        timestamp=event.at,
        app_id="course-signup",
    )


def tail_line(body: bytes, key: str) -> str:
    """One line for `course-signup events tail`: type, course, student, time, event id."""
    try:
        event = orjson.loads(body)
        return f"{event['type']:<13} {event['courseId']:<10} {event['studentId']}  {event['at']}  #{event['eventId']}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"{key}: not an enrollment event ({len(body)} bytes)"


def shown(url: str) -> str:
    """The broker URL with its password masked, fit for logs and error messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _reason(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class SqlOutbox:
    """The unpublished audit events, read and stamped on one dedicated connection.

    On PostgreSQL the same connection holds the leader lock, so a relay that loses its connection
    loses the lock with it and cannot stamp anything afterwards.
    """

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    @classmethod
    async def open(cls, engine: AsyncEngine) -> SqlOutbox:
        try:
            return cls(await engine.connect())
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise OutboxUnavailableError(_reason(exc)) from exc

    @property
    def _postgres(self) -> bool:
        return self._connection.dialect.name == "postgresql"

    async def try_lead(self) -> bool:
        """Become the publishing relay of this database, unless another one is (always, on SQLite)."""
        if not self._postgres:
            return True  # the embedded database has one process
        async with self._failures(), self._connection.begin():
            # A session-level lock: it outlives this transaction and ends with the connection.
            return bool(await self._connection.scalar(select(func.pg_try_advisory_lock(LEADER_LOCK_KEY))))

    async def unpublished(self, limit: int) -> list[OutboxEvent]:
        """The oldest unpublished events, in event_id order (the partial index holds only these)."""
        query = select(*_COLUMNS).where(CourseEvent.published_at.is_(None)).order_by(CourseEvent.event_id).limit(limit)
        async with self._failures(), self._connection.begin():
            rows = (await self._connection.execute(query)).all()
        return [OutboxEvent(*row) for row in rows]

    async def mark_published(self, event_ids: Sequence[int], at: datetime) -> None:
        statement = update(CourseEvent).where(CourseEvent.event_id.in_(event_ids)).values(published_at=at)
        async with self._failures(), self._connection.begin():
            await self._connection.execute(statement)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._postgres:
                # The advisory lock belongs to the server session: end it rather than pool it.
                await self._connection.invalidate()
            await self._connection.close()

    @contextlib.asynccontextmanager
    async def _failures(self) -> AsyncIterator[None]:
        try:
            yield
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise OutboxUnavailableError(_reason(getattr(exc, "orig", None) or exc)) from exc


async def declare_exchange(channel: aio_pika.abc.AbstractChannel) -> AbstractExchange:
    return await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)


class EventPublisher:
    """One AMQP connection and a confirming channel on the exchange; any failure means "reconnect"."""

    def __init__(self, connection: aio_pika.abc.AbstractConnection, exchange: AbstractExchange, timeout: float) -> None:
        self._connection = connection
        self._exchange = exchange
        self._timeout = timeout

    @classmethod
    async def connect(cls, url: str, *, timeout: float) -> EventPublisher:
        try:
            connection = await aio_pika.connect(url, timeout=CONNECT_TIMEOUT_SECONDS)
        except _BROKER_FAILURES as exc:
            raise BrokerUnavailableError(_reason(exc)) from exc
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await declare_exchange(channel)
        except _BROKER_FAILURES as exc:
            await connection.close()
            raise BrokerUnavailableError(_reason(exc)) from exc
        return cls(connection, exchange, timeout)

    async def publish(self, events: Sequence[OutboxEvent]) -> None:
        """Publish the events in order; return only once the broker has confirmed every one."""
        # gather() starts the publishes in list order, and each takes the channel's FIFO lock before
        # its first suspension, so the frames leave in event order; the confirms are awaited together.
        try:
            async with asyncio.timeout(self._timeout):
                results = await asyncio.gather(
                    *(self._exchange.publish(message(e), routing_key(e), mandatory=False) for e in events),
                    return_exceptions=True,
                )
        except TimeoutError as exc:
            raise BrokerUnavailableError(f"no confirm within {self._timeout:g} s") from exc
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            # A closing channel may cancel the pending confirms rather than fail them.
            real = [f for f in failures if not isinstance(f, asyncio.CancelledError)]
            raise BrokerUnavailableError(_reason(real[0]) if real else "confirm lost") from (real or failures)[0]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._connection.close()


async def tail(
    url: str, key: str, stop: asyncio.Event, *, show: Callable[[str], None], ready: Callable[[], None]
) -> None:
    """Show a line for each message published to the exchange under `key`, until `stop`, from a queue of our own.

    The queue is exclusive and deleted when the connection ends; after a lost connection it is
    declared again (a robust connection), so the tail goes on but misses what was published meanwhile.
    """
    robust_log = logging.getLogger("aio_pika.robust_connection")
    level = robust_log.level
    robust_log.setLevel(logging.CRITICAL)  # "reconnecting" is wrong for a first connect that fails: ours to say
    try:
        connection: AbstractRobustConnection = await aio_pika.connect_robust(
            url, timeout=CONNECT_TIMEOUT_SECONDS, reconnect_interval=1
        )
    except _BROKER_FAILURES as exc:
        raise BrokerUnavailableError(_reason(exc)) from exc
    finally:
        robust_log.setLevel(level)
    try:
        channel = await connection.channel()
        exchange = await declare_exchange(channel)
        name = f"course_signup.tail.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=key)

        async def shown_line(delivered: aio_pika.abc.AbstractIncomingMessage) -> None:
            show(tail_line(delivered.body, delivered.routing_key or ""))

        await queue.consume(shown_line, no_ack=True)
        ready()
        await stop.wait()
    except _BROKER_FAILURES as exc:
        raise BrokerUnavailableError(_reason(exc)) from exc
    finally:
        await connection.close()
