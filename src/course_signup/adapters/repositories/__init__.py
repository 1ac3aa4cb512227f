"""Repositories: every SQL statement the service runs, behind methods named in domain terms.

One module per table (courses, enrollments, events, idempotency) plus the admission statement; a
repository runs on a session (a unit of work) or, for a use case that only reads, on a pooled
connection (UnitOfWork.reading).
"""

from course_signup.adapters.repositories._sql import Executor
from course_signup.adapters.repositories.admission import _ADMIT
from course_signup.adapters.repositories.courses import CourseRepository
from course_signup.adapters.repositories.enrollments import EnrollmentRepository, _student_courses_statement
from course_signup.adapters.repositories.events import EventRepository
from course_signup.adapters.repositories.idempotency import IdempotencyRepository

__all__ = [
    "_ADMIT",
    "CourseRepository",
    "EnrollmentRepository",
    "EventRepository",
    "Executor",
    "IdempotencyRepository",
    "_student_courses_statement",
]
