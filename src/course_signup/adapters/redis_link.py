"""One Redis connection pool per process, behind a circuit breaker that the cache and the rate limiter share.

Every command has a short deadline and no retry. The first failure opens the breaker: for
`retry_seconds` every caller is told at once that Redis is unavailable (and falls back), then one
command probes it. The log says "Redis unavailable" once an outage is certain (a broken connection,
or a timeout that the probe confirms) and "Redis back" when a probe succeeds after it: one line
each, never a traceback per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from course_signup.settings import Settings

log = logging.getLogger("course_signup.redis")

T = TypeVar("T")

# What a broken, stopped or restarting server raises (asyncio's timeout is the built-in TimeoutError).
FAILURES = (RedisError, OSError, TimeoutError)
_TIMEOUTS = (TimeoutError, redis.exceptions.TimeoutError)
OPEN_TIMEOUT_SECONDS = 1.0
BACKSTOP_SECONDS = 5.0
READY_TIMEOUT_SECONDS = 0.25


class RedisUnavailableError(Exception):
    """Redis failed just now, or the breaker is open: use the fallback."""


class RedisLink:
    """The process's Redis client; `run(operation)` is the only way commands reach it."""

    def __init__(self, url: str, *, timeout: float, retry_seconds: float) -> None:
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        # One attempt per command: redis-py's own retries would multiply the deadline during an outage.
        # Its socket timeouts are only a backstop: like asyncio.timeout(), they would cut a command
        # short whenever this loop is busy past them, even with the answer already in the socket.
        self.pool = redis.asyncio.ConnectionPool.from_url(
            url,
            socket_timeout=BACKSTOP_SECONDS,
            socket_connect_timeout=BACKSTOP_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        self.client = redis.asyncio.Redis(connection_pool=self.pool)
        self.outages = 0  # outages so far; an operation remembers the one it started in
        self._down_since: float | None = None
        self._said = False  # "Redis unavailable" is in the log for the current outage
        self._retry_at = 0.0
        self._probing = False
        self._closing: set[asyncio.Future[Any]] = set()  # tasks still finishing after they were given up

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisLink:
        assert settings.redis_url is not None
        return cls(
            settings.redis_url, timeout=settings.redis_timeout_seconds, retry_seconds=settings.redis_retry_seconds
        )

    async def run(self, operation: Callable[[], Awaitable[T]]) -> T:
        """`operation()` within the deadline; RedisUnavailableError, at once while the breaker is open."""
        probe = False
        if self._down_since is not None:
            if self._probing or time.monotonic() < self._retry_at:
                raise RedisUnavailableError()
            self._probing = probe = True
        outage = self.outages
        try:
            result = await self._within(self.timeout, operation)
        except FAILURES as exc:
            self.lost(exc, outage, probe=probe)
            raise RedisUnavailableError() from exc
        finally:
            if probe:
                self._probing = False
        if probe:
            self._recovered()
        return result

    async def _within(self, deadline: float, operation: Callable[[], Awaitable[T]]) -> T:
        # Not asyncio.timeout(): when this loop is busy past the deadline, a timer cancels the command
        # even though its answer is already in the socket. However late the loop comes back here is
        # time the command may have lost too, so it gets that much more, once, before it counts as late.
        loop = asyncio.get_running_loop()
        command = asyncio.ensure_future(operation())
        try:
            due = loop.time() + deadline
            await asyncio.wait({command}, timeout=deadline)
            late = loop.time() - due
            if not command.done() and late > 0:
                await asyncio.wait({command}, timeout=late)
            if not command.done():
                raise TimeoutError()
            return command.result()
        finally:
            if not command.done():
                command.cancel()  # redis-py drops a connection whose command was cut short
                self._closing.add(command)
                command.add_done_callback(self._closing.discard)

    async def open(self, *scripts: str) -> None:
        """Connect and load `scripts` before the first request: a cold start may outlast a command's deadline."""

        async def connect() -> None:
            await self.client.ping()
            for script in scripts:
                await self.client.script_load(script)

        try:
            await self._within(max(self.timeout, OPEN_TIMEOUT_SECONDS), connect)
        except FAILURES as exc:
            self.lost(exc, self.outages)
            if not self._said:
                self._say_unavailable(exc)  # a start-up deadline is long enough to be sure

    async def ping(self) -> None:
        """The readiness probe: a real PING whatever the breaker says, with a short deadline of its own."""
        await self._within(READY_TIMEOUT_SECONDS, self.client.ping)

    def lost(self, exc: BaseException, outage: int, *, probe: bool = False) -> None:
        """Record a failure of an operation that began during `outage`; opens the breaker if it is closed.

        A refused or broken connection is an outage at once. A timeout alone may be a passing stall
        (of this process or of Redis on a busy machine), so it opens the breaker quietly and the
        outage is said only when the probe after the cool-down fails too.
        """
        if self._down_since is None:
            if outage != self.outages:
                return  # began before an earlier outage ended: says nothing about now
            self._down_since = time.monotonic()
            self.outages += 1
        elif not probe:
            return  # began before the breaker opened (its connection may just have been dropped)
        self._retry_at = time.monotonic() + self.retry_seconds
        if isinstance(exc, _TIMEOUTS) and not probe:
            return
        if not self._said:
            self._say_unavailable(exc)
        if not isinstance(exc, _TIMEOUTS):
            # A connection broke, so the idle ones are dead too: drop them all, so that recovery
            # starts on fresh connections instead of failing once more on each stale one.
            task = asyncio.get_running_loop().create_task(self._drop_connections())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _say_unavailable(self, exc: BaseException) -> None:
        self._said = True
        log.warning(
            "Redis unavailable (%s); the catalogue is read from the database and rate limits are "
            "counted in this process until it answers again",
            self._describe(exc),
        )

    def _describe(self, exc: BaseException) -> str:
        if type(exc) is TimeoutError:  # asyncio's deadline, which has no message of its own
            return "no answer before the deadline"
        return f"{type(exc).__name__}: {exc}"

    def _recovered(self) -> None:
        if self._down_since is None:
            return
        if self._said:
            log.warning("Redis back after %.1f s", time.monotonic() - self._down_since)
        self._down_since, self._said = None, False

    async def _drop_connections(self) -> None:
        with contextlib.suppress(*FAILURES):
            await self.pool.disconnect()

    async def close(self) -> None:
        for task in list(self._closing):
            task.cancel()
        await self.client.aclose()
        await self.pool.aclose()
