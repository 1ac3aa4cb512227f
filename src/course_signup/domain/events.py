"""Audit event types, past tense, matching the `type` values of GET /courses/{courseId}/events."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from course_signup.domain.rules import rfc3339


class EventType(StrEnum):
    ENROLLED = "enrolled"
    WAITLISTED = "waitlisted"
    PROMOTED = "promoted"
    DROPPED = "dropped"
    LEFT_WAITLIST = "left_waitlist"


class AuditEvent(Protocol):
    event_id: int
    type: str
    student_id: str
    course_id: str
    at: datetime
    request_id: str | None


def event_view(event: AuditEvent) -> dict[str, Any]:
    """An audit event as clients see it: an item of GET /courses/{courseId}/events, and the body of
    the message the event relay publishes for it."""
    return {
        "eventId": event.event_id,
        "type": event.type,
        "studentId": event.student_id,
        "courseId": event.course_id,
        "at": rfc3339(event.at),
        "requestId": event.request_id,
    }
