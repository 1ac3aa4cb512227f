"""Repositories: every SQL statement the service runs, behind methods named in domain terms."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, bindparam, delete, func, insert, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from course_signup.domain.errors import CourseNotFoundError
from course_signup.domain.events import EventType
from course_signup.domain.models import (
    STATUS_ENROLLED,
    STATUS_WAITLISTED,
    Course,
    CourseEvent,
    Enrollment,
    IdempotencyRecord,
    UTCDateTime,
)
from course_signup.domain.pagination import PageRequest
from course_signup.domain.views import SeatOutcome


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _upsert(session: AsyncSession) -> Any:
    """The dialect's INSERT that knows ON CONFLICT (PostgreSQL and SQLite both do)."""
    return pg_insert if _is_postgres(session) else sqlite_insert


def _is_unique_violation(exc: IntegrityError, constraint: str) -> bool:
    return constraint in str(exc.orig)


def _seat_free() -> Any:
    return or_(Course.capacity.is_(None), Course.enrolled < Course.capacity)


def _open_at(at: Any) -> Any:
    return and_(
        or_(Course.registration_opens_at.is_(None), Course.registration_opens_at <= at),
        or_(Course.registration_closes_at.is_(None), Course.registration_closes_at > at),
    )


class CourseRepository:
    def __init__(self, session: AsyncSession) -> None:
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

    async def list(self, page: PageRequest) -> Sequence[Course]:
        query = select(Course).order_by(Course.course_id).limit(page.limit + 1)
        if page.after is not None:
            query = query.where(Course.course_id > page.after[0])
        return (await self.session.execute(query)).scalars().all()

    async def claim_seat(self, course_id: str, *, at: datetime) -> bool:
        """Take one seat if the course is open and not full. The database decides the last seat."""
        result = await self.session.execute(
            update(Course)
            .where(
                Course.course_id == course_id,
                _seat_free(),
                _open_at(at),
            )
            .values(enrolled=Course.enrolled + 1, updated_at=at)
            .returning(Course.course_id)
            .execution_options(synchronize_session=False)
        )
        return result.first() is not None

    async def take_waitlist_ticket(self, course_id: str, *, at: datetime) -> int:
        """The next waitlist ticket number for the (locked) course; counts the new waitlister."""
        result = await self.session.execute(
            update(Course)
            .where(Course.course_id == course_id)
            .values(
                waitlist_seq=Course.waitlist_seq + 1,
                waitlisted=Course.waitlisted + 1,
                updated_at=at,
            )
            .returning(Course.waitlist_seq)
            .execution_options(synchronize_session=False)
        )
        return int(result.scalar_one())

    async def adjust_counters(self, course_id: str, *, enrolled: int = 0, waitlisted: int = 0, at: datetime) -> None:
        await self.session.execute(
            update(Course)
            .where(Course.course_id == course_id)
            .values(
                enrolled=Course.enrolled + enrolled,
                waitlisted=Course.waitlisted + waitlisted,
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


def _enroll_if_seat_free_statement() -> Any:
    """seat (conditional UPDATE) -> enrollment (INSERT from seat) -> audit (INSERT from enrollment)."""
    # Bind names differ from column names: an UPDATE would read a "course_id" key as SET course_id.
    at = bindparam("p_at", type_=UTCDateTime())
    seat = (
        update(Course)
        .where(
            Course.course_id == bindparam("p_course"),
            _seat_free(),
            _open_at(at),
        )
        .values(enrolled=Course.enrolled + 1, updated_at=at)
        .returning(Course.course_id)
        .cte("seat")
    )
    enrollment = (
        insert(Enrollment)
        .from_select(
            ["student_id", "course_id", "status", "created_at"],
            select(bindparam("p_student", type_=String()), seat.c.course_id, literal(STATUS_ENROLLED), at),
        )
        .returning(Enrollment.course_id, Enrollment.student_id)
        .cte("enrollment")
    )
    audit = (
        insert(CourseEvent)
        .from_select(
            ["course_id", "type", "student_id", "at", "request_id"],
            select(
                enrollment.c.course_id,
                literal(EventType.ENROLLED.value),
                enrollment.c.student_id,
                at,
                bindparam("p_request", type_=String()),
            ),
        )
        .cte("audit")
    )
    return select(func.count()).select_from(enrollment).add_cte(audit)


_ENROLL_IF_SEAT_FREE = _enroll_if_seat_free_statement()


class EnrollmentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def enroll_if_seat_free(
        self, *, student_id: str, course_id: str, at: datetime, request_id: str | None
    ) -> SeatOutcome:
        """Claim a seat, insert the enrollment and its audit event: all of it, or nothing.

        On PostgreSQL this is ONE statement (data-modifying CTEs), so under an autocommit
        connection the hot course's row lock is held only inside the server, from the UPDATE to
        the commit, never across a round trip to Python. A duplicate raises the unique violation,
        which undoes the whole statement. SQLite runs the same steps inside its serialised
        BEGIN IMMEDIATE transaction; the caller rolls back on DUPLICATE.
        """
        if not _is_postgres(self.session):
            return await self._enroll_in_steps(student_id=student_id, course_id=course_id, at=at, request_id=request_id)
        params = {"p_student": student_id, "p_course": course_id, "p_at": at, "p_request": request_id}
        try:
            # Core execution on the session's connection: the statement is built once, and this
            # path skips the ORM's per-statement bookkeeping.
            connection = await self.session.connection()
            seated = (await connection.execute(_ENROLL_IF_SEAT_FREE, params)).scalar_one()
        except IntegrityError as exc:
            if _is_unique_violation(exc, "uq_enrollments_course_id_student_id"):
                return SeatOutcome.DUPLICATE
            raise
        return SeatOutcome.SEATED if seated else SeatOutcome.NO_SEAT

    async def _enroll_in_steps(
        self, *, student_id: str, course_id: str, at: datetime, request_id: str | None
    ) -> SeatOutcome:
        if not await CourseRepository(self.session).claim_seat(course_id, at=at):
            return SeatOutcome.NO_SEAT
        if not await self.add(student_id=student_id, course_id=course_id, status=STATUS_ENROLLED, at=at):
            return SeatOutcome.DUPLICATE
        await EventRepository(self.session, request_id=request_id).add(
            course_id=course_id, type=EventType.ENROLLED, student_ids=[student_id], at=at
        )
        return SeatOutcome.SEATED

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

    async def get(self, *, student_id: str, course_id: str) -> Enrollment | None:
        return (
            await self.session.execute(
                select(Enrollment).where(Enrollment.course_id == course_id, Enrollment.student_id == student_id)
            )
        ).scalar_one_or_none()

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
        connection = await self.session.connection()
        return (await connection.execute(statement, params)).all()

    async def list_enrolled(
        self, course_id: str, *, page: PageRequest, excluding: str | None = None
    ) -> Sequence[Enrollment]:
        query = (
            select(Enrollment)
            .where(Enrollment.course_id == course_id, Enrollment.status == STATUS_ENROLLED)
            .order_by(Enrollment.student_id)
            .limit(page.limit + 1)
        )
        if excluding is not None:
            query = query.where(Enrollment.student_id != excluding)
        if page.after is not None:
            query = query.where(Enrollment.student_id > page.after[-1])
        return (await self.session.execute(query)).scalars().all()

    async def list_waitlisted(
        self, course_id: str, *, limit: int, after_seq: int | None = None
    ) -> Sequence[Enrollment]:
        query = (
            select(Enrollment)
            .where(Enrollment.course_id == course_id, Enrollment.status == STATUS_WAITLISTED)
            .order_by(Enrollment.waitlist_seq)
            .limit(limit)
        )
        if after_seq is not None:
            query = query.where(Enrollment.waitlist_seq > after_seq)
        return (await self.session.execute(query)).scalars().all()


class EventRepository:
    def __init__(self, session: AsyncSession, *, request_id: str | None) -> None:
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

    async def list(self, course_id: str, page: PageRequest) -> Sequence[CourseEvent]:
        query = (
            select(CourseEvent)
            .where(CourseEvent.course_id == course_id)
            .order_by(CourseEvent.event_id)
            .limit(page.limit + 1)
        )
        if page.after is not None:
            query = query.where(CourseEvent.event_id > page.after[0])
        return (await self.session.execute(query)).scalars().all()


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
