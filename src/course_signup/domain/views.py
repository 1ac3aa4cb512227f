"""Read models the use cases return: an enrollment as the API shows it, a course on a student's list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from course_signup.domain.models import STATUS_ENROLLED


@dataclass(frozen=True, slots=True)
class EnrollmentView:
    student_id: str
    course_id: str
    status: str
    enrolled_at: datetime
    position: int | None = None  # 1 = next in line; only for waitlisted

    @property
    def is_enrolled(self) -> bool:
        return self.status == STATUS_ENROLLED


@dataclass(frozen=True, slots=True)
class StudentCourseView:
    course_id: str
    name: str
    lessons: int
    status: str
    enrolled_at: datetime
    position: int | None = None


@dataclass(frozen=True, slots=True)
class DropResult:
    student_id: str
    course_id: str
    promoted: str | None
