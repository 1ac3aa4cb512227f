"""Student use cases: sign up (or join the waitlist), drop, and list one's own courses."""

from __future__ import annotations

from datetime import datetime

from course_signup.adapters.cache import Cache
from course_signup.domain import rules
from course_signup.domain.errors import (
    AlreadyEnrolledError,
    AlreadyWaitlistedError,
    CourseFullError,
    CourseNotFoundError,
    DomainError,
    EnrollmentNotFoundError,
)
from course_signup.domain.events import EventType
from course_signup.domain.models import STATUS_ENROLLED, STATUS_WAITLISTED, utcnow
from course_signup.domain.pagination import Page, PageRequest, make_page
from course_signup.domain.views import DropResult, EnrollmentView, SeatOutcome, StudentCourseView
from course_signup.services.unit_of_work import UnitOfWork


async def sign_up(uow: UnitOfWork, cache: Cache, *, student_id: str, course_id: str, waitlist: bool) -> EnrollmentView:
    """Enroll the student, or waitlist them when the course is full and they asked to wait."""
    view = await _sign_up(uow, student_id=student_id, course_id=course_id, waitlist=waitlist)
    cache.forget_courses()  # after the commit: this process sees its own write at once
    return view


async def _sign_up(uow: UnitOfWork, *, student_id: str, course_id: str, waitlist: bool) -> EnrollmentView:
    now = utcnow()
    async with uow:
        # The fast path: on PostgreSQL one atomic statement, committed inside the server.
        await uow.single_statements()
        enrolled = await _take_free_seat(uow, student_id=student_id, course_id=course_id, at=now)
        if enrolled is not None:
            return enrolled
    return await _sign_up_without_free_seat(uow, student_id=student_id, course_id=course_id, waitlist=waitlist)


async def _sign_up_without_free_seat(
    uow: UnitOfWork, *, student_id: str, course_id: str, waitlist: bool
) -> EnrollmentView:
    """No seat was claimed: say why, and waitlist the student if they asked to wait."""
    async with uow:
        # Reads only, without a lock: in a registration rush most requests end here, told the
        # course is full, and none of them should queue on the course's row lock to hear it.
        await uow.single_statements()
        course = await uow.courses.get(course_id)  # CourseNotFoundError
        rules.ensure_registration_open(course.registration_opens_at, course.registration_closes_at, at=utcnow())
        existing = await uow.enrollments.get(student_id=student_id, course_id=course_id)
        if existing is not None:
            raise _duplicate(existing.status)
        if not waitlist and course.capacity is not None and course.enrolled >= course.capacity:
            raise CourseFullError()
    return await _enroll_or_waitlist(uow, student_id=student_id, course_id=course_id, waitlist=waitlist)


async def _enroll_or_waitlist(uow: UnitOfWork, *, student_id: str, course_id: str, waitlist: bool) -> EnrollmentView:
    """Under the course's row lock: take a seat freed meanwhile, or a waitlist ticket."""
    now = utcnow()
    async with uow:
        course = await uow.courses.get(course_id, for_update=True)  # CourseNotFoundError
        rules.ensure_registration_open(course.registration_opens_at, course.registration_closes_at, at=now)
        # A seat freed since the first try; a duplicate that raced in is caught by the unique constraint.
        enrolled = await _take_free_seat(uow, student_id=student_id, course_id=course_id, at=now)
        if enrolled is not None:
            return enrolled
        if not waitlist:
            raise CourseFullError()
        ticket = await uow.courses.take_waitlist_ticket(course_id, at=now)
        await _add(uow, student_id, course_id, STATUS_WAITLISTED, now, waitlist_seq=ticket)
        await uow.events.add(course_id=course_id, type=EventType.WAITLISTED, student_ids=[student_id], at=now)
        position = await uow.enrollments.waitlist_position(course_id, ticket)
        await uow.commit()
    return EnrollmentView(student_id, course_id, STATUS_WAITLISTED, now, position)


