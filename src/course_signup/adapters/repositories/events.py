"""The audit trail: appended in the caller's transaction, read by course in id order."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    insert,
    select,
)

from course_signup.adapters.repositories._sql import Executor
from course_signup.domain.models import (
    CourseEvent,
)
from course_signup.domain.pagination import PageRequest


class EventRepository:
    def __init__(self, session: Executor, *, request_id: str | None) -> None:
        self.session = session
        self.request_id = request_id

    async def add(self, *, course_id: str, type: str, student_ids: Sequence[str], at: datetime) -> None:
        """Append one event per student, in the caller's transaction."""
        if not student_ids:
            return
        await self.session.execute(
            insert(CourseEvent),
            [
                {"course_id": course_id, "type": type, "student_id": s, "at": at, "request_id": self.request_id}
                for s in student_ids
            ],
        )

    async def list(self, course_id: str, page: PageRequest) -> Sequence[Row[Any]]:
        query = (
            select(*CourseEvent.__table__.columns)
            .where(CourseEvent.course_id == course_id)
            .order_by(CourseEvent.event_id)
            .limit(page.limit + 1)
        )
        if page.after is not None:
            query = query.where(CourseEvent.event_id > page.after[0])
        return (await self.session.execute(query)).all()
