"""Course catalogue cache: a small per-process tier, and with REDIS_URL a tier shared through Redis behind it.

An entry lives at most `ttl` seconds from the moment the read that built it began, in every tier,
so a committed change shows everywhere within `ttl` (API.md: 1 s) even when an invalidation is lost.
A write clears this process's tier at once. With Redis it also bumps a generation counter that
every shared key carries and announces the bump, so the other processes drop their copies at once
and nobody reads an entry built before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from weakref import WeakKeyDictionary

from redis.exceptions import RedisError

from course_signup.adapters import metrics
from course_signup.adapters.redis_link import FAILURES, RedisLink, RedisUnavailableError


class Cache(Protocol):
    async def get(self, key: str) -> Any | None: ...
    async def put(self, key: str, value: Any) -> None: ...
    def forget_courses(self) -> None: ...

    @property
    def epoch(self) -> int:
        """How many invalidations this process has seen: a read begun under another epoch is stale."""
        ...


@dataclass(frozen=True, slots=True)
class _Miss:
    """What `get` knew when it missed; `put` of the value built afterwards is judged by it."""

    epoch: int
    started: float  # time.monotonic() when the read began: the entry's age counts from here
    generation: bytes | None = None  # the shared generation it was looked up under; None: not shared


class InProcessCache:
    """Entries live `ttl` seconds from the read that built them; a local write clears them at once."""

    def __init__(self, ttl: float, *, max_entries: int = 4096) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Any]] = {}
        # Counts invalidations: a value read before one is never kept after it.
        self._epoch = 0
        self._misses: WeakKeyDictionary[asyncio.Task[Any], dict[str, _Miss]] = WeakKeyDictionary()
        # The earliest expiry of the entries a task was served: what it builds from them expires no later.
        self._served: WeakKeyDictionary[asyncio.Task[Any], float] = WeakKeyDictionary()

    async def get(self, key: str) -> Any | None:
        value = self._local(key)
        if value is None:
            metrics.CACHE_MISSES.inc()
            self._note_miss(key, _Miss(self._epoch, time.monotonic()))
        else:
            metrics.CACHE_HITS.inc()
        return value

    async def put(self, key: str, value: Any) -> None:
        miss = self._take_miss(key)
        if miss.epoch == self._epoch:
            self._keep(key, value, expires=self._expiry(miss))

    def forget_courses(self) -> None:
        self._clear()

    def _local(self, key: str) -> Any | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        self._note_served(entry[0])
        return entry[1]

    def _note_served(self, expires: float) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._served[task] = min(expires, self._served.get(task, expires))

    def _expiry(self, miss: _Miss) -> float:
        """TTL from the read that built the value, and never later than an entry it was built from.

        (A page kept as an HTTP answer may be built from the page kept by the service a moment
        earlier: without this, the answer would outlive the data it shows by up to one TTL.)
        """
        task = asyncio.current_task()
        served = self._served.get(task) if task is not None else None
        expires = miss.started + self.ttl
        return expires if served is None else min(expires, served)

    def _keep(self, key: str, value: Any, *, expires: float) -> None:
        if self.max_entries <= 0 or expires <= time.monotonic():
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # bounded memory: many distinct cursors cannot grow it forever
        self._entries[key] = (expires, value)

    @property
    def epoch(self) -> int:
        return self._epoch

    def _clear(self) -> None:
        self._entries.clear()
        self._epoch += 1

    # A get and the put of the value built after it run in the same task (the request's), so the
    # task tells which miss a put answers, even with many requests for one key in flight.
    def _note_miss(self, key: str, miss: _Miss) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._misses.setdefault(task, {})[key] = miss

    def _take_miss(self, key: str) -> _Miss:
        task = asyncio.current_task()
        misses = self._misses.get(task) if task is not None else None
        miss = misses.pop(key, None) if misses else None
        return miss or _Miss(self._epoch, time.monotonic())


# One round trip: the current generation, and the entry of that generation with its time to live.
_READ = """
local generation = redis.call('GET', KEYS[1]) or '0'
local key = ARGV[1] .. generation .. ':' .. ARGV[2]
local value = redis.call('GET', key)
if not value then return {generation} end
return {generation, value, redis.call('PTTL', key)}
"""
# A generation starts from the clock (in microseconds), so after Redis restarts empty it does not
# repeat one that a process may still be writing an entry for.
_BUMP = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], ARGV[2]) end
local generation = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[3] .. ' ' .. generation)
return generation
"""


