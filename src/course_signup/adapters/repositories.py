"""Repositories: every SQL statement the service runs, behind methods named in domain terms."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Row,
    String,
    and_,
    bindparam,
    case,
    column,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from course_signup.domain.admission import Admission, AdmissionRequest, Verdict, decide, status_of
from course_signup.domain.errors import CourseNotFoundError
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

# Repositories run on a session (a unit of work) or, for a use case that only reads, directly on a
# pooled connection (UnitOfWork.reading): the read methods below use Core statements that both run.
Executor = AsyncSession | AsyncConnection


def _is_postgres(session: Executor) -> bool:
    bind = session if isinstance(session, AsyncConnection) else session.get_bind()
    return bind.dialect.name == "postgresql"


def _upsert(session: Executor) -> Any:
    """The dialect's INSERT that knows ON CONFLICT (PostgreSQL and SQLite both do)."""
    return pg_insert if _is_postgres(session) else sqlite_insert


def _is_unique_violation(exc: IntegrityError, constraint: str) -> bool:
    return constraint in str(exc.orig)


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


def _admit_statement() -> Any:
    """A batch of sign-ups to one course, decided and written by ONE statement (PostgreSQL).

    locked: the course row, FOR UPDATE. It waits for every other writer of the course (they all
        lock this row first) and then returns the row's newest version, so the seat figures the
        decision uses are current even though the statement's snapshot is older.
    existing: the students of the batch who already have a row (the anti-join). A row committed
        after the snapshot is not seen here; its unique violation then undoes the whole statement,
        and the caller runs the batch again with a fresh snapshot.
    decided: in arrival order, the first `seats_left` new students get seats (Course.seats_left
        and Course.is_open_at are the rules, shared with domain/admission.py); the rest are
        waitlisted with consecutive tickets if they asked to wait, or refused.
    inserted, counters, audit: the rows, the course's counters and one audit event per row with
        that request's id. Under an autocommit connection the lock is held only inside the server.
    """
    at = bindparam("p_at", type_=UTCDateTime())
    course_id = bindparam("p_course", type_=String())
    locked_rows = select(Course).where(Course.course_id == course_id).with_for_update().cte("locked")
    locked = aliased(Course, locked_rows)
    unnested = (
        func.unnest(
            bindparam("p_students", type_=ARRAY(String())),
            bindparam("p_waitlist", type_=ARRAY(Boolean())),
            bindparam("p_requests", type_=ARRAY(String())),
        )
        .table_valued(
            column("student_id", String()),
            column("waitlist", Boolean()),
            column("request_id", String()),
            with_ordinality="ord",
        )
        .render_derived(name="r")
    )
    req = select(unnested).cte("req")
    existing = (
        select(Enrollment.student_id, Enrollment.status)
        .where(Enrollment.course_id == course_id, Enrollment.student_id.in_(select(req.c.student_id)))
        .cte("existing")
    )
    fresh = (
        select(req.c.ord, req.c.student_id, req.c.waitlist, func.row_number().over(order_by=req.c.ord).label("n"))
        .select_from(req.join(locked, true()))
        .where(locked.is_open_at(at), ~exists().where(existing.c.student_id == req.c.student_id))
        .cte("fresh")
    )
    seated = or_(locked.seats_left.is_(None), fresh.c.n <= locked.seats_left)
    status = case((seated, STATUS_ENROLLED), (fresh.c.waitlist, STATUS_WAITLISTED), else_=None)
    decided = (
        select(fresh.c.ord, fresh.c.student_id, status.label("status"))
        .select_from(fresh.join(locked, true()))
        .cte("decided")
    )
    admitted = (
        select(
            decided.c.ord,
            decided.c.student_id,
            decided.c.status,
            func.row_number().over(partition_by=decided.c.status, order_by=decided.c.ord).label("nth"),
        )
        .where(decided.c.status.is_not(None))
        .cte("admitted")
    )
    ticket = case((admitted.c.status == STATUS_WAITLISTED, locked.waitlist_seq + admitted.c.nth), else_=None)
    inserted = (
        insert(Enrollment)
        .from_select(
            ["student_id", "course_id", "status", "waitlist_seq", "created_at"],
            select(admitted.c.student_id, course_id, admitted.c.status, ticket, at)
            .select_from(admitted.join(locked, true()))
            .order_by(admitted.c.ord),
        )
        .returning(Enrollment.student_id, Enrollment.status, Enrollment.waitlist_seq)
        .cte("inserted")
    )

    def count(of: str) -> Any:
        return select(func.count()).select_from(inserted).where(inserted.c.status == of).scalar_subquery()

    counters = (
        update(Course)
        .where(Course.course_id == course_id, exists().select_from(inserted))
        .values(
            enrolled=Course.enrolled + count(STATUS_ENROLLED),
            waitlisted=Course.waitlisted + count(STATUS_WAITLISTED),
            waitlist_seq=Course.waitlist_seq + count(STATUS_WAITLISTED),
            updated_at=at,
        )
        .returning(Course.course_id)
        .cte("counters")
    )
    audit = (
        insert(CourseEvent)
        .from_select(
            ["course_id", "type", "student_id", "at", "request_id"],
            select(course_id, inserted.c.status, inserted.c.student_id, at, req.c.request_id)
            .select_from(inserted.join(req, req.c.student_id == inserted.c.student_id))
            .order_by(req.c.ord),
        )
        .cte("audit")
    )
    return (
        select(
            locked.course_id.is_not(None).label("found"),
            func.coalesce(locked.is_open_at(at), False).label("open"),
            existing.c.status.label("existing"),
            inserted.c.status,
            inserted.c.waitlist_seq,
            (locked.waitlisted + admitted.c.nth).label("position"),
        )
        .select_from(
            req.outerjoin(locked, true())
            .outerjoin(existing, existing.c.student_id == req.c.student_id)
            .outerjoin(inserted, inserted.c.student_id == req.c.student_id)
            .outerjoin(admitted, admitted.c.ord == req.c.ord)
        )
        .add_cte(counters, audit)
        .order_by(req.c.ord)
    )


_ADMIT = _admit_statement()


def _verdict(row: Any, at: datetime) -> Admission:
    """One request's answer from its row of the admission statement."""
    if not row.found:
        return Admission(Verdict.NOT_FOUND, at)
    if not row.open:
        return Admission(Verdict.CLOSED, at)
    if row.existing is not None:
        duplicate = Verdict.ALREADY_WAITLISTED if row.existing == STATUS_WAITLISTED else Verdict.ALREADY_ENROLLED
        return Admission(duplicate, at)
    if row.status == STATUS_ENROLLED:
        return Admission(Verdict.ENROLLED, at)
    if row.status == STATUS_WAITLISTED:
        return Admission(Verdict.WAITLISTED, at, waitlist_seq=row.waitlist_seq, position=int(row.position))
    return Admission(Verdict.FULL, at)


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
