"""In-memory fakes of our own ports (repositories, unit of work, cache) for the unit tests."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any, NamedTuple, Self, TypeVar

from course_signup.domain.admission import Admission, AdmissionRequest, decide, status_of
from course_signup.domain.errors import CourseNotFoundError
from course_signup.domain.models import (
    STATUS_ENROLLED,
    STATUS_WAITLISTED,
    Course,
    CourseEvent,
    Enrollment,
    IdempotencyRecord,
)
from course_signup.domain.pagination import PageRequest

Row = TypeVar("Row", Course, Enrollment, CourseEvent, IdempotencyRecord)


class FakeIntegrityError(Exception):
    """What the database would refuse: a CHECK constraint or a foreign key."""


def _clone(row: Row) -> Row:
    """A detached copy, so callers never hold a reference into the fake's tables."""
    return type(row)(**{column.key: getattr(row, column.key) for column in row.__table__.columns})


@dataclass
class FakeTables:
    """One database's rows. Ids come from one shared counter, like sequences that survive a rollback."""

    courses: dict[str, Course] = field(default_factory=dict)
    enrollments: dict[tuple[str, str], Enrollment] = field(default_factory=dict)  # (course_id, student_id)
    events: list[CourseEvent] = field(default_factory=list)
    idempotency: dict[tuple[str, str], IdempotencyRecord] = field(default_factory=dict)  # (student_id, key)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def copy(self) -> FakeTables:
        return FakeTables(
            courses={key: _clone(row) for key, row in self.courses.items()},
            enrollments={key: _clone(row) for key, row in self.enrollments.items()},
            events=list(self.events),  # append-only: rows are never changed, so they are shared
            idempotency={key: _clone(row) for key, row in self.idempotency.items()},
            ids=self.ids,
        )

    def load(self, other: FakeTables) -> None:
        """Take over `other`'s rows (a commit); `other` must not be used afterwards."""
        self.courses, self.enrollments = other.courses, other.enrollments
        self.events, self.idempotency = other.events, other.idempotency


class FakeTransaction:
    """Copy-on-write: reads see the committed tables until the first write makes a private copy."""

    def __init__(self, committed: FakeTables) -> None:
        self.committed = committed
        self.work: FakeTables | None = None

    def read(self) -> FakeTables:
        return self.committed if self.work is None else self.work

    def write(self) -> FakeTables:
        if self.work is None:
            self.work = self.committed.copy()
        return self.work

    def commit(self) -> None:
        if self.work is not None:
            self.committed.load(self.work)
            self.work = None

    def rollback(self) -> None:
        self.work = None


def _check(course: Course) -> None:
    """The CHECK constraints of the courses table."""
    if course.lessons < 0 or (course.capacity is not None and course.capacity < 0):
        raise FakeIntegrityError(f"{course.course_id}: negative lessons or capacity")
    if course.enrolled < 0 or course.waitlisted < 0:
        raise FakeIntegrityError(f"{course.course_id}: negative counter")
    if course.capacity is not None and course.enrolled > course.capacity:
        raise FakeIntegrityError(f"{course.course_id}: enrolled {course.enrolled} > capacity {course.capacity}")


class FakeCourseRepository:
    def __init__(self, tx: FakeTransaction) -> None:
        self.tx = tx

    async def get(self, course_id: str, *, for_update: bool = False) -> Course:
        course = self.tx.read().courses.get(course_id)
        if course is None:
            raise CourseNotFoundError()
        return _clone(course)

    async def exists(self, course_id: str) -> bool:
        return course_id in self.tx.read().courses

    async def list(
        self, page: PageRequest, *, text: str | None = None, available_at: datetime | None = None
    ) -> Sequence[Course]:
        rows = self.tx.read().courses

        def kept(course: Course) -> bool:
            if text is not None and not (
                text.lower() in course.course_id.lower() or text.lower() in course.name.lower()
            ):
                return False
            return available_at is None or (course.has_seat_free and course.is_open_at(available_at))

        ids = sorted(c for c in rows if (page.after is None or c > page.after[0]) and kept(rows[c]))
        return [_clone(rows[c]) for c in ids[: page.limit + 1]]

    async def adjust_counters(
        self, course_id: str, *, enrolled: int = 0, waitlisted: int = 0, tickets: int = 0, at: datetime
    ) -> None:
        course = self.tx.write().courses.get(course_id)
        if course is None:  # an UPDATE that matches no row
            return
        course.enrolled += enrolled
        course.waitlisted += waitlisted
        course.waitlist_seq += tickets
        course.updated_at = at
        _check(course)

    async def add(self, course: Course) -> bool:
        rows = self.tx.write().courses
        if course.course_id in rows:
            return False
        row = _clone(course)
        _check(row)
        rows[row.course_id] = row
        return True

    async def upsert(self, values: dict[str, Any]) -> None:
        if values["course_id"] in self.tx.read().courses:
            changes = {k: v for k, v in values.items() if k not in {"course_id", "created_at"}}
            await self.change(values["course_id"], changes)
        else:
            await self.add(Course(**{"lessons": 0, "enrolled": 0, "waitlisted": 0, "waitlist_seq": 0, **values}))

    async def change(self, course_id: str, values: dict[str, Any]) -> None:
        course = self.tx.write().courses.get(course_id)
        if course is None:
            return
        for key, value in values.items():
            setattr(course, key, value)
        _check(course)

    async def remove(self, course_id: str) -> None:
        tables = self.tx.write()
        tables.courses.pop(course_id, None)
        # ON DELETE CASCADE
        for key in [key for key in tables.enrollments if key[0] == course_id]:
            del tables.enrollments[key]


