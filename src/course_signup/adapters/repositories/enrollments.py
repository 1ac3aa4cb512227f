"""Enrollments: admission (one statement, or steps on SQLite), drops, promotions, and the read models."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from course_signup.adapters.repositories._sql import Executor, _is_postgres, _is_unique_violation, _upsert
from course_signup.adapters.repositories.admission import _ADMIT, _verdict
from course_signup.adapters.repositories.courses import CourseRepository
from course_signup.domain.admission import Admission, AdmissionRequest, decide, status_of
from course_signup.domain.models import (
    STATUS_ENROLLED,
    STATUS_WAITLISTED,
    Course,
    CourseEvent,
    Enrollment,
)
from course_signup.domain.pagination import PageRequest

_ENROLLMENT_COLUMNS = (
    Enrollment.student_id,
    Enrollment.course_id,
    Enrollment.status,
    Enrollment.waitlist_seq,
    Enrollment.created_at,
)


@functools.cache
def _student_courses_statement(with_status: bool, with_after: bool) -> Any:
    """A student's courses with each waitlist position; built once per shape (aliasing is costly)."""
    ahead = aliased(Enrollment)
    position = (
        select(func.count())
        .where(
            ahead.course_id == Enrollment.course_id,
            ahead.status == STATUS_WAITLISTED,
            ahead.waitlist_seq <= Enrollment.waitlist_seq,
        )
        .correlate(Enrollment)
        .scalar_subquery()
    )
    query = (
        select(
            Enrollment.student_id,
            Enrollment.course_id,
            Course.name,
            Course.lessons,
            Enrollment.status,
            Enrollment.created_at,
            position.label("position"),
        )
        .join(Course, Course.course_id == Enrollment.course_id)
        .where(Enrollment.student_id == bindparam("p_student"))
        .order_by(Enrollment.course_id)
        .limit(bindparam("p_limit"))
    )
    if with_status:
        query = query.where(Enrollment.status == bindparam("p_status"))
    if with_after:
        query = query.where(Enrollment.course_id > bindparam("p_after"))
    return query


