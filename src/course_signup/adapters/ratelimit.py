"""Rate limits (the `limits` library): shared through Redis when REDIS_URL is set, in-process otherwise."""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from course_signup.settings import Settings

log = logging.getLogger("course_signup.ratelimit")


class RateLimiter:
    """`check(kind, identity)` returns 0 when allowed, else the seconds to wait before retrying."""

    def __init__(self, settings: Settings) -> None:
        if settings.redis_url:
            uri = "async+" + settings.redis_url if not settings.redis_url.startswith("async+") else settings.redis_url
            storage = storage_from_string(uri, implementation="redispy", key_prefix="course-signup-limits")
        else:
            storage = storage_from_string("async+memory://")
        self._limiter = MovingWindowRateLimiter(storage)  # type: ignore[arg-type]
        self._items: dict[str, RateLimitItem] = {
            "write": parse(settings.rate_limit_writes),
            "anonymous": parse(settings.rate_limit_anonymous),
        }

    async def check(self, kind: str, identity: str) -> int:
        item = self._items[kind]
        try:
            if await self._limiter.hit(item, kind, identity):
                return 0
            stats = await self._limiter.get_window_stats(item, kind, identity)
        except Exception:
            # Fail open: a Redis outage must not take sign-ups down with it.
            log.warning("rate limit storage unavailable; request allowed", exc_info=True)
            return 0
        return max(1, math.ceil(stats.reset_time - time.time()))