class StudentCourseRow(NamedTuple):
    """One row of EnrollmentRepository.list_for_student: an enrollment joined with its course."""

    student_id: str
    course_id: str
    name: str
    lessons: int
    status: str
    created_at: datetime
    position: int  # the SQL count: 0 for an enrolled row


def _waitlist(tables: FakeTables, course_id: str) -> list[Enrollment]:
    rows = [e for (c, _), e in tables.enrollments.items() if c == course_id and e.status == STATUS_WAITLISTED]
    return sorted(rows, key=lambda e: e.waitlist_seq)


class FakeEnrollmentRepository:
    def __init__(self, tx: FakeTransaction) -> None:
        self.tx = tx

    async def add(
        self, *, student_id: str, course_id: str, status: str, at: datetime, waitlist_seq: int | None = None
    ) -> bool:
        tables = self.tx.write()
        if course_id not in tables.courses:
            raise FakeIntegrityError(f"no course {course_id} for the enrollment")
        if (course_id, student_id) in tables.enrollments:
            return False
        tables.enrollments[course_id, student_id] = Enrollment(
            id=next(tables.ids),
            student_id=student_id,
            course_id=course_id,
            status=status,
            waitlist_seq=waitlist_seq,
            created_at=at,
        )
        return True

    async def admit(self, course_id: str, requests: Sequence[AdmissionRequest], *, at: datetime) -> list[Admission]:
        """The real SQLite path's steps: decide with domain/admission.py, then write rows, events, counters."""
        tables = self.tx.read()
        course = tables.courses.get(course_id)
        existing = {s: e.status for (c, s), e in tables.enrollments.items() if c == course_id}
        answers = decide(None if course is None else _clone(course), requests, existing=existing, at=at)
        events = FakeEventRepository(self.tx)
        seated = waiting = 0
        for request, answer in zip(requests, answers, strict=True):
            status = status_of(answer.verdict)
            if status is None:
                continue
            await self.add(
                student_id=request.student_id,
                course_id=course_id,
                status=status,
                at=at,
                waitlist_seq=answer.waitlist_seq,
            )
            events.request_id = request.request_id
            await events.add(course_id=course_id, type=status, student_ids=[request.student_id], at=at)
            seated, waiting = seated + (status == STATUS_ENROLLED), waiting + (status == STATUS_WAITLISTED)
        if seated or waiting:
            await FakeCourseRepository(self.tx).adjust_counters(
                course_id, enrolled=seated, waitlisted=waiting, tickets=waiting, at=at
            )
        return answers

    async def get(self, *, student_id: str, course_id: str) -> Enrollment | None:
        row = self.tx.read().enrollments.get((course_id, student_id))
        return None if row is None else _clone(row)

    async def remove(self, *, student_id: str, course_id: str) -> Enrollment | None:
        return self.tx.write().enrollments.pop((course_id, student_id), None)

    async def remove_all(self, course_id: str) -> Sequence[Enrollment]:
        rows = self.tx.write().enrollments
        return [rows.pop(key) for key in [key for key in rows if key[0] == course_id]]

    async def promote_first(self, course_id: str, count: int, *, at: datetime) -> list[str]:
        if count <= 0:
            return []
        first = _waitlist(self.tx.write(), course_id)[:count]
        for row in first:
            row.status, row.waitlist_seq, row.created_at = STATUS_ENROLLED, None, at
        return [row.student_id for row in first]

    async def waitlist_position(self, course_id: str, waitlist_seq: int) -> int:
        return sum(1 for e in _waitlist(self.tx.read(), course_id) if e.waitlist_seq <= waitlist_seq)

    async def list_for_student(self, student_id: str, *, status: str | None, page: PageRequest) -> Sequence[Any]:
        tables = self.tx.read()
        mine = sorted((e for (_, s), e in tables.enrollments.items() if s == student_id), key=lambda e: e.course_id)
        rows = []
        for e in mine:
            if (status is not None and e.status != status) or (page.after is not None and e.course_id <= page.after[0]):
                continue
            course = tables.courses[e.course_id]
            position = 0 if e.waitlist_seq is None else await self.waitlist_position(e.course_id, e.waitlist_seq)
            rows.append(
                StudentCourseRow(
                    e.student_id, e.course_id, course.name, course.lessons, e.status, e.created_at, position
                )
            )
        return rows[: page.limit + 1]

    async def list_enrolled(
        self, course_id: str, *, page: PageRequest, excluding: str | None = None
    ) -> Sequence[Enrollment]:
        rows = sorted(
            (
                e
                for (c, s), e in self.tx.read().enrollments.items()
                if c == course_id
                and e.status == STATUS_ENROLLED
                and s != excluding
                and (page.after is None or s > page.after[-1])
            ),
            key=lambda e: e.student_id,
        )
        return [_clone(e) for e in rows[: page.limit + 1]]

    async def list_waitlisted(
        self, course_id: str, *, limit: int, after_seq: int | None = None
    ) -> Sequence[Enrollment]:
        rows = [e for e in _waitlist(self.tx.read(), course_id) if after_seq is None or e.waitlist_seq > after_seq]
        return [_clone(e) for e in rows[:limit]]


