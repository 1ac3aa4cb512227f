"""Queue admission in tests: a Redis and a RabbitMQ vhost of the test's own, a worker, and "wait until written"."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import redis

from tests.integration.instances import RabbitVhost, RedisServer, private_vhost, required_private_redis
from tests.integration.servers import Worker, start_worker


@dataclass
class QueueMode:
    """Settings for `serve` and `worker` in queue mode, on this test's own Redis server and vhost."""

    database_url: str
    redis: RedisServer
    vhost: RabbitVhost
    data_dir: Path
    extra: dict[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {
            "COURSE_SIGNUP_ADMISSION": "queue",
            "COURSE_SIGNUP_REDIS_URL": self.redis.url,
            "COURSE_SIGNUP_BROKER_URL": self.vhost.url,
            **self.extra,
        }

    def start_worker(self) -> Worker:
        worker = start_worker(self.database_url, self.data_dir, **self.env)
        self.workers.append(worker)
        return worker

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url)

    async def written(self, courses: Iterable[str], *, timeout: float = 60) -> None:
        """Wait until the worker has written every decision taken so far for these courses."""
        client = self.client()
        dsn = self.database_url.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(dsn)
        deadline = time.monotonic() + timeout
        try:
            for course in courses:
                while True:
                    decided = int(client.hget(f"csq:c:{course}", "seq") or 0)
                    pending = client.hlen(f"csq:p:{course}")
                    applied = await connection.fetchval(
                        "SELECT applied_seq FROM admission_progress WHERE course_id = $1", course
                    )
                    if pending == 0 and (applied or 0) >= decided:
                        break
                    assert time.monotonic() < deadline, f"{course}: {decided} decided, {applied} written"
                    await asyncio.sleep(0.05)
        finally:
            await connection.close()
            client.close()


@contextlib.contextmanager
def queue_mode(database_url: str, data_dir: Path, **extra: str) -> Iterator[QueueMode]:
    """Queue mode's servers for one test or module, with one worker running; all removed afterwards."""
    with required_private_redis() as server, private_vhost() as vhost:
        mode = QueueMode(database_url, server, vhost, data_dir, dict(extra))
        mode.start_worker()
        try:
            yield mode
        finally:
            for worker in mode.workers:
                worker.stop()
