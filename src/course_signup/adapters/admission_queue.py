"""Queue mode's hand-off: decision messages on durable RabbitMQ queues, one queue per shard of courses.

Order per course: a course always maps to the same shard (crc32 of its id), and each shard queue has
`x-single-active-consumer`, so however many workers run, one consumes a shard at a time, in queue
order. (The consistent-hash exchange would spread courses too, but it is a plugin, and it does not
stop two workers from consuming one queue at once; single active consumer also gives fail-over.)
Across API processes messages of one course can still reach the queue out of decision order; every
message carries the course's decision sequence number, and the worker writes in that order (see
adapters/admission_state.py, `claim`).

Publishing is persistent with publisher confirms: `publish` returns only once the broker has the
message on disk (or raises). The connection is robust: it reconnects by itself after an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

log = logging.getLogger("course_signup.queue")

QUEUE_PREFIX = "course_signup.admissions."
CONNECT_TIMEOUT_SECONDS = 2.0
RECONNECT_SECONDS = 1.0


class BrokerUnavailableError(RuntimeError):
    """The broker is not connected, or did not confirm a message in time."""


def shard_of(course_id: str, shards: int) -> int:
    return zlib.crc32(course_id.encode()) % shards


def queue_name(shard: int) -> str:
    return f"{QUEUE_PREFIX}{shard}"


class AdmissionQueue:
    """One robust connection and channel (confirms on) to the broker, and the shard queues on it."""

    def __init__(self, url: str, *, shards: int, prefetch: int = 0) -> None:
        self.url = url
        self.shards = shards
        self.prefetch = prefetch
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._connecting: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def open(self, *, wait: bool = False) -> None:
        """Connect in the background (retrying until the broker answers); `wait` for the first success."""
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._connect())
        if wait:
            await self.connected.wait()

    async def _connect(self) -> None:
        reported = False
        while True:
            try:
                connection = await aio_pika.connect_robust(self.url, timeout=CONNECT_TIMEOUT_SECONDS)
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                if self.prefetch:
                    await channel.set_qos(prefetch_count=self.prefetch)
                for shard in range(self.shards):
                    await channel.declare_queue(
                        queue_name(shard), durable=True, arguments={"x-single-active-consumer": True}
                    )
            except (aio_pika.exceptions.AMQPError, OSError, TimeoutError) as exc:
                if not reported:
                    log.warning("broker unavailable: %s; retrying every %.0f s", type(exc).__name__, RECONNECT_SECONDS)
                    reported = True
                await asyncio.sleep(RECONNECT_SECONDS)
                continue
            self._connection, self._channel = connection, channel
            if reported:
                log.warning("broker back")
            self.connected.set()
            return

    @property
    def ready(self) -> bool:
        """Connected now (a robust connection that is reconnecting is not)."""
        channel = self._channel
        return channel is not None and not channel.is_closed and not self._connection.is_closed  # type: ignore[union-attr]

    async def publish(self, course_id: str, body: bytes, *, timeout: float) -> None:
        """Put a decision on its course's queue; returns once the broker confirms it."""
        if not self.ready:
            raise BrokerUnavailableError("not connected")
        await self.publish_to(queue_name(shard_of(course_id, self.shards)), body, timeout=timeout)

    async def publish_to(self, queue: str, body: bytes, *, timeout: float) -> None:
        channel = self._channel
        if channel is None or channel.is_closed:
            raise BrokerUnavailableError("not connected")
        message = aio_pika.Message(
            body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, content_type="application/json"
        )
        try:
            await asyncio.wait_for(channel.default_exchange.publish(message, routing_key=queue), timeout)
        except (aio_pika.exceptions.AMQPError, OSError, TimeoutError, RuntimeError) as exc:
            raise BrokerUnavailableError(type(exc).__name__) from exc

    async def consume(self, callback: Callable[[AbstractIncomingMessage], Awaitable[None]]) -> None:
        """Consume every shard queue (the broker makes this the active consumer of a shard or a standby)."""
        await self.open(wait=True)
        assert self._channel is not None
        for shard in range(self.shards):
            queue = await self._channel.get_queue(queue_name(shard))
            await queue.consume(callback, no_ack=False)

    async def ping(self) -> None:
        if not self.ready:
            raise BrokerUnavailableError("not connected")

    async def close(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