class FakeEventRepository:
    def __init__(self, tx: FakeTransaction, *, request_id: str | None = None) -> None:
        self.tx = tx
        self.request_id = request_id

    async def add(self, *, course_id: str, type: str, student_ids: Sequence[str], at: datetime) -> None:
        tables = self.tx.write()
        for student_id in student_ids:
            tables.events.append(
                CourseEvent(
                    event_id=next(tables.ids),
                    course_id=course_id,
                    type=str(type),
                    student_id=student_id,
                    at=at,
                    request_id=self.request_id,
                )
            )

    async def list(self, course_id: str, page: PageRequest) -> Sequence[CourseEvent]:
        rows = [
            e
            for e in self.tx.read().events
            if e.course_id == course_id and (page.after is None or e.event_id > page.after[0])
        ]
        return [_clone(e) for e in sorted(rows, key=lambda e: e.event_id)[: page.limit + 1]]


class FakeIdempotencyRepository:
    def __init__(self, tx: FakeTransaction) -> None:
        self.tx = tx

    async def reserve(
        self, record: IdempotencyRecord, *, expired_before: datetime, abandoned_before: datetime, in_flight: int
    ) -> bool:
        rows, key = self.tx.write().idempotency, (record.student_id, record.key)
        existing = rows.get(key)
        if existing is not None and not (
            existing.created_at <= expired_before
            or (existing.status_code == in_flight and existing.created_at <= abandoned_before)
        ):
            return False
        rows[key] = _clone(record)
        return True

    async def get(self, *, student_id: str, key: str) -> IdempotencyRecord | None:
        row = self.tx.read().idempotency.get((student_id, key))
        return None if row is None else _clone(row)

    async def finish(self, *, student_id: str, key: str, status_code: int, body: bytes) -> None:
        row = self.tx.write().idempotency.get((student_id, key))
        if row is not None:
            row.status_code, row.body = status_code, body

    async def remove(self, *, student_id: str, key: str) -> None:
        self.tx.write().idempotency.pop((student_id, key), None)

    async def purge(self, *, before: datetime) -> int:
        rows = self.tx.write().idempotency
        old = [key for key, row in rows.items() if row.created_at <= before]
        for key in old:
            del rows[key]
        return len(old)


class FakeUnitOfWork:
    """One transaction per `async with`: commit() publishes its writes, rollback() or leaving discards them.

    Pass one FakeTables to several units of work to let them share a database (interleaved, not
    concurrent: the last commit wins, so races belong in the integration tests).
    """

    def __init__(self, tables: FakeTables | None = None, *, request_id: str | None = None) -> None:
        self.tables = tables if tables is not None else FakeTables()
        self.request_id = request_id
        self.commits = 0
        self._begin()

    def _begin(self) -> None:
        self._tx = FakeTransaction(self.tables)
        self.courses = FakeCourseRepository(self._tx)
        self.enrollments = FakeEnrollmentRepository(self._tx)
        self.events = FakeEventRepository(self._tx, request_id=self.request_id)
        self.idempotency = FakeIdempotencyRepository(self._tx)

    async def __aenter__(self) -> Self:
        self._begin()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._tx.rollback()

    async def single_statements(self) -> None:
        """Nothing to switch: the fake's statements are atomic, and commit() still publishes them."""

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[SimpleNamespace]:
        """Repositories over the committed tables; like the real one, nothing here is ever committed."""
        tx = FakeTransaction(self.tables)
        yield SimpleNamespace(
            courses=FakeCourseRepository(tx),
            enrollments=FakeEnrollmentRepository(tx),
            events=FakeEventRepository(tx, request_id=self.request_id),
        )

    async def commit(self) -> None:
        self._tx.commit()
        self.commits += 1

    async def rollback(self) -> None:
        self._tx.rollback()


class FakeCache:
    """A dict with no expiry that counts invalidations, so tests can see a write clear it."""

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}
        self.forgotten = 0

    async def get(self, key: str) -> Any | None:
        return self.entries.get(key)

    async def put(self, key: str, value: Any) -> None:
        self.entries[key] = value

    def forget_courses(self) -> None:
        self.entries.clear()
        self.forgotten += 1

    @property
    def epoch(self) -> int:
        return self.forgotten
