"""A student's own courses: sign up, drop, list, and classmates."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from course_signup.api.deps import (
    AdmissionsDep,
    CacheDep,
    PageDep,
    PathCourse,
    PathStudent,
    ReadUowDep,
    StatusFilter,
    UowDep,
    WriteLimit,
    note_write,
)
from course_signup.api.envelope import ok
from course_signup.api.idempotency import IdempotencyDep
from course_signup.api.schemas import (
    IDEMPOTENT_REPLAYED,
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
    error_response,
    error_responses,
    student_course_out,
)
from course_signup.services import enrollments, roster

router = APIRouter(tags=["students"])


@router.post(
    "/students/{studentEmail}/courses",
    operation_id="signUp",
    dependencies=[WriteLimit],
    response_model=Envelope[EnrollmentOut],
    responses={
        200: {"description": "Enrolled.", "headers": IDEMPOTENT_REPLAYED},
        202: {
            "model": Envelope[EnrollmentOut],
            "description": "The course is full: waitlisted, with `position`.",
            "headers": IDEMPOTENT_REPLAYED,
        },
        **error_responses(400, 401, 403, 413, 415, 429, 503),
        404: {**error_response(404), "headers": IDEMPOTENT_REPLAYED},
        409: {
            **error_response(409),
            "description": "Already enrolled or waitlisted, the course is full (and `waitlist` is not true), "
            "registration is closed, or the Idempotency-Key was used with another body.",
            "headers": IDEMPOTENT_REPLAYED,
        },
    },
)
async def sign_up(
    request: Request,
    student: PathStudent,
    body: SignUpCreate,
    uow: UowDep,
    cache: CacheDep,
    admissions: AdmissionsDep,
    idempotency: IdempotencyDep,
) -> Response:
    """Enroll the student in a course, or waitlist them when it is full and they asked to wait."""

    async def answer() -> Response:
        await note_write(request, student=student, catalogue=True)  # the seat figures change too
        view = await enrollments.sign_up(
            uow, cache, student_id=student, course_id=body.course_id, waitlist=body.waitlist, admissions=admissions
        )
        return ok(enrollment_out(view), status=200 if view.is_enrolled else 202)

    return await idempotency.run(student, body, answer)


@router.get(
    "/students/{studentEmail}/courses",
    operation_id="myCourses",
    response_model=PagedEnvelope[list[StudentCourseOut]],
    responses=error_responses(400, 401, 403, 503),
)
async def my_courses(student: PathStudent, uow: ReadUowDep, page: PageDep, status: StatusFilter = None) -> Response:
    """The student's courses, enrolled and waitlisted, by course id; `?status=` filters."""
    result = await enrollments.list_my_courses(uow, student_id=student, status=status, page=page)
    return ok([student_course_out(v) for v in result.items], page=result, limit=page.limit)


@router.delete(
    "/students/{studentEmail}/courses/{courseId}",
    operation_id="dropCourse",
    dependencies=[WriteLimit],
    response_model=Envelope[DropOut],
    responses=error_responses(400, 401, 403, 404, 429, 503),
)
async def drop(
    request: Request,
    student: PathStudent,
    course_id: PathCourse,
    uow: UowDep,
    cache: CacheDep,
    admissions: AdmissionsDep,
) -> Response:
    """Drop a course or leave its waitlist; a freed seat goes to the first waitlisted student."""
    await note_write(request, student=student, catalogue=True)
    result = await enrollments.drop(uow, cache, student_id=student, course_id=course_id, admissions=admissions)
    return ok(drop_out(result))


@router.get(
    "/students/{studentEmail}/courses/{courseId}/classmates",
    operation_id="classmates",
    response_model=PagedEnvelope[list[ClassmateOut]],
    responses=error_responses(400, 401, 403, 404, 503),
)
async def classmates(student: PathStudent, course_id: PathCourse, uow: ReadUowDep, page: PageDep) -> Response:
    """The other students enrolled in a course the student is enrolled in, by student id."""
    result = await roster.list_classmates(uow, student_id=student, course_id=course_id, page=page)
    return ok([classmate_out(r) for r in result.items], page=result, limit=page.limit)
