"""One Redis connection pool per process, behind a circuit breaker that the cache and the rate limiter share.

Every command has a short deadline and no retry. The first failure opens the breaker: for
`retry_seconds` every caller is told at once that Redis is unavailable (and falls back), then one
command probes it. The log says "Redis unavailable" once when an outage starts and "Redis back" once
when a probe succeeds: one line each, never a traceback per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

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
READY_TIMEOUT_SECONDS = 0.25
LATE_TIMEOUTS_TOLERATED = 2


class RedisUnavailableError(Exception):
    """Redis failed just now, or the breaker is open: use the fallback."""


class RedisLink:
    """The process's Redis client; `run(operation)` is the only way commands reach it."""

    def __init__(self, url: str, *, timeout: float, retry_seconds: float) -> None:
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        # One attempt per command: redis-py's own retries would multiply the deadline during an outage.
        # The socket timeouts are a backstop; run()'s own deadline, which can tell a late loop, comes first.
        self.pool = redis.asyncio.ConnectionPool.from_url(
            url, socket_timeout=2 * timeout, socket_connect_timeout=2 * timeout, retry=Retry(NoBackoff(), 0)
        )
        self.client = redis.asyncio.Redis(connection_pool=self.pool)
        self.outages = 0  # outages so far; an operation remembers the one it started in
        self._down_since: float | None = None
        self._said = False  # "Redis unavailable" is in the log for the current outage
        self._retry_at = 0.0
        self._probing = False
        self._late_timeouts = 0
        self._closing: set[asyncio.Task[None]] = set()

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
            async with asyncio.timeout(self.timeout) as deadline:
                result = await operation()
        except TimeoutError as exc:
            late = asyncio.get_running_loop().time() - (deadline.when() or 0)
            # The deadline fired late: this loop was busy elsewhere, and Redis may well have answered
            # in time. This request falls back; only a run of such timeouts counts against Redis.
            if late > self.timeout / 2 and not probe and self._late_timeouts < LATE_TIMEOUTS_TOLERATED:
                self._late_timeouts += 1
                raise RedisUnavailableError() from exc
            self.lost(exc, outage, probe=probe)
            raise RedisUnavailableError() from exc
        except FAILURES as exc:
            self.lost(exc, outage, probe=probe)
            raise RedisUnavailableError() from exc
        finally:
            if probe:
                self._probing = False
        self._late_timeouts = 0
        if probe:
            self._recovered()
        return result

    async def open(self, *scripts: str) -> None:
        """Connect and load `scripts` before the first request: a cold start may outlast a command's deadline."""
        try:
            async with asyncio.timeout(max(self.timeout, OPEN_TIMEOUT_SECONDS)):
                await self.client.ping()
                for script in scripts:
                    await self.client.script_load(script)
        except FAILURES as exc:
            self.lost(exc, self.outages)
            if not self._said:
                self._say_unavailable(exc)  # a start-up deadline is long enough to be sure

    async def ping(self) -> None:
        """The readiness probe: a real PING whatever the breaker says, with a short deadline of its own."""
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await self.client.ping()

    def lost(self, exc: BaseException, outage: int, *, probe: bool = False) -> None:
        """Record a failure of an operation that began during `outage`; opens the breaker if it is closed.

        A refused or broken connection is an outage at once. A timeout alone may be this process's
        own event loop running late (a long synchronous step), so it opens the breaker quietly and
        the outage is said only when the probe after the cool-down fails too.
        """
        if self._down_since is None:
            if outage != self.outages:
                return  # began before an earlier outage ended: says nothing about now
            self._down_since = time.monotonic()
            self.outages += 1
            # Pooled connections are dead or stuck: drop them all, so recovery starts on fresh ones.
            task = asyncio.get_running_loop().create_task(self._drop_connections())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            if not isinstance(exc, _TIMEOUTS):
                self._say_unavailable(exc)
        elif not probe:
            return  # began before the breaker opened (its connection may just have been dropped)
        elif not self._said:
            self._say_unavailable(exc)
        self._retry_at = time.monotonic() + self.retry_seconds

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
