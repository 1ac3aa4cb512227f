"""The registrar's portal endpoints (admin): CSV import of the catalogue, and the registration-morning dashboard."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import Field, StrictStr
from starlette.responses import Response

from course_signup.adapters.activity import requests_served
from course_signup.api.deps import Admin, AdmissionsDep, CacheDep, ReadUowDep, UowDep, note_write
from course_signup.api.envelope import ok
from course_signup.api.schemas import Envelope, Schema, error_response, error_responses, rfc3339
from course_signup.services import catalogue_upload, dashboard

router = APIRouter(tags=["admin"])

# Registrar views are never stored by caches (the middleware's default for these paths is no-cache).
PRIVATE = {"Cache-Control": "no-store"}
CSV_HELP = (
    "The CSV file's text, as `course-signup import-courses` reads it: UTF-8, the header on line 1 naming the "
    "columns courseId, name (both required), lessons, capacity, registrationOpensAt, registrationClosesAt. "
    "The request body, and so the file, is at most 64 KiB."
)


class CourseImportCreate(Schema):
    csv: StrictStr = Field(description=CSV_HELP, examples=["courseId,name\nCS301,Compilers\n"])


class CourseImportOut(Schema):
    status: Literal["imported"]
    added: int = Field(ge=0, description="Courses that were new.")
    changed: int = Field(ge=0, description="Courses that existed and were updated.")


class CourseActivityOut(Schema):
    course_id: str
    name: str
    capacity: int | None
    enrolled: int
    seats_left: int | None
    waitlisted: int
    sign_ups: list[int] = Field(description="Sign-ups (enrolled or waitlisted) per minute, oldest first.")


class DashboardOut(Schema):
    since: datetime = Field(description="The start of the first minute; the last minute is the one in progress.")
    sign_ups: list[int] = Field(description="Every course's sign-ups per minute over the last hour, oldest first.")
    courses: list[CourseActivityOut] = Field(description="The busiest courses of the last hour, busiest first.")
    requests_served: int = Field(
        ge=0, description="HTTP requests answered since the service started (all workers), as /metrics counts them."
    )


@router.post(
    "/course-imports",
    operation_id="importCourses",
    dependencies=[Admin],
    response_model=Envelope[CourseImportOut],
    responses={
        **error_responses(401, 403, 413, 415, 503),
        400: error_response(
            400,
            "A line is bad (or the body is): nothing was imported; `data` names every bad line by its number.",
            "Nothing was imported: line 3: capacity must be a whole number >= 0, not 'ten'.",
        ),
        409: error_response(
            409,
            "A line clashes with the catalogue (a capacity below the students enrolled): nothing was imported.",
            "Nothing was imported: line 2: CS101: Capacity is below current enrollment.",
        ),
    },
)
async def import_courses(
    request: Request, body: CourseImportCreate, uow: UowDep, cache: CacheDep, admissions: AdmissionsDep
) -> Response:
    """Insert or update courses from CSV text, all in one transaction, as `course-signup import-courses` does."""
    await note_write(request, catalogue=True)
    added, changed = await catalogue_upload.import_csv(uow, cache, text=body.csv, admissions=admissions)
    response = ok({"status": "imported", "added": added, "changed": changed})
    response.headers.update(PRIVATE)
    return response


@router.get(
    "/dashboard",
    operation_id="dashboard",
    dependencies=[Admin],
    response_model=Envelope[DashboardOut],
    responses=error_responses(401, 403, 503),
)
async def get_dashboard(uow: ReadUowDep) -> Response:
    """Registration morning (admin): sign-ups per minute over the last hour, the busiest courses, requests served."""
    view = await dashboard.registration_morning(uow, at=datetime.now(UTC))
    response = ok(
        {
            "since": rfc3339(view.since),
            "signUps": view.sign_ups,
            "courses": [
                {
                    "courseId": course.course_id,
                    "name": course.name,
                    "capacity": course.capacity,
                    "enrolled": course.enrolled,
                    "seatsLeft": course.seats_left,
                    "waitlisted": course.waitlisted,
                    "signUps": course.sign_ups,
                }
                for course in view.courses
            ],
            "requestsServed": requests_served(),
        }
    )
    response.headers.update(PRIVATE)
    return response
