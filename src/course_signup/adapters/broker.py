"""RabbitMQ, where BROKER_URL is configured: this release only checks that it answers (for /ready)."""

from __future__ import annotations

import aio_pika

CONNECT_TIMEOUT_SECONDS = 2.0


async def ping(url: str) -> None:
    """Open and close an AMQP connection; raises if the broker does not answer in time."""
    connection = await aio_pika.connect(url, timeout=CONNECT_TIMEOUT_SECONDS)
    await connection.close()
