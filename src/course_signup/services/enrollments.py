"""Student use cases: sign up (or join the waitlist), drop, and list one's own courses."""

from __future__ import annotations

from datetime import datetime

from course_signup.adapters.cache import Cache
from course_signup.domain import rules
from course_signup.domain.admission import AdmissionRequest, Verdict
from course_signup.domain.errors import (
    AlreadyEnrolledError,
    AlreadyWaitlistedError,
    CourseFullError,
    CourseNotFoundError,
    DomainError,
    EnrollmentNotFoundError,
    RegistrationClosedError,
)
from course_signup.domain.events import EventType
from course_signup.domain.models import STATUS_ENROLLED, STATUS_WAITLISTED, utcnow
from course_signup.domain.pagination import Page, PageRequest, make_page
from course_signup.domain.views import DropResult, EnrollmentView, StudentCourseView
from course_signup.services.admission import Admissions
from course_signup.services.unit_of_work import UnitOfWork

ONE_BY_ONE = Admissions(batching=False)
_REFUSALS: dict[Verdict, type[DomainError]] = {
    Verdict.NOT_FOUND: CourseNotFoundError,
    Verdict.CLOSED: RegistrationClosedError,
    Verdict.ALREADY_ENROLLED: AlreadyEnrolledError,
    Verdict.ALREADY_WAITLISTED: AlreadyWaitlistedError,
    Verdict.FULL: CourseFullError,
}


async def sign_up(
    uow: UnitOfWork,
    cache: Cache,
    *,
    student_id: str,
    course_id: str,
    waitlist: bool,
    admissions: Admissions = ONE_BY_ONE,
) -> EnrollmentView:
    """Enroll the student, or waitlist them when the course is full and they asked to wait.

    The decision and its rows are one statement (see services/admission.py); `admissions` batches
    it with the other sign-ups for the same course that this process is answering at that moment.
    """
    request = AdmissionRequest(student_id, waitlist, uow.request_id)
    admission = await admissions.admit(uow, course_id, request)
    refusal = _REFUSALS.get(admission.verdict)
    if refusal is not None:
        raise refusal()
    cache.forget_courses()  # after the commit: this process sees its own write at once
    status = STATUS_ENROLLED if admission.verdict is Verdict.ENROLLED else STATUS_WAITLISTED
    return EnrollmentView(student_id, course_id, status, admission.at, admission.position)


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
    async with uow.reading() as reads:
        rows = await reads.enrollments.list_for_student(student_id, status=status, page=page)
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
