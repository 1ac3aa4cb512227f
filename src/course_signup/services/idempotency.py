"""Idempotency-Key: the first answer to a POST is kept 24 h and replayed for the same key and body."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from course_signup.domain.errors import IdempotencyKeyInFlightError, IdempotencyKeyReusedError
from course_signup.domain.models import IdempotencyRecord, utcnow
from course_signup.services.unit_of_work import UnitOfWork

KEEP_FOR = timedelta(hours=24)
# A placeholder older than this belongs to a request that died mid-way; its key may be retried.
ABANDONED_AFTER = timedelta(seconds=60)
IN_FLIGHT = 0  # status_code of a placeholder whose answer is not known yet


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status_code: int
    body: bytes


async def claim(uow: UnitOfWork, *, student_id: str, key: str, fingerprint: str) -> StoredAnswer | None:
    """Reserve the key for this request (None), or return the answer stored for it.

    Raises IdempotencyKeyReusedError when the key came with another body, and
    IdempotencyKeyInFlightError while the first request with it is still running.
    """
    now = utcnow()
    placeholder = IdempotencyRecord(
        student_id=student_id, key=key, fingerprint=fingerprint, status_code=IN_FLIGHT, body=b"", created_at=now
    )
    async with uow:
        # INSERT ... ON CONFLICT: concurrent requests with one key cannot both reserve it.
        if await uow.idempotency.reserve(
            placeholder, expired_before=now - KEEP_FOR, abandoned_before=now - ABANDONED_AFTER, in_flight=IN_FLIGHT
        ):
            await uow.commit()
            return None
        record = await uow.idempotency.get(student_id=student_id, key=key)
    if record is None:  # expired and purged between the two statements: reserve again
        return await claim(uow, student_id=student_id, key=key, fingerprint=fingerprint)
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReusedError()
    if record.status_code == IN_FLIGHT:
        raise IdempotencyKeyInFlightError()
    return StoredAnswer(record.status_code, record.body)


async def remember(uow: UnitOfWork, *, student_id: str, key: str, answer: StoredAnswer) -> None:
    """Store the answer for a reserved key."""
    async with uow:
        await uow.idempotency.finish(student_id=student_id, key=key, status_code=answer.status_code, body=answer.body)
        await uow.commit()


async def release(uow: UnitOfWork, *, student_id: str, key: str) -> None:
    """Free a reserved key whose request failed without an answer worth keeping (a 5xx)."""
    async with uow:
        await uow.idempotency.remove(student_id=student_id, key=key)
        await uow.commit()


async def purge_expired(uow: UnitOfWork) -> int:
    """Delete keys older than 24 h; returns how many."""
    async with uow:
        count = await uow.idempotency.purge(before=utcnow() - KEEP_FOR)
        await uow.commit()
    return count
