"""Who is in a course: a student's classmates, the registrar's roster, and the audit trail."""

from __future__ import annotations

from course_signup.domain.errors import CourseNotFoundError, InvalidInputError, NotClassmateError
from course_signup.domain.models import STATUS_ENROLLED, CourseEvent, Enrollment
from course_signup.domain.pagination import Page, PageRequest, make_page
from course_signup.domain.views import EnrollmentView
from course_signup.services.unit_of_work import UnitOfWork

_ENROLLED_PHASE, _WAITLIST_PHASE = 0, 1


async def list_classmates(uow: UnitOfWork, *, student_id: str, course_id: str, page: PageRequest) -> Page[Enrollment]:
    """The other enrolled students of a course the student is enrolled in, by student id."""
    async with uow.reading() as reads:
        mine = await reads.enrollments.get(student_id=student_id, course_id=course_id)
        if mine is None or mine.status != STATUS_ENROLLED:
            raise NotClassmateError()
        rows = list(await reads.enrollments.list_enrolled(course_id, page=page, excluding=student_id))
    return make_page(rows, page, key=lambda row: (row.student_id,))


async def course_roster(uow: UnitOfWork, *, course_id: str, page: PageRequest) -> Page[EnrollmentView]:
    """Enrolled students by id, then the waitlist by position; the cursor says which part it is in."""
    phase, key = page.after if page.after is not None else (_ENROLLED_PHASE, None)
    if (phase, type(key)) not in ((_ENROLLED_PHASE, str), (_ENROLLED_PHASE, type(None)), (_WAITLIST_PHASE, int)):
        raise InvalidInputError("cursor is not valid.")
    views: list[tuple[tuple[int, object], EnrollmentView]] = []
    async with uow.reading() as reads:
        if not await reads.courses.exists(course_id):
            raise CourseNotFoundError()
        if phase == _ENROLLED_PHASE:
            after = PageRequest(page.limit, None if key is None else (key,))
            for row in await reads.enrollments.list_enrolled(course_id, page=after):
                views.append(((_ENROLLED_PHASE, row.student_id), _view(row)))
            key = None
        room = page.limit + 1 - len(views)
        if room > 0:
            waiting = await reads.enrollments.list_waitlisted(
                course_id, limit=room, after_seq=key if phase == _WAITLIST_PHASE else None
            )
            if waiting:
                first = await reads.enrollments.waitlist_position(course_id, waiting[0].waitlist_seq or 0)
                for offset, row in enumerate(waiting):
                    views.append(((_WAITLIST_PHASE, row.waitlist_seq or 0), _view(row, first + offset)))
    result = make_page(views, page, key=lambda item: item[0])
    return Page([view for _, view in result.items], result.next_after)


async def course_events(uow: UnitOfWork, *, course_id: str, page: PageRequest) -> Page[CourseEvent]:
    """The course's audit trail, oldest first; kept after the course itself is deleted."""
    async with uow.reading() as reads:
        rows = list(await reads.events.list(course_id, page))
    return make_page(rows, page, key=lambda event: (event.event_id,))


def _view(row: Enrollment, position: int | None = None) -> EnrollmentView:
    return EnrollmentView(row.student_id, row.course_id, row.status, row.created_at, position)