async def drop(uow: UnitOfWork, cache: Cache, *, student_id: str, course_id: str) -> DropResult:
    """Drop an enrollment or leave the waitlist; a freed seat goes to the first waitlisted student."""
    now = utcnow()
    async with uow:
        try:
            # The course row is locked first, in the same order sign_up locks it: no deadlock.
            await uow.courses.get(course_id, for_update=True)
        except CourseNotFoundError:
            raise EnrollmentNotFoundError() from None
        removed = await uow.enrollments.remove(student_id=student_id, course_id=course_id)
        if removed is None:
            raise EnrollmentNotFoundError()
        promoted: list[str] = []
        if removed.status == STATUS_ENROLLED:
            await uow.courses.adjust_counters(course_id, enrolled=-1, at=now)
            await uow.events.add(course_id=course_id, type=EventType.DROPPED, student_ids=[student_id], at=now)
            promoted = await promote_waitlisted(uow, course_id, at=now)
        else:
            await uow.courses.adjust_counters(course_id, waitlisted=-1, at=now)
            await uow.events.add(course_id=course_id, type=EventType.LEFT_WAITLIST, student_ids=[student_id], at=now)
        await uow.commit()
    cache.forget_courses()
    return DropResult(student_id, course_id, promoted[0] if promoted else None)


async def list_my_courses(
    uow: UnitOfWork, *, student_id: str, status: str | None, page: PageRequest
) -> Page[StudentCourseView]:
    """The student's courses (enrolled and waitlisted), by course id."""
    async with uow:
        await uow.single_statements()  # one read: no BEGIN/ROLLBACK round trips around it
        rows = await uow.enrollments.list_for_student(student_id, status=status, page=page)
    views = [
        StudentCourseView(
            course_id=row.course_id,
            name=row.name,
            lessons=row.lessons,
            status=row.status,
            enrolled_at=row.created_at,
            position=row.position if row.status == STATUS_WAITLISTED else None,
        )
        for row in rows
    ]
    return make_page(views, page, key=lambda view: (view.course_id,))


async def promote_waitlisted(uow: UnitOfWork, course_id: str, *, at: datetime) -> list[str]:
    """Admit waitlisted students in ticket order while seats are free; the course row is locked."""
    course = await uow.courses.get(course_id)
    count = rules.seats_to_promote(capacity=course.capacity, enrolled=course.enrolled, waitlisted=course.waitlisted)
    promoted = await uow.enrollments.promote_first(course_id, count, at=at)
    if promoted:
        await uow.courses.adjust_counters(course_id, enrolled=len(promoted), waitlisted=-len(promoted), at=at)
        await uow.events.add(course_id=course_id, type=EventType.PROMOTED, student_ids=promoted, at=at)
    return promoted


async def _take_free_seat(uow: UnitOfWork, *, student_id: str, course_id: str, at: datetime) -> EnrollmentView | None:
    """Seat, enrollment and audit event at once and commit; None (nothing done) if no seat is free.

    A conditional UPDATE claims the seat, so "enrolled <= capacity" holds across processes, and
    the unique constraint rejects a duplicate.
    """
    outcome = await uow.enrollments.enroll_if_seat_free(
        student_id=student_id, course_id=course_id, at=at, request_id=uow.request_id
    )
    if outcome is SeatOutcome.SEATED:
        await uow.commit()
        return EnrollmentView(student_id, course_id, STATUS_ENROLLED, at)
    await uow.rollback()
    if outcome is SeatOutcome.DUPLICATE:
        raise await _duplicate_of(uow, student_id=student_id, course_id=course_id)
    return None


async def _add(
    uow: UnitOfWork, student_id: str, course_id: str, status: str, at: datetime, *, waitlist_seq: int | None = None
) -> None:
    """Insert the row; on a duplicate, undo the claimed seat or ticket and say which duplicate it is."""
    if await uow.enrollments.add(
        student_id=student_id, course_id=course_id, status=status, at=at, waitlist_seq=waitlist_seq
    ):
        return
    await uow.rollback()
    raise await _duplicate_of(uow, student_id=student_id, course_id=course_id)


async def _duplicate_of(uow: UnitOfWork, *, student_id: str, course_id: str) -> DomainError:
    """The error for a duplicate sign-up: already enrolled, or already waitlisted."""
    existing = await uow.enrollments.get(student_id=student_id, course_id=course_id)
    return _duplicate(existing.status if existing is not None else STATUS_ENROLLED)


def _duplicate(status: str) -> DomainError:
    return AlreadyWaitlistedError() if status == STATUS_WAITLISTED else AlreadyEnrolledError()
