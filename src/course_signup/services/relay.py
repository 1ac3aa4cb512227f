"""The event relay: every audit event published at least once, in order per course, to `course_signup.events`.

The audit table is the outbox. The relay reads the oldest unpublished events in event_id order,
publishes them, waits for the broker's confirms and only then stamps them published, so a crash
anywhere in between publishes them again (a duplicate, never a loss). Events of one course are
written in commit order (every writer locks the course row first), so the unpublished events of a
course are always a suffix of its history and come out in order even when event ids of different
courses commit out of order. On PostgreSQL one relay per database publishes (an advisory lock held
by its connection); the others stand by and take over when its connection ends. Even two
publishing at once (a leader cut off mid-batch) keep each course's first deliveries in order: a
batch holds a course's events only from the oldest one not yet confirmed onwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from course_signup.adapters.relay import (
    EXCHANGE,
    BrokerUnavailableError,
    EventPublisher,
    OutboxEvent,
    OutboxUnavailableError,
    SqlOutbox,
)
from course_signup.domain.models import utcnow
from course_signup.settings import Settings

log = logging.getLogger("course_signup.relay")

BATCH_SIZE = 500
POLL_SECONDS = 0.2  # an idle relay looks for new events this often: the latency of a quiet period
STANDBY_SECONDS = 1.0  # a standing-by relay asks for the leader lock this often
PUBLISH_TIMEOUT_SECONDS = 10.0
FIRST_RETRY_SECONDS = 0.2
MAX_RETRY_SECONDS = 5.0


class Outbox(Protocol):
    async def try_lead(self) -> bool: ...
    async def unpublished(self, limit: int) -> Sequence[OutboxEvent]: ...
    async def mark_published(self, event_ids: Sequence[int], at: datetime) -> None: ...
    async def close(self) -> None: ...


class Publisher(Protocol):
    async def publish(self, events: Sequence[OutboxEvent]) -> None: ...
    async def close(self) -> None: ...


class _Outage:
    """One line when a dependency fails, one when it is back; the backoff doubles meanwhile."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failures = 0
        self._since: float | None = None

    def down(self, reason: object, *, traceback: bool = False) -> None:
        self.failures += 1
        if self._since is None:
            self._since = time.monotonic()
            log.warning("event relay: %s unavailable (%s); retrying", self.name, reason, exc_info=traceback)

    def up(self) -> None:
        if self._since is not None:
            log.info("event relay: %s back after %.1f s", self.name, time.monotonic() - self._since)
        self._since = None
        self.failures = 0

    def delay(self) -> float:
        return min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(0, self.failures - 1))


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep for `seconds` or until `stop` is set; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


class Relay:
    """The relay loop on any outbox and publisher (the fakes in the unit tests, or EventRelay's)."""

    def __init__(
        self,
        open_outbox: Callable[[], Awaitable[Outbox]],
        connect: Callable[[], Awaitable[Publisher]],
        *,
        batch_size: int = BATCH_SIZE,
        poll_seconds: float = POLL_SECONDS,
        standby_seconds: float = STANDBY_SECONDS,
    ) -> None:
        self._open_outbox = open_outbox
        self._connect = connect
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.standby_seconds = standby_seconds
        self._publisher: Publisher | None = None
        self._database = _Outage("database")
        self._broker = _Outage("broker")
        self._unexpected = _Outage("event relay")

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set. An outage never ends it: logged once, retried with backoff."""
        try:
            while not stop.is_set():
                try:
                    await self._lead(stop)
                except OutboxUnavailableError as exc:
                    self._database.down(exc)
                    await _wait(stop, self._database.delay())
                except Exception as exc:  # a bug must not end the relay silently; logged with its traceback
                    self._unexpected.down(exc, traceback=True)
                    await self._disconnect()
                    await _wait(stop, self._unexpected.delay())
        finally:
            await self._disconnect()

    async def _lead(self, stop: asyncio.Event) -> None:
        """Wait to become the publishing relay, then publish until stopped or the database fails."""
        outbox = await self._open_outbox()
        try:
            standing_by = False
            while not await outbox.try_lead():
                self._database.up()
                if not standing_by:
                    log.info("event relay: another relay is publishing; standing by")
                    standing_by = True
                if await _wait(stop, self.standby_seconds):
                    return
            self._database.up()
            log.info("event relay: publishing to %s", EXCHANGE)
            while not stop.is_set():
                published = await self._publish_batch(outbox, stop)
                if published < self.batch_size and await _wait(stop, self.poll_seconds):
                    return
        finally:
            await outbox.close()

    async def _publish_batch(self, outbox: Outbox, stop: asyncio.Event) -> int:
        """Publish the oldest unpublished events and stamp them once confirmed; how many were published."""
        try:
            publisher = await self._connected()
            events = await outbox.unpublished(self.batch_size)
            self._database.up()
            if events:
                await publisher.publish(events)
        except BrokerUnavailableError as exc:
            self._broker.down(exc)
            await self._disconnect()
            await _wait(stop, self._broker.delay())
            return 0
        self._broker.up()
        self._unexpected.up()
        if events:
            # Only after every confirm: a crash before this line publishes the batch again.
            await outbox.mark_published([event.event_id for event in events], utcnow())
        return len(events)

    async def _connected(self) -> Publisher:
        if self._publisher is None:
            self._publisher = await self._connect()
        return self._publisher

    async def _disconnect(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await publisher.close()


class EventRelay(Relay):
    """The relay from this database's audit events to the broker at `broker_url`."""

    def __init__(
        self,
        broker_url: str,
        engine: AsyncEngine,
        *,
        batch_size: int = BATCH_SIZE,
        poll_seconds: float = POLL_SECONDS,
        standby_seconds: float = STANDBY_SECONDS,
    ) -> None:
        super().__init__(
            partial(SqlOutbox.open, engine),
            partial(EventPublisher.connect, broker_url, timeout=PUBLISH_TIMEOUT_SECONDS),
            batch_size=batch_size,
            poll_seconds=poll_seconds,
            standby_seconds=standby_seconds,
        )

    @classmethod
    def from_settings(cls, settings: Settings, engine: AsyncEngine) -> EventRelay:
        if settings.broker_url is None:
            raise ValueError("the event relay needs BROKER_URL")
        return cls(settings.broker_url, engine)
