"""camelCase request models (validated), response models (documented) and the presenters that fill them."""

from __future__ import annotations

from datetime import UTC, datetime
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
from pydantic.json_schema import SkipJsonSchema

from course_signup.adapters.replicas import ReplicaStatus
from course_signup.api.envelope import REASONS
from course_signup.domain import rules
from course_signup.domain.errors import InvalidInputError
from course_signup.domain.events import event_view
from course_signup.domain.models import Course, CourseEvent, Enrollment
from course_signup.domain.rules import rfc3339
from course_signup.domain.views import DropResult, EnrollmentView, StudentCourseView

T = TypeVar("T")

MAX_LESSONS = 100_000
MAX_CAPACITY = 10_000_000


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


def _representable_in_utc(value: datetime) -> datetime:
    """A time whose UTC date falls outside years 1-9999 cannot be converted, compared or stored."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must fall within the years 0001-9999 in UTC") from None
    return value


CourseIdStr = Annotated[StrictStr, StringConstraints(pattern=rules.COURSE_ID_PATTERN), AfterValidator(_course_id)]
# The bounds come before the BeforeValidator so that they become JSON Schema's minimum/maximum, also
# inside `capacity`'s anyOf (after it, pydantic writes them as keywords no client reads).
Lessons = Annotated[int, Field(ge=0, le=MAX_LESSONS), BeforeValidator(_whole_number)]
Capacity = Annotated[int, Field(ge=0, le=MAX_CAPACITY), BeforeValidator(_whole_number)]
Time = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_representable_in_utc)]

WINDOW_RULE = (
    "When both are set, `registrationClosesAt` must be later than `registrationOpensAt`, else 400 "
    "(JSON Schema cannot compare two fields)."
)
TIME_RULE = "An RFC 3339 time within the years 0001-9999 once in UTC; a leap second (:60) is a 400."
OPENS_HELP = f"Sign-ups open then; null: already open. {TIME_RULE}"
CLOSES_HELP = f"Sign-ups close then; null: never. {TIME_RULE} {WINDOW_RULE}"


# --- requests ---------------------------------------------------------------------------------


class SignUpCreate(Schema):
    course_id: CourseIdStr = Field(examples=["CS101"])
    waitlist: StrictBool = False


class CourseFields(Schema):
    name: StrictStr = Field(min_length=1, max_length=200)
    lessons: Lessons = 0
    capacity: Capacity | None = Field(None, description="Seats; null means unlimited.")
    registration_opens_at: Time | None = Field(None, description=OPENS_HELP)
    registration_closes_at: Time | None = Field(None, description=CLOSES_HELP)


class CourseCreate(CourseFields):
    __doc__ = f"A new course. {WINDOW_RULE}"

    course_id: CourseIdStr = Field(examples=["CS201"])


class CoursePatch(Schema):
    __doc__ = (
        "Only the fields present are changed; `capacity: null` means unlimited. The window is checked "
        f"with the stored value of a field left out. {WINDOW_RULE}"
    )

    name: StrictStr = Field(None, min_length=1, max_length=200)  # type: ignore[assignment]
    lessons: Lessons = None  # type: ignore[assignment]
    capacity: Capacity | None = Field(None, description="Seats; null means unlimited.")
    registration_opens_at: Time | None = Field(None, description=OPENS_HELP)
    registration_closes_at: Time | None = Field(None, description=CLOSES_HELP)

    @field_validator("name", "lessons", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null")
        return value

    def changes(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.model_fields_set}


# --- responses (documentation; the presenters below build the same shapes) --------------------


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def absent_unless(description: str) -> Any:
    """A key the answer leaves out (never sends as null) unless `description` holds."""
    return Field(None, description=description, json_schema_extra=_no_default)


class PageOut(Schema):
    limit: int = Field(ge=1, le=1000)
    next_cursor: str | None = Field(description="The `cursor` of the next page; null on the last page.")


# Response models document what the presenters below send; a key that is always sent is required.
class Envelope(Schema, Generic[T]):
    code: Literal[0]
    message: Literal["ok"]
    data: T


class PagedEnvelope(Envelope[T], Generic[T]):
    page: PageOut


class ErrorEnvelope(Schema):
    """Every error answer: `code` is the HTTP status, `message` its reason phrase, `data` one sentence."""

    code: int = Field(ge=400, le=599, examples=[409])
    message: str = Field(examples=["Status Conflict"])
    data: str = Field(description="One human-readable sentence.", examples=["Course is full."])


class HealthOut(Schema):
    health: Literal["Okay"]


class ReplicaOut(Schema):
    """A read replica as the lag checks see it; unless `state` is `ok`, its reads go to the primary."""

    replica: int = Field(ge=1, description="Its place in DATABASE_REPLICA_URLS, from 1.")
    state: Literal["ok", "lagging", "down", "not-in-recovery"] = Field(
        description="`lagging`: may be more than REPLICA_MAX_LAG_SECONDS behind; `not-in-recovery`: promoted, "
        "or not a replica."
    )
    lag_seconds: float | None = Field(
        ge=0,
        description="At most this far behind the primary (an upper bound from WAL positions checked about "
        "twice a second); null when down, not in recovery or too far behind to tell.",
    )


class ReadyOut(Schema):
    """Each configured dependency answered; one that is not configured is left out."""

    database: Literal["ok"]
    redis: Literal["ok"] | SkipJsonSchema[None] = absent_unless("Present when REDIS_URL is set.")
    broker: Literal["ok"] | SkipJsonSchema[None] = absent_unless("Present when BROKER_URL is set.")
    admission: Literal["ok"] | SkipJsonSchema[None] = absent_unless(
        "Present in queue admission mode (ADMISSION=queue): the admission state is loaded in Redis. While it "
        "is not (first start, or Redis came back empty and the worker is reloading it), /ready is 503."
    )
    replicas: list[ReplicaOut] | SkipJsonSchema[None] = absent_unless(
        "Present when DATABASE_REPLICA_URLS is set. A replica that lags or is down leaves the service ready: "
        "its reads go to the primary."
    )


class CourseDeletedOut(Schema):
    course_id: str
    status: Literal["deleted"]


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
    position: Annotated[int, Field(ge=1)] | SkipJsonSchema[None] = absent_unless(
        "Present when waitlisted; 1 = next in line."
    )


class StudentCourseOut(Schema):
    course_id: str
    name: str
    lessons: int
    status: Literal["enrolled", "waitlisted"]
    enrolled_at: datetime
    position: Annotated[int, Field(ge=1)] | SkipJsonSchema[None] = absent_unless(
        "Present when waitlisted; 1 = next in line."
    )


class ClassmateOut(Schema):
    student_id: str
    course_id: str


class DropOut(Schema):
    student_id: str
    course_id: str
    status: Literal["dropped"]
    promoted: str | None


class EventOut(Schema):
    event_id: int
    type: Literal["enrolled", "waitlisted", "promoted", "dropped", "left_waitlist"]
    student_id: str
    course_id: str
    at: datetime
    request_id: str | None


# --- presenters -------------------------------------------------------------------------------


def replica_out(status: ReplicaStatus) -> dict[str, Any]:
    lag = None if status.lag_seconds is None else round(status.lag_seconds, 3)
    return {"replica": status.number, "state": status.state, "lagSeconds": lag}


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
    return event_view(event)


# --- OpenAPI entries for error answers -----------------------------------------------------------

_RETRY_AFTER = {
    "description": "Seconds to wait before trying again.",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {"required": True, "schema": {"type": "string"}, "example": 'Bearer realm="course-signup"'}
    },
    429: {"Retry-After": _RETRY_AFTER},
    503: {"Retry-After": _RETRY_AFTER},
}
_ERRORS: dict[int, tuple[str, str]] = {  # status: (when, a typical sentence)
    400: (
        "Not valid: malformed JSON, a wrong type, a missing field, a value out of bounds, a bad id or cursor, "
        "or a rule the schema cannot express (see the descriptions).",
        "courseId must be 1-32 characters of A-Z, a-z, 0-9, _ and -.",
    ),
    401: ("No bearer token, or one that is malformed, badly signed or expired.", "A bearer token is required."),
    403: (
        "The token is another student's, or not an admin's; checked before any lookup.",
        "You may not act on this resource.",
    ),
    404: ("Not found; `data` says what.", "Course not found."),
    409: ("Conflicts with the current state; `data` says how.", "Course is full."),
    413: ("The request body is larger than 64 KiB.", "The request body is larger than 64 KiB."),
    415: ("The request body is not `application/json`.", "The request body must be application/json."),
    429: (
        "Too many requests from this caller; try again after `Retry-After` seconds.",
        "Too many requests; try again later.",
    ),
    503: (
        "The database (or a required Redis or broker) is unreachable, or the connection pool is exhausted; "
        "nothing is left half done. Try again after `Retry-After` seconds.",
        "The database is unavailable; try again shortly.",
    ),
}


IDEMPOTENT_REPLAYED = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the same Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def error_response(status: int, description: str | None = None, sentence: str | None = None) -> dict[str, Any]:
    """The OpenAPI entry of one error answer: the envelope, its headers, and an example."""
    when, typical = _ERRORS[status]
    example = {"code": status, "message": REASONS[status], "data": sentence or typical}
    entry: dict[str, Any] = {
        "model": ErrorEnvelope,
        "description": description or when,
        "content": {"application/json": {"example": example}},
    }
    if status in _ERROR_HEADERS:
        entry["headers"] = _ERROR_HEADERS[status]
    return entry


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers an operation can give (400 only where it takes input)."""
    return {status: error_response(status) for status in statuses}
