"""The catalogue (public) and the registrar's course endpoints (admin)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from course_signup.api.deps import (
    Admin,
    AdmissionsDep,
    AnonymousLimit,
    CacheDep,
    EventPageDep,
    PageDep,
    PathCourse,
    ReadUowDep,
    RosterPageDep,
    UowDep,
    note_write,
)
from course_signup.api.envelope import envelope_bytes, ok, page_out
from course_signup.api.response_cache import CACHE_CONTROL, catalogue_response
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
from course_signup.domain import rules
from course_signup.domain.errors import InvalidInputError
from course_signup.domain.models import Course
from course_signup.domain.pagination import Page
from course_signup.services import courses, roster

router = APIRouter(tags=["courses"])

# --- the public catalogue: search, filters and HTTP validators ----------------------------------

_SPACE, _CONTROL = rules.WHITESPACE, r"\x00-\x1f\x7f"  # what str.strip() removes; control characters
# White space around (trimmed), then at least one character, with no control character among them.
SEARCH_PATTERN = rf"^[{_SPACE}]*[^{_SPACE}{_CONTROL}]([^{_CONTROL}]*[^{_SPACE}{_CONTROL}])?[{_SPACE}]*$"
MAX_SEARCH_LENGTH = 100
SEARCH_HELP = (
    "Keeps the courses whose id or name contains this text, ignoring case (`cs1` finds `CS101`, "
    "`calc` finds `Calculus I`). At most 100 characters as sent; leading and trailing white space "
    "is trimmed, and what remains must have at least one character and no control characters, else "
    "400. `%`, `_` and `\\` are ordinary characters, not wildcards. Case is folded by the "
    "database's lower() (on the embedded SQLite database, ASCII letters only)."
)
AVAILABLE_HELP = (
    "`true`: only courses with a seat left (unlimited capacity, or `seatsLeft` > 0) whose "
    "registration window is open now. `false` or absent: no filter."
)
_VALIDATORS = {
    "ETag": {
        "description": "A strong validator of these exact body bytes; send it back in `If-None-Match`.",
        "required": True,
        "schema": {"type": "string"},
        "example": '"GkUwv1lvQFmR6S2w3bRRbA"',
    },
    "Cache-Control": {
        "description": "Any cache may keep the answer but must revalidate it (with `If-None-Match`) before each reuse.",
        "required": True,
        "schema": {"type": "string", "const": CACHE_CONTROL},
    },
}
CONDITIONAL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"headers": _VALIDATORS},
    304: {
        "description": "Not Modified: `If-None-Match` named the current ETag (or was `*`). No body.",
        "headers": _VALIDATORS,
    },
}
IF_NONE_MATCH = {
    "parameters": [
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": (
                "ETags of answers you hold (a comma-separated list, `W/` allowed, or `*`). If one is the "
                "current ETag (weak comparison, RFC 9110 §13.1.2), the answer is 304 with no body."
            ),
            "schema": {"type": "string"},
        }
    ]
}


async def search_text(
    q: Annotated[
        str | None,
        Query(
            max_length=MAX_SEARCH_LENGTH,
            description=SEARCH_HELP,
            json_schema_extra={"minLength": 1, "pattern": SEARCH_PATTERN},
            examples=["calc"],
        ),
    ] = None,
) -> str | None:
    """`q` trimmed; 400 if nothing is left or what is left holds a control character."""
    if q is None:
        return None
    if not re.fullmatch(SEARCH_PATTERN, q):
        raise InvalidInputError("q must have 1-100 characters, not all white space, and no control characters.")
    return q.strip()


SearchText = Annotated[str | None, Depends(search_text)]
Available = Annotated[bool, Query(description=AVAILABLE_HELP)]


@router.get(
    "/courses",
    operation_id="listCourses",
    dependencies=[AnonymousLimit],
    response_model=PagedEnvelope[list[CourseOut]],
    responses={**CONDITIONAL_RESPONSES, **error_responses(400, 429, 503)},
    openapi_extra=IF_NONE_MATCH,
)
async def list_courses(
    request: Request,
    uow: ReadUowDep,
    cache: CacheDep,
    page: PageDep,
    admissions: AdmissionsDep,
    q: SearchText,
    available: Available = False,
) -> Response:
    """The course catalogue, by course id, paginated; `q` searches ids and names, `available` keeps open seats."""

    def render(result: Page[Course]) -> bytes:
        return envelope_bytes(200, [course_out(c) for c in result.items], page=page_out(result, page.limit))

    body = await courses.list_courses(
        uow, cache, page=page, render=render, text=q, available=available, admissions=admissions
    )
    return catalogue_response(request.scope, body)


@router.get(
    "/courses/{courseId}",
    operation_id="getCourse",
    dependencies=[AnonymousLimit],
    response_model=Envelope[CourseOut],
    responses={**CONDITIONAL_RESPONSES, **error_responses(400, 404, 429, 503)},
    openapi_extra=IF_NONE_MATCH,
)
async def get_course(
    request: Request, course_id: PathCourse, uow: ReadUowDep, cache: CacheDep, admissions: AdmissionsDep
) -> Response:
    """One course with its seats and waitlist counts."""

    def render(course: Course) -> bytes:
        return envelope_bytes(200, course_out(course))

    body = await courses.get_course(uow, cache, course_id=course_id, render=render, admissions=admissions)
    return catalogue_response(request.scope, body)


# --- the registrar's endpoints --------------------------------------------------------------------


@router.post(
    "/courses",
    operation_id="createCourse",
    status_code=201,
    dependencies=[Admin],
    response_model=Envelope[CourseOut],
    responses=error_responses(400, 401, 403, 409, 413, 415, 503),
    tags=["admin"],
)
async def create_course(
    request: Request, body: CourseCreate, uow: UowDep, cache: CacheDep, admissions: AdmissionsDep
) -> Response:
    """Add a course to the catalogue (admin)."""
    fields = body.model_dump(exclude={"course_id"})
    await note_write(request, catalogue=True)
    course = await courses.create_course(uow, cache, course_id=body.course_id, admissions=admissions, **fields)
    return ok(course_out(course), status=201)


@router.patch(
    "/courses/{courseId}",
    operation_id="changeCourse",
    dependencies=[Admin],
    response_model=Envelope[CourseOut],
    responses=error_responses(400, 401, 403, 404, 409, 413, 415, 503),
    tags=["admin"],
)
async def change_course(
    request: Request, course_id: PathCourse, body: CoursePatch, uow: UowDep, cache: CacheDep, admissions: AdmissionsDep
) -> Response:
    """Change a course (admin); raising capacity promotes waitlisted students in order."""
    await note_write(request, catalogue=True)
    course = await courses.change_course(uow, cache, course_id=course_id, changes=body.changes(), admissions=admissions)
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
    request: Request,
    course_id: PathCourse,
    uow: UowDep,
    cache: CacheDep,
    admissions: AdmissionsDep,
    force: Annotated[bool, Query(description="Also remove its enrollments and waitlist.")] = False,
) -> Response:
    """Delete a course (admin); one with enrollments or a waitlist only with `?force=true`."""
    await note_write(request, catalogue=True)
    await courses.delete_course(uow, cache, course_id=course_id, force=force, admissions=admissions)
    return ok({"courseId": course_id, "status": "deleted"})


@router.get(
    "/courses/{courseId}/students",
    operation_id="courseRoster",
    dependencies=[Admin],
    response_model=PagedEnvelope[list[EnrollmentOut]],
    responses=error_responses(400, 401, 403, 404, 503),
    tags=["admin"],
)
async def course_roster(course_id: PathCourse, uow: ReadUowDep, page: RosterPageDep) -> Response:
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
async def course_events(course_id: PathCourse, uow: ReadUowDep, page: EventPageDep) -> Response:
    """The course's audit trail (admin), oldest first; kept after the course is deleted."""
    result = await roster.course_events(uow, course_id=course_id, page=page)
    return ok([event_out(e) for e in result.items], page=result, limit=page.limit)
