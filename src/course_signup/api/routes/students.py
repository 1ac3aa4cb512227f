"""A student's own courses: sign up, drop, list, and classmates."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from course_signup.api.deps import CacheDep, PageDep, PathCourse, PathStudent, StatusFilter, UowDep, WriteLimit
from course_signup.api.envelope import ok
from course_signup.api.idempotency import IdempotencyDep
from course_signup.api.schemas import (
    ClassmateOut,
    DropOut,
    EnrollmentOut,
    Envelope,
    PagedEnvelope,
    SignUpCreate,
    StudentCourseOut,
    classmate_out,
    drop_out,
    enrollment_out,
    error_responses,
    student_course_out,
)
from course_signup.services import enrollments, roster

router = APIRouter(tags=["students"])


@router.post(
    "/students/{studentEmail}/courses",
    dependencies=[WriteLimit],
    response_model=Envelope[EnrollmentOut],
    responses={
        202: {"model": Envelope[EnrollmentOut], "description": "The course is full: waitlisted, with `position`."},
        **error_responses(401, 403, 404, 409, 413, 415, 429),
    },
)
async def sign_up(
    student: PathStudent, body: SignUpCreate, uow: UowDep, cache: CacheDep, idempotency: IdempotencyDep
) -> Response:
    """Enroll the student in a course, or waitlist them when it is full and they asked to wait."""

    async def answer() -> Response:
        view = await enrollments.sign_up(
            uow, cache, student_id=student, course_id=body.course_id, waitlist=body.waitlist
        )
        return ok(enrollment_out(view), status=200 if view.is_enrolled else 202)

    return await idempotency.run(student, body, answer)


@router.get(
    "/students/{studentEmail}/courses",
    response_model=PagedEnvelope[list[StudentCourseOut]],
    responses=error_responses(401, 403),
)
async def my_courses(student: PathStudent, uow: UowDep, page: PageDep, status: StatusFilter = None) -> Response:
    """The student's courses, enrolled and waitlisted, by course id; `?status=` filters."""
    result = await enrollments.list_my_courses(uow, student_id=student, status=status, page=page)
    return ok([student_course_out(v) for v in result.items], page=result, limit=page.limit)


@router.delete(
    "/students/{studentEmail}/courses/{courseId}",
    dependencies=[WriteLimit],
    response_model=Envelope[DropOut],
    responses=error_responses(401, 403, 404, 429),
)
async def drop(student: PathStudent, course_id: PathCourse, uow: UowDep, cache: CacheDep) -> Response:
    """Drop a course or leave its waitlist; a freed seat goes to the first waitlisted student."""
    result = await enrollments.drop(uow, cache, student_id=student, course_id=course_id)
    return ok(drop_out(result))


@router.get(
    "/students/{studentEmail}/courses/{courseId}/classmates",
    response_model=PagedEnvelope[list[ClassmateOut]],
    responses=error_responses(401, 403, 404),
)
async def classmates(student: PathStudent, course_id: PathCourse, uow: UowDep, page: PageDep) -> Response:
    """The other students enrolled in a course the student is enrolled in, by student id."""
    result = await roster.list_classmates(uow, student_id=student, course_id=course_id, page=page)
    return ok([classmate_out(r) for r in result.items], page=result, limit=page.limit)
