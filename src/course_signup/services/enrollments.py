"""Student use cases: sign up (or join the waitlist), drop, and list one's own courses."""

from __future__ import annotations

from course_signup.adapters.cache import Cache
from course_signup.domain.admission import AdmissionRequest, Verdict
from course_signup.domain.errors import (
    AlreadyEnrolledError,
    AlreadyWaitlistedError,
    CourseFullError,
    CourseNotFoundError,
    DomainError,
    RegistrationClosedError,
)
from course_signup.domain.models import STATUS_ENROLLED, STATUS_WAITLISTED
from course_signup.domain.pagination import Page, PageRequest, make_page
from course_signup.domain.views import DropResult, EnrollmentView, StudentCourseView
from course_signup.services.admission import Admissions, Admitter
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
    admissions: Admitter = ONE_BY_ONE,
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


async def drop(
    uow: UnitOfWork, cache: Cache, *, student_id: str, course_id: str, admissions: Admitter = ONE_BY_ONE
) -> DropResult:
    """Drop an enrollment or leave the waitlist; a freed seat goes to the first waitlisted student."""
    promoted = await admissions.drop(uow, student_id=student_id, course_id=course_id)
    cache.forget_courses()
    return DropResult(student_id, course_id, promoted)


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