class EnrollmentRepository:
    def __init__(self, session: Executor) -> None:
        self.session = session

    async def admit(
        self, course_id: str, requests: Sequence[AdmissionRequest], *, at: datetime
    ) -> list[Admission] | None:
        """Decide and write a batch of sign-ups (one per student), in order: all of it, or nothing.

        None means a concurrent sign-up of one of these students committed while the statement
        waited for the course: nothing was written, and the batch should simply run again.
        """
        if not _is_postgres(self.session):
            return await self._admit_in_steps(course_id, requests, at=at)
        params = {
            "p_course": course_id,
            "p_at": at,
            "p_students": [r.student_id for r in requests],
            "p_waitlist": [r.waitlist for r in requests],
            "p_requests": [r.request_id for r in requests],
        }
        try:
            # Core execution on the session's connection: built once, no ORM bookkeeping.
            connection = await self.session.connection()
            rows = (await connection.execute(_ADMIT, params)).all()
        except IntegrityError as exc:
            if _is_unique_violation(exc, "uq_enrollments_course_id_student_id"):
                return None
            raise
        return [_verdict(row, at) for row in rows]

    async def _admit_in_steps(
        self, course_id: str, requests: Sequence[AdmissionRequest], *, at: datetime
    ) -> list[Admission]:
        """SQLite: the same decision in Python, inside the transaction's write lock (BEGIN IMMEDIATE)."""
        course = (
            await self.session.execute(
                select(Course).where(Course.course_id == course_id).execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()
        students = [r.student_id for r in requests]
        existing = {
            row.student_id: row.status
            for row in await self.session.execute(
                select(Enrollment.student_id, Enrollment.status).where(
                    Enrollment.course_id == course_id, Enrollment.student_id.in_(students)
                )
            )
        }
        answers = decide(course, requests, existing=existing, at=at)
        written = [(r, a, status_of(a.verdict)) for r, a in zip(requests, answers, strict=True)]
        rows = [(r, a, status) for r, a, status in written if status is not None]
        if not rows:
            return answers
        await self.session.execute(
            insert(Enrollment),
            [
                {
                    "student_id": r.student_id,
                    "course_id": course_id,
                    "status": status,
                    "waitlist_seq": a.waitlist_seq,
                    "created_at": at,
                }
                for r, a, status in rows
            ],
        )
        await self.session.execute(
            insert(CourseEvent),
            [
                {
                    "course_id": course_id,
                    "type": status,
                    "student_id": r.student_id,
                    "at": at,
                    "request_id": r.request_id,
                }
                for r, _, status in rows
            ],
        )
        seated = sum(1 for _, _, status in rows if status == STATUS_ENROLLED)
        await CourseRepository(self.session).adjust_counters(
            course_id, enrolled=seated, waitlisted=len(rows) - seated, tickets=len(rows) - seated, at=at
        )
        return answers

    async def add(
        self, *, student_id: str, course_id: str, status: str, at: datetime, waitlist_seq: int | None = None
    ) -> bool:
        """Insert the enrollment; False if the student already has one for this course.

        The unique constraint decides, so two concurrent identical sign-ups cannot both succeed.
        """
        result = await self.session.execute(
            _upsert(self.session)(Enrollment)
            .values(
                student_id=student_id,
                course_id=course_id,
                status=status,
                waitlist_seq=waitlist_seq,
                created_at=at,
            )
            .on_conflict_do_nothing(index_elements=[Enrollment.course_id, Enrollment.student_id])
            .returning(Enrollment.id)
        )
        return result.first() is not None

    async def get(self, *, student_id: str, course_id: str) -> Row[Any] | None:
        """The student's row in the course (enrolled or waitlisted), if any."""
        query = select(*_ENROLLMENT_COLUMNS).where(
            Enrollment.course_id == course_id, Enrollment.student_id == student_id
        )
        return (await self.session.execute(query)).first()

    async def remove(self, *, student_id: str, course_id: str) -> Enrollment | None:
        """Delete and return the student's enrollment or waitlist entry, if any."""
        row = (
            await self.session.execute(
                delete(Enrollment)
                .where(Enrollment.course_id == course_id, Enrollment.student_id == student_id)
                .returning(Enrollment.status, Enrollment.waitlist_seq, Enrollment.created_at)
            )
        ).first()
        if row is None:
            return None
        return Enrollment(
            student_id=student_id,
            course_id=course_id,
            status=row.status,
            waitlist_seq=row.waitlist_seq,
            created_at=row.created_at,
        )

    async def remove_all(self, course_id: str) -> Sequence[Enrollment]:
        rows = (
            await self.session.execute(
                delete(Enrollment).where(Enrollment.course_id == course_id).returning(Enrollment)
            )
        ).scalars()
        return rows.all()

    async def promote_first(self, course_id: str, count: int, *, at: datetime) -> list[str]:
        """Enroll the first `count` waitlisted students, in ticket order, as of `at`; returns their ids."""
        if count <= 0:
            return []
        first = (
            await self.session.execute(
                select(Enrollment.id, Enrollment.student_id)
                .where(Enrollment.course_id == course_id, Enrollment.status == STATUS_WAITLISTED)
                .order_by(Enrollment.waitlist_seq)
                .limit(count)
            )
        ).all()
        if first:
            await self.session.execute(
                update(Enrollment)
                .where(Enrollment.id.in_([row.id for row in first]))
                .values(status=STATUS_ENROLLED, waitlist_seq=None, created_at=at)
                .execution_options(synchronize_session=False)
            )
        return [row.student_id for row in first]

    async def waitlist_position(self, course_id: str, waitlist_seq: int) -> int:
        """1-based position of the ticket among the course's current waitlist."""
        return int(
            (
                await self.session.execute(
                    select(func.count())
                    .select_from(Enrollment)
                    .where(
                        Enrollment.course_id == course_id,
                        Enrollment.status == STATUS_WAITLISTED,
                        Enrollment.waitlist_seq <= waitlist_seq,
                    )
                )
            ).scalar_one()
        )

    async def list_for_student(self, student_id: str, *, status: str | None, page: PageRequest) -> Sequence[Any]:
        """The student's enrollments joined with their course, by course id."""
        statement = _student_courses_statement(status is not None, page.after is not None)
        params: dict[str, Any] = {"p_student": student_id, "p_limit": page.limit + 1}
        if status is not None:
            params["p_status"] = status
        if page.after is not None:
            params["p_after"] = page.after[0]
        executor = self.session
        if isinstance(executor, AsyncSession):  # Core on the session's connection: no ORM bookkeeping
            executor = await executor.connection()
        return (await executor.execute(statement, params)).all()

    async def list_enrolled(
        self, course_id: str, *, page: PageRequest, excluding: str | None = None
    ) -> Sequence[Row[Any]]:
        query = (
            select(*_ENROLLMENT_COLUMNS)
            .where(Enrollment.course_id == course_id, Enrollment.status == STATUS_ENROLLED)
            .order_by(Enrollment.student_id)
            .limit(page.limit + 1)
        )
        if excluding is not None:
            query = query.where(Enrollment.student_id != excluding)
        if page.after is not None:
            query = query.where(Enrollment.student_id > page.after[-1])
        return (await self.session.execute(query)).all()

    async def list_waitlisted(self, course_id: str, *, limit: int, after_seq: int | None = None) -> Sequence[Row[Any]]:
        query = (
            select(*_ENROLLMENT_COLUMNS)
            .where(Enrollment.course_id == course_id, Enrollment.status == STATUS_WAITLISTED)
            .order_by(Enrollment.waitlist_seq)
            .limit(limit)
        )
        if after_seq is not None:
            query = query.where(Enrollment.waitlist_seq > after_seq)
        return (await self.session.execute(query)).all()
