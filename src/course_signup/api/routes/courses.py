"""The catalogue (public) and the registrar's course endpoints (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from course_signup.api.deps import (
    Admin,
    AnonymousLimit,
    CacheDep,
    EventPageDep,
    PageDep,
    PathCourse,
    RosterPageDep,
    UowDep,
)
from course_signup.api.envelope import envelope_bytes, json_response, ok, page_out
from course_signup.api.schemas import (
    CourseCreate,
    CourseDeletedOut,
    CourseOut,
    CoursePatch,
    EnrollmentOut,
    Envelope,
    EventOut,
    PagedEnvelope,
    course_out,
    enrollment_out,
    error_responses,
    event_out,
)
from course_signup.domain.models import Course
from course_signup.domain.pagination import Page
from course_signup.services import courses, roster

router = APIRouter(tags=["courses"])


@router.get(
    "/courses",
    operation_id="listCourses",
    dependencies=[AnonymousLimit],
    response_model=PagedEnvelope[list[CourseOut]],
    responses=error_responses(400, 429, 503),
)
async def list_courses(uow: UowDep, cache: CacheDep, page: PageDep) -> Response:
    """The course catalogue, by course id, paginated."""

    def render(result: Page[Course]) -> bytes:
        return envelope_bytes(200, [course_out(c) for c in result.items], page=page_out(result, page.limit))

    return json_response(await courses.list_courses(uow, cache, page=page, render=render))


@router.get(
    "/courses/{courseId}",
    operation_id="getCourse",
    dependencies=[AnonymousLimit],
    response_model=Envelope[CourseOut],
    responses=error_responses(400, 404, 429, 503),
)
async def get_course(course_id: PathCourse, uow: UowDep, cache: CacheDep) -> Response:
    """One course with its seats and waitlist counts."""

    def render(course: Course) -> bytes:
        return envelope_bytes(200, course_out(course))

    return json_response(await courses.get_course(uow, cache, course_id=course_id, render=render))


@router.post(
    "/courses",
    operation_id="createCourse",
    status_code=201,
    dependencies=[Admin],
    response_model=Envelope[CourseOut],
    responses=error_responses(400, 401, 403, 409, 413, 415, 503),
    tags=["admin"],
)
async def create_course(body: CourseCreate, uow: UowDep, cache: CacheDep) -> Response:
    """Add a course to the catalogue (admin)."""
    fields = body.model_dump(exclude={"course_id"})
    course = await courses.create_course(uow, cache, course_id=body.course_id, **fields)
    return ok(course_out(course), status=201)


@router.patch(
    "/courses/{courseId}",
    operation_id="changeCourse",
    dependencies=[Admin],
    response_model=Envelope[CourseOut],
    responses=error_responses(400, 401, 403, 404, 409, 413, 415, 503),
    tags=["admin"],
)
async def change_course(course_id: PathCourse, body: CoursePatch, uow: UowDep, cache: CacheDep) -> Response:
    """Change a course (admin); raising capacity promotes waitlisted students in order."""
    course = await courses.change_course(uow, cache, course_id=course_id, changes=body.changes())
    return ok(course_out(course))


@router.delete(
    "/courses/{courseId}",
    operation_id="deleteCourse",
    dependencies=[Admin],
    response_model=Envelope[CourseDeletedOut],
    responses=error_responses(400, 401, 403, 404, 409, 503),
    tags=["admin"],
)
async def delete_course(
    course_id: PathCourse,
    uow: UowDep,
    cache: CacheDep,
    force: Annotated[bool, Query(description="Also remove its enrollments and waitlist.")] = False,
) -> Response:
    """Delete a course (admin); one with enrollments or a waitlist only with `?force=true`."""
    await courses.delete_course(uow, cache, course_id=course_id, force=force)
    return ok({"courseId": course_id, "status": "deleted"})


@router.get(
    "/courses/{courseId}/students",
    operation_id="courseRoster",
    dependencies=[Admin],
    response_model=PagedEnvelope[list[EnrollmentOut]],
    responses=error_responses(400, 401, 403, 404, 503),
    tags=["admin"],
)
async def course_roster(course_id: PathCourse, uow: UowDep, page: RosterPageDep) -> Response:
    """The roster (admin): enrolled students by id, then the waitlist by position."""
    result = await roster.course_roster(uow, course_id=course_id, page=page)
    return ok([enrollment_out(v) for v in result.items], page=result, limit=page.limit)


@router.get(
    "/courses/{courseId}/events",
    operation_id="courseEvents",
    dependencies=[Admin],
    response_model=PagedEnvelope[list[EventOut]],
    responses=error_responses(400, 401, 403, 503),
    tags=["admin"],
)
async def course_events(course_id: PathCourse, uow: UowDep, page: EventPageDep) -> Response:
    """The course's audit trail (admin), oldest first; kept after the course is deleted."""
    result = await roster.course_events(uow, course_id=course_id, page=page)
    return ok([event_out(e) for e in result.items], page=result, limit=page.limit)
