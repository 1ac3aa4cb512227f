"""Course catalogue cache: a process-local TTL cache; every local write clears it at once."""

from __future__ import annotations

import time
from typing import Any, Protocol

from course_signup.adapters import metrics


class Cache(Protocol):
    def get(self, key: str) -> Any | None: ...
    def put(self, key: str, value: Any) -> None: ...
    def forget_courses(self) -> None: ...


class InProcessCache:
    """Entries live `ttl` seconds, so another process's committed change shows within `ttl`."""

    def __init__(self, ttl: float, *, max_entries: int = 4096) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            metrics.CACHE_MISSES.inc()
            return None
        metrics.CACHE_HITS.inc()
        return entry[1]

    def put(self, key: str, value: Any) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # bounded memory: many distinct cursors cannot grow it forever
        self._entries[key] = (time.monotonic() + self.ttl, value)

    def forget_courses(self) -> None:
        self._entries.clear()
