"""Stored first answers of POSTs that carried an Idempotency-Key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    and_,
    delete,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from course_signup.adapters.repositories._sql import _upsert
from course_signup.domain.models import (
    IdempotencyRecord,
)


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def reserve(
        self, record: IdempotencyRecord, *, expired_before: datetime, abandoned_before: datetime, in_flight: int
    ) -> bool:
        """Insert the key's placeholder; an existing row is taken over only if expired or abandoned."""
        statement = _upsert(self.session)(IdempotencyRecord).values(
            student_id=record.student_id,
            key=record.key,
            fingerprint=record.fingerprint,
            status_code=record.status_code,
            body=record.body,
            created_at=record.created_at,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[IdempotencyRecord.student_id, IdempotencyRecord.key],
            set_={
                "fingerprint": statement.excluded.fingerprint,
                "status_code": statement.excluded.status_code,
                "body": statement.excluded.body,
                "created_at": statement.excluded.created_at,
            },
            where=or_(
                IdempotencyRecord.created_at <= expired_before,
                and_(
                    IdempotencyRecord.status_code == in_flight,
                    IdempotencyRecord.created_at <= abandoned_before,
                ),
            ),
        ).returning(literal(1))
        return (await self.session.execute(statement)).first() is not None

    async def get(self, *, student_id: str, key: str) -> IdempotencyRecord | None:
        return (
            await self.session.execute(
                select(IdempotencyRecord)
                .where(IdempotencyRecord.student_id == student_id, IdempotencyRecord.key == key)
                .execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()

    async def finish(self, *, student_id: str, key: str, status_code: int, body: bytes) -> None:
        await self.session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.student_id == student_id, IdempotencyRecord.key == key)
            .values(status_code=status_code, body=body)
            .execution_options(synchronize_session=False)
        )

    async def remove(self, *, student_id: str, key: str) -> None:
        await self.session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.student_id == student_id, IdempotencyRecord.key == key)
        )

    async def purge(self, *, before: datetime) -> int:
        result = await self.session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at <= before))
        return int(result.rowcount or 0)
