"""camelCase request models (validated), response models (documented) and the presenters that fill them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    StringConstraints,
    field_validator,
)
from pydantic.alias_generators import to_camel

from course_signup.domain import rules
from course_signup.domain.errors import InvalidInputError
from course_signup.domain.models import Course, CourseEvent, Enrollment
from course_signup.domain.views import DropResult, EnrollmentView, StudentCourseView

T = TypeVar("T")


class Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def _course_id(value: str) -> str:
    try:
        return rules.normalize_course_id(value)
    except InvalidInputError as exc:  # becomes a validation error, so a 400
        raise ValueError(str(exc)) from None


def _whole_number(value: Any) -> Any:
    """JSON Schema's integer: 3 and 3.0 are whole numbers; "3", true and 3.5 are not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number")
    return value


def _rfc3339_text(value: Any) -> Any:
    """Times come as RFC 3339 strings, not as numbers (which pydantic would read as Unix time)."""
    if value is not None and not isinstance(value, str):
        raise ValueError("must be an RFC 3339 time string with an offset, e.g. 2026-11-25T08:00:00Z")
    return value


CourseIdStr = Annotated[StrictStr, StringConstraints(pattern=rules.COURSE_ID_PATTERN), AfterValidator(_course_id)]
WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
Time = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]


# --- requests ---------------------------------------------------------------------------------


class SignUpCreate(Schema):
    course_id: CourseIdStr = Field(examples=["CS101"])
    waitlist: StrictBool = False


class CourseFields(Schema):
    name: StrictStr = Field(min_length=1, max_length=200)
    lessons: WholeNumber = Field(0, ge=0, le=100_000)
    capacity: WholeNumber | None = Field(None, ge=0, le=10_000_000)
    registration_opens_at: Time | None = None
    registration_closes_at: Time | None = None


class CourseCreate(CourseFields):
    course_id: CourseIdStr = Field(examples=["CS201"])


class CoursePatch(Schema):
    """Only the fields present are changed; `capacity: null` means unlimited."""

    name: StrictStr = Field(None, min_length=1, max_length=200)  # type: ignore[assignment]
    lessons: WholeNumber = Field(None, ge=0, le=100_000)  # type: ignore[assignment]
    capacity: WholeNumber | None = Field(None, ge=0, le=10_000_000)
    registration_opens_at: Time | None = None
    registration_closes_at: Time | None = None

    @field_validator("name", "lessons", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null")
        return value

    def changes(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.model_fields_set}


# --- responses (documentation; the presenters below build the same shapes) --------------------


class PageOut(Schema):
    limit: int
    next_cursor: str | None


class Envelope(Schema, Generic[T]):
    code: int = 0
    message: str = "ok"
    data: T


class PagedEnvelope(Envelope[T], Generic[T]):
    page: PageOut


class ErrorEnvelope(Schema):
    code: int = Field(examples=[409])
    message: str = Field(examples=["Status Conflict"])
    data: str = Field(examples=["Course is full."])


class HealthOut(Schema):
    health: str = "Okay"


class CourseOut(Schema):
    course_id: str
    name: str
    lessons: int
    capacity: int | None
    enrolled: int
    seats_left: int | None
    waitlisted: int
    registration_opens_at: datetime | None
    registration_closes_at: datetime | None


class EnrollmentOut(Schema):
    student_id: str
    course_id: str
    status: Literal["enrolled", "waitlisted"]
    enrolled_at: datetime
    position: int | None = Field(None, description="Present when waitlisted; 1 = next in line.")


class StudentCourseOut(Schema):
    course_id: str
    name: str
    lessons: int
    status: Literal["enrolled", "waitlisted"]
    enrolled_at: datetime
    position: int | None = Field(None, description="Present when waitlisted.")


class ClassmateOut(Schema):
    student_id: str
    course_id: str


class DropOut(Schema):
    student_id: str
    course_id: str
    status: Literal["dropped"] = "dropped"
    promoted: str | None


class EventOut(Schema):
    event_id: int
    type: Literal["enrolled", "waitlisted", "promoted", "dropped", "left_waitlist"]
    student_id: str
    course_id: str
    at: datetime
    request_id: str | None


# --- presenters -------------------------------------------------------------------------------


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return rules.as_utc(moment).isoformat(timespec="seconds").replace("+00:00", "Z")  # type: ignore[union-attr]


def course_out(course: Course) -> dict[str, Any]:
    return {
        "courseId": course.course_id,
        "name": course.name,
        "lessons": course.lessons,
        "capacity": course.capacity,
        "enrolled": course.enrolled,
        "seatsLeft": course.seats_left,
        "waitlisted": course.waitlisted,
        "registrationOpensAt": rfc3339(course.registration_opens_at),
        "registrationClosesAt": rfc3339(course.registration_closes_at),
    }


def enrollment_out(view: EnrollmentView) -> dict[str, Any]:
    out: dict[str, Any] = {
        "studentId": view.student_id,
        "courseId": view.course_id,
        "status": view.status,
        "enrolledAt": rfc3339(view.enrolled_at),
    }
    if view.position is not None:
        out["position"] = view.position
    return out


def student_course_out(view: StudentCourseView) -> dict[str, Any]:
    out: dict[str, Any] = {
        "courseId": view.course_id,
        "name": view.name,
        "lessons": view.lessons,
        "status": view.status,
        "enrolledAt": rfc3339(view.enrolled_at),
    }
    if view.position is not None:
        out["position"] = view.position
    return out


def classmate_out(row: Enrollment) -> dict[str, Any]:
    return {"studentId": row.student_id, "courseId": row.course_id}


def drop_out(result: DropResult) -> dict[str, Any]:
    return {
        "studentId": result.student_id,
        "courseId": result.course_id,
        "status": "dropped",
        "promoted": result.promoted,
    }


def event_out(event: CourseEvent) -> dict[str, Any]:
    return {
        "eventId": event.event_id,
        "type": event.type,
        "studentId": event.student_id,
        "courseId": event.course_id,
        "at": rfc3339(event.at),
        "requestId": event.request_id,
    }


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error envelopes a route can answer."""
    return {status: {"model": ErrorEnvelope} for status in (400, *statuses)}
