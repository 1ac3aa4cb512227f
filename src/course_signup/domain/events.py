"""Audit event types, past tense, matching the `type` values of GET /courses/{courseId}/events."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    ENROLLED = "enrolled"
    WAITLISTED = "waitlisted"
    PROMOTED = "promoted"
    DROPPED = "dropped"
    LEFT_WAITLIST = "left_waitlist"
