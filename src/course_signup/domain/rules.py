"""Pure rules: identifier normalisation, the registration window, capacity changes."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from course_signup.domain.errors import (
    CapacityBelowEnrollmentError,
    InvalidInputError,
    RegistrationClosedError,
)

MAX_EMAIL_LENGTH = 254
# What str.strip() and re's \s take for white space, spelled out: JSON Schema's \s (ECMA-262) differs.
WHITESPACE = r"\x09-\x0d\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# The same shapes, as JSON-Schema patterns for the OpenAPI document.
EMAIL_PATTERN = rf"^[{WHITESPACE}]*[^@{WHITESPACE}\x00-\x1f\x7f]+@[^@{WHITESPACE}\x00-\x1f\x7f]+[{WHITESPACE}]*$"
COURSE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
_COURSE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_FORBIDDEN_IN_EMAIL = re.compile(rf"[{WHITESPACE}\x00-\x1f\x7f]")


def normalize_email(raw: str) -> str:
    """Trim and lower-case an e-mail address; raise InvalidInputError if it is not one."""
    # The length is checked after lower-casing: some characters grow ("İ" becomes two), and the
    # stored value must fit the column.
    email = raw.strip().lower()
    local, at, domain = email.rpartition("@")
    if (
        not at
        or not local
        or not domain
        or "@" in local
        or len(email) > MAX_EMAIL_LENGTH
        or _FORBIDDEN_IN_EMAIL.search(email)
    ):
        raise InvalidInputError("studentEmail must be an e-mail address.")
    return email


def normalize_course_id(raw: str) -> str:
    """Upper-case a course id; raise InvalidInputError unless it is 1-32 of A-Z a-z 0-9 _ -."""
    if not _COURSE_ID.fullmatch(raw):
        raise InvalidInputError("courseId must be 1-32 characters of A-Z, a-z, 0-9, _ and -.")
    return raw.upper()


def as_utc(moment: datetime | None) -> datetime | None:
    """Treat a naive time as UTC and convert an aware one to UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def rfc3339(moment: datetime | None) -> str | None:
    """A time as clients read it: RFC 3339 in UTC, whole seconds, with a Z."""
    if moment is None:
        return None
    return as_utc(moment).isoformat(timespec="seconds").replace("+00:00", "Z")  # type: ignore[union-attr]


def registration_is_open(opens_at: datetime | None, closes_at: datetime | None, *, at: datetime) -> bool:
    """True when `at` lies in [opens_at, closes_at); a missing bound does not limit."""
    opens_at, closes_at = as_utc(opens_at), as_utc(closes_at)
    return (opens_at is None or opens_at <= at) and (closes_at is None or at < closes_at)


def ensure_registration_open(opens_at: datetime | None, closes_at: datetime | None, *, at: datetime) -> None:
    if not registration_is_open(opens_at, closes_at, at=at):
        raise RegistrationClosedError()


def ensure_window_valid(opens_at: datetime | None, closes_at: datetime | None) -> None:
    """A window must open before it closes."""
    opens_at, closes_at = as_utc(opens_at), as_utc(closes_at)
    if opens_at is not None and closes_at is not None and closes_at <= opens_at:
        raise InvalidInputError("registrationClosesAt must be after registrationOpensAt.")


def seats_to_promote(*, capacity: int | None, enrolled: int, waitlisted: int) -> int:
    """How many waitlisted students a course with this capacity can admit now."""
    if capacity is None:
        return waitlisted
    return max(0, min(waitlisted, capacity - enrolled))


def ensure_capacity_allowed(new_capacity: int | None, *, enrolled: int) -> None:
    if new_capacity is not None and new_capacity < enrolled:
        raise CapacityBelowEnrollmentError()


def seats_left(capacity: int | None, enrolled: int) -> int | None:
    return None if capacity is None else max(0, capacity - enrolled)