class RedisCache(InProcessCache):
    """This process's entries (at most `max_entries`, none when 0) in front of entries shared through Redis.

    Shared entries are bytes (the encoded answers); other values stay in this process. While Redis
    is unavailable, reads miss the shared tier at once and come from the database.
    """

    def __init__(
        self, link: RedisLink, ttl: float, *, max_entries: int = 4096, namespace: str = "course-signup:catalogue"
    ) -> None:
        super().__init__(ttl, max_entries=max_entries)
        self._link = link
        self._generation_key = f"{namespace}:generation"
        self._prefix = f"{namespace}:"
        # Keys live in one database, but channels are server-wide.
        self._channel = f"{namespace}:forget:{link.pool.connection_kwargs.get('db', 0)}"
        self._token = uuid.uuid4().hex.encode()  # marks this process's own announcements
        self._read = link.client.register_script(_READ)
        self._bump = link.client.register_script(_BUMP)
        self._seen: bytes | None = None
        self._bumper: asyncio.Task[None] | None = None
        self._bump_again = False
        self._written = 0.0  # time.monotonic() of this process's last write
        self._blind_until = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self, *, warm: Callable[[], Awaitable[None]] | None = None) -> None:
        """Connect, then listen for other processes' writes and run `warm` once, while the cache is open."""
        await self._link.open(_READ, _BUMP)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen())]
        if warm is not None:
            self._tasks.append(loop.create_task(warm()))

    async def close(self) -> None:
        for task in [*self._tasks, self._bumper]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def get(self, key: str) -> Any | None:
        value = self._local(key)
        if value is None:
            value = await self._get_shared(key)
        (metrics.CACHE_MISSES if value is None else metrics.CACHE_HITS).inc()
        return value

    async def _get_shared(self, key: str) -> bytes | None:
        started, epoch = time.monotonic(), self._epoch
        found = None
        if self.ttl > 0 and self._shared_readable():
            with contextlib.suppress(RedisUnavailableError):
                found = await self._link.run(lambda: self._read(keys=[self._generation_key], args=[self._prefix, key]))
        if found is None:
            self._note_miss(key, _Miss(epoch, started))
            return None
        generation = found[0]
        if generation != self._seen:
            if self._seen is not None:
                self._clear()  # an announcement was missed, or Redis restarted
            self._seen = generation
        if len(found) == 1:
            self._note_miss(key, _Miss(self._epoch, started, generation))
            return None
        value, ttl_ms = found[1], found[2]
        expires = time.monotonic() + min(self.ttl, ttl_ms / 1000)
        self._note_served(expires)
        if self._epoch == epoch:
            self._keep(key, value, expires=expires)
        return value

    async def put(self, key: str, value: Any) -> None:
        miss = self._take_miss(key)
        if miss.epoch != self._epoch:
            return
        expires = self._expiry(miss)
        self._keep(key, value, expires=expires)
        remaining_ms = int((expires - time.monotonic()) * 1000)
        if miss.generation is None or not isinstance(value, bytes) or remaining_ms <= 0:
            return
        shared_key = f"{self._prefix}{miss.generation.decode()}:{key}"
        with contextlib.suppress(RedisUnavailableError):
            await self._link.run(lambda: self._link.client.set(shared_key, value, px=remaining_ms))

    def forget_courses(self) -> None:
        self._clear()
        self._written = time.monotonic()
        self._start_bump()

    def _start_bump(self) -> None:
        self._bump_again = True
        if self._bumper is None or self._bumper.done():
            self._bumper = asyncio.get_running_loop().create_task(self._announce())

    def _shared_readable(self) -> bool:
        # Until this process's own bump lands, shared entries may predate its write: skip them.
        if self._bumper is not None and not self._bumper.done():
            return False
        if time.monotonic() < self._blind_until:
            self._start_bump()  # the last one failed: once it lands, nothing older is read
            return False
        return True

    async def _announce(self) -> None:
        while self._bump_again:
            self._bump_again = False
            try:
                generation = await self._link.run(
                    lambda: self._bump(
                        keys=[self._generation_key], args=[self._channel, time.time_ns() // 1000, self._token]
                    )
                )
            except RedisUnavailableError:
                # The other processes cannot hear of this write; shared entries built before it
                # expire within ttl of it, and until then (or a later bump) this process skips them.
                self._blind_until = self._written + self.ttl
            else:
                self._seen = str(generation).encode()
                self._blind_until = 0.0

    async def _listen(self) -> None:
        while True:
            pubsub = self._link.client.pubsub()
            try:
                await self._link.run(functools.partial(self._subscribe, pubsub))
            except RedisUnavailableError:
                await self._close_quietly(pubsub)
                await asyncio.sleep(self._link.retry_seconds)
                continue
            self._clear()  # announcements may have been missed while not subscribed
            outage = self._link.outages
            try:
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                    if message is None:
                        continue
                    token, _, generation = message["data"].partition(b" ")
                    if token != self._token:
                        self._clear()
                        self._seen = generation
            except FAILURES as exc:
                self._link.lost(exc, outage)
            finally:
                await self._close_quietly(pubsub)

    async def _subscribe(self, pubsub: Any) -> None:
        await pubsub.subscribe(self._channel)
        # subscribe() only sends the command; the confirmation proves that Redis answers (within
        # the deadline that run() puts on this whole exchange).
        confirmation = await pubsub.get_message(timeout=None)
        if confirmation is None or confirmation["type"] != "subscribe":
            raise RedisError(f"unexpected answer to SUBSCRIBE: {confirmation!r}")

    async def _close_quietly(self, pubsub: Any) -> None:
        with contextlib.suppress(*FAILURES):
            async with asyncio.timeout(self._link.timeout):
                await pubsub.aclose()
