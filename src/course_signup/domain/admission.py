"""Who gets a seat: the decision for a batch of sign-ups to one course, taken in arrival order.

One request is a batch of one. The PostgreSQL statement (adapters/repositories/admission.py) takes
the same decision in SQL, from the same two rules on Course (`seats_left`, `is_open_at`); the
SQLite path and the unit-test fakes call `decide` below. A property test holds them to the same
answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from course_signup.domain.models import STATUS_ENROLLED, STATUS_WAITLISTED, Course


class Verdict(StrEnum):
    """How one sign-up request was answered; the first two wrote a row."""

    ENROLLED = "enrolled"
    WAITLISTED = "waitlisted"
    FULL = "full"
    CLOSED = "closed"
    NOT_FOUND = "not found"
    ALREADY_ENROLLED = "already enrolled"
    ALREADY_WAITLISTED = "already waitlisted"


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """One student's sign-up; `request_id` goes into the audit event of the row it writes."""

    student_id: str
    waitlist: bool
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to one request: its verdict, and for a waitlisted student the ticket and position."""

    verdict: Verdict
    at: datetime
    waitlist_seq: int | None = None
    position: int | None = None


def decide(
    course: Course | None,
    requests: Sequence[AdmissionRequest],
    *,
    existing: Mapping[str, str],
    at: datetime,
) -> list[Admission]:
    """Answer each request in order, as if they came one by one (each student at most once).

    Precedence, for each request: no such course, registration closed, already has a row, then a
    free seat, then the waitlist if the student asked to wait, else full. `existing` maps a
    student already enrolled or waitlisted in this course to that status.
    """
    if course is None:
        return [Admission(Verdict.NOT_FOUND, at) for _ in requests]
    if not course.is_open_at(at):
        return [Admission(Verdict.CLOSED, at) for _ in requests]
    seats = course.seats_left
    ticket, waiting = course.waitlist_seq, course.waitlisted
    answers: list[Admission] = []
    for request in requests:
        status = existing.get(request.student_id)
        if status is not None:
            answers.append(
                Admission(Verdict.ALREADY_WAITLISTED if status == STATUS_WAITLISTED else Verdict.ALREADY_ENROLLED, at)
            )
        elif seats is None or seats > 0:
            seats = None if seats is None else seats - 1
            answers.append(Admission(Verdict.ENROLLED, at))
        elif request.waitlist:
            ticket, waiting = ticket + 1, waiting + 1
            answers.append(Admission(Verdict.WAITLISTED, at, waitlist_seq=ticket, position=waiting))
        else:
            answers.append(Admission(Verdict.FULL, at))
    return answers


def status_of(verdict: Verdict) -> str | None:
    """The enrollment status a verdict writes, or None for a refusal."""
    return {Verdict.ENROLLED: STATUS_ENROLLED, Verdict.WAITLISTED: STATUS_WAITLISTED}.get(verdict)
