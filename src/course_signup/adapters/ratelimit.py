"""Rate limits (the `limits` library): shared through Redis when REDIS_URL is set, in-process otherwise.

While Redis is unavailable, requests are counted in this process instead (each process then allows
the whole budget), so an outage neither refuses requests nor lifts the limits, and costs a request
at most one short Redis deadline.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from course_signup.adapters.redis_link import RedisLink, RedisUnavailableError
from course_signup.settings import Settings


class RateLimiter:
    """`check(kind, identity)` returns 0 when allowed, else the seconds to wait before retrying."""

    def __init__(self, settings: Settings, link: RedisLink | None = None) -> None:
        self._link = link
        self._local = MovingWindowRateLimiter(storage_from_string("async+memory://"))  # type: ignore[arg-type]
        self._shared: MovingWindowRateLimiter | None = None
        if link is not None and settings.redis_url:
            uri = settings.redis_url if settings.redis_url.startswith("async+") else "async+" + settings.redis_url
            # The link's pool: its deadlines, no retries, and connections dropped when an outage starts.
            storage = storage_from_string(
                uri, implementation="redispy", key_prefix="course-signup-limits", connection_pool=link.pool
            )
            self._shared = MovingWindowRateLimiter(storage)  # type: ignore[arg-type]
        self._items: dict[str, RateLimitItem] = {
            "write": parse(settings.rate_limit_writes),
            "anonymous": parse(settings.rate_limit_anonymous),
        }

    async def check(self, kind: str, identity: str) -> int:
        item = self._items[kind]
        if self._shared is not None and self._link is not None:
            shared = self._shared
            try:
                return await self._link.run(lambda: _wait(shared, item, kind, identity))
            except RedisUnavailableError:
                pass  # the link has said so in the log, once per outage
        return await _wait(self._local, item, kind, identity)


async def _wait(limiter: MovingWindowRateLimiter, item: RateLimitItem, kind: str, identity: str) -> int:
    if await limiter.hit(item, kind, identity):
        return 0
    stats = await limiter.get_window_stats(item, kind, identity)
    return max(1, math.ceil(stats.reset_time - time.time()))
