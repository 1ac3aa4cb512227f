"""Domain errors; each carries the sentence API.md gives for it. Only api/errors.py knows status codes."""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    """A request the rules refuse; `sentence` is what the client reads."""

    sentence: ClassVar[str] = "Request conflicts with the current state."

    def __str__(self) -> str:
        return self.sentence


class InvalidInputError(DomainError):
    """Input that passed the schema but breaks a rule (a bad id, a bad cursor); 400."""

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self._sentence = sentence

    def __str__(self) -> str:
        return self._sentence


class CourseNotFoundError(DomainError):
    sentence = "Course not found."


class EnrollmentNotFoundError(DomainError):
    sentence = "Enrollment not found."


class NotClassmateError(DomainError):
    sentence = "Student is not signed up for this course."


class AlreadyEnrolledError(DomainError):
    sentence = "Student has already signed up for this course."


class AlreadyWaitlistedError(DomainError):
    sentence = "Student is already on the waitlist for this course."


class CourseFullError(DomainError):
    sentence = "Course is full."


class RegistrationClosedError(DomainError):
    sentence = "Registration is closed for this course."


class CourseExistsError(DomainError):
    sentence = "Course already exists."


class CapacityBelowEnrollmentError(DomainError):
    sentence = "Capacity is below current enrollment."


class CourseHasEnrollmentsError(DomainError):
    sentence = "Course has enrollments."


class IdempotencyKeyReusedError(DomainError):
    sentence = "Idempotency-Key reused with a different request."


class UnauthenticatedError(DomainError):
    sentence = "A valid bearer token is required."

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or self.sentence)
        self.reason = reason or self.sentence

    def __str__(self) -> str:
        return self.reason


class ForbiddenError(DomainError):
    sentence = "You may not act on this resource."


class IdempotencyKeyInFlightError(DomainError):
    sentence = "A request with this Idempotency-Key is still in progress."


class RateLimitedError(DomainError):
    sentence = "Too many requests; try again later."

    def __init__(self, retry_after: int) -> None:
        super().__init__(self.sentence)
        self.retry_after = retry_after


class AdmissionUnavailableError(DomainError):
    """Queue mode cannot decide or hand off a sign-up or drop right now; nothing was admitted (503)."""

    sentence = "Sign-ups are paused for a moment; try again shortly."
