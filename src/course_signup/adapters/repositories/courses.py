"""The catalogue's rows: read, list (search, open seats), change and the seat counters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    String,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)

from course_signup.adapters.repositories._sql import Executor, _upsert
from course_signup.domain.errors import CourseNotFoundError
from course_signup.domain.models import (
    Course,
)
from course_signup.domain.pagination import PageRequest


class CourseRepository:
    def __init__(self, session: Executor) -> None:
        self.session = session

    async def get(self, course_id: str, *, for_update: bool = False) -> Course:
        """The course, row-locked until commit when `for_update`; CourseNotFoundError if none."""
        # populate_existing: a re-read inside the transaction sees its own counter updates.
        query = select(Course).where(Course.course_id == course_id).execution_options(populate_existing=True)
        if for_update:
            query = query.with_for_update()
        course = (await self.session.execute(query)).scalar_one_or_none()
        if course is None:
            raise CourseNotFoundError()
        return course

    async def exists(self, course_id: str) -> bool:
        query = select(literal(1)).where(Course.course_id == course_id)
        return (await self.session.execute(query)).first() is not None

    async def list(
        self, page: PageRequest, *, text: str | None = None, available_at: datetime | None = None
    ) -> Sequence[Course]:
        """One page by course id, optionally filtered.

        `text`: the id or the name contains it, in any case; `available_at`: a seat is free and the
        registration window is open at that time (Course.has_seat_free and Course.is_open_at).
        """
        query = select(Course).order_by(Course.course_id).limit(page.limit + 1)
        if page.after is not None:
            query = query.where(Course.course_id > page.after[0])
        if text is not None:
            # lower(column) LIKE lower(pattern) is what the trigram indexes (migration 0002) answer. The
            # pattern is written into the SQL as a quoted literal, not bound: after five runs of one
            # prepared statement PostgreSQL may switch to a generic plan, which cannot see the pattern
            # and walks the primary key instead of the indexes.
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = func.lower(literal(f"%{escaped}%", String(), literal_execute=True))
            query = query.where(
                or_(
                    func.lower(Course.course_id).like(pattern, escape="\\"),
                    func.lower(Course.name).like(pattern, escape="\\"),
                )
            )
        if available_at is not None:
            query = query.where(Course.has_seat_free, Course.is_open_at(available_at))
        return (await self.session.execute(query)).scalars().all()

    async def adjust_counters(
        self, course_id: str, *, enrolled: int = 0, waitlisted: int = 0, tickets: int = 0, at: datetime
    ) -> None:
        """Add to the course's counters; `tickets` waitlist tickets were handed out."""
        await self.session.execute(
            update(Course)
            .where(Course.course_id == course_id)
            .values(
                enrolled=Course.enrolled + enrolled,
                waitlisted=Course.waitlisted + waitlisted,
                waitlist_seq=Course.waitlist_seq + tickets,
                updated_at=at,
            )
            .execution_options(synchronize_session=False)
        )

    async def add(self, course: Course) -> bool:
        """Insert a new course; False if one with that id exists."""
        values = {
            column.key: getattr(course, column.key)
            for column in Course.__table__.columns
            if getattr(course, column.key) is not None
        }
        result = await self.session.execute(
            _upsert(self.session)(Course)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Course.course_id])
            .returning(Course.course_id)
        )
        return result.first() is not None

    async def change(self, course_id: str, values: dict[str, Any]) -> None:
        await self.session.execute(
            update(Course)
            .where(Course.course_id == course_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    async def remove(self, course_id: str) -> None:
        await self.session.execute(delete(Course).where(Course.course_id == course_id))
