"""Service-layer test helpers: state is built by calling use cases, never by writing rows."""

from __future__ import annotations

from typing import Any, TypeVar

from course_signup.domain.models import Course
from course_signup.domain.pagination import PageRequest
from course_signup.domain.views import EnrollmentView
from course_signup.services import courses, enrollments, roster
from tests.fakes import FakeCache, FakeUnitOfWork

T = TypeVar("T")
ALICE, BOB, CAROL, DAVE, ERIN = (f"{name}@example.com" for name in ("alice", "bob", "carol", "dave", "erin"))
EVERYTHING = PageRequest(limit=1000)


async def new_course(uow: FakeUnitOfWork, cache: FakeCache, course_id: str = "CS101", **fields: Any) -> str:
    fields.setdefault("name", "Intro to Computer Science")
    await courses.create_course(uow, cache, course_id=course_id, **fields)
    return course_id


def same(value: T) -> T:
    """The identity render: the use cases' cache then holds the objects themselves."""
    return value


async def get_course(uow: FakeUnitOfWork, cache: FakeCache, *, course_id: str) -> Course:
    return await courses.get_course(uow, cache, course_id=course_id, render=same)


async def sign_up(
    uow: FakeUnitOfWork, cache: FakeCache, student: str, course_id: str = "CS101", *, waitlist: bool = False
) -> EnrollmentView:
    return await enrollments.sign_up(uow, cache, student_id=student, course_id=course_id, waitlist=waitlist)


async def drop(uow: FakeUnitOfWork, cache: FakeCache, student: str, course_id: str = "CS101") -> str | None:
    result = await enrollments.drop(uow, cache, student_id=student, course_id=course_id)
    assert (result.student_id, result.course_id) == (student, course_id)
    return result.promoted


async def roster_of(uow: FakeUnitOfWork, course_id: str = "CS101") -> list[tuple[str, str, int | None]]:
    page = await roster.course_roster(uow, course_id=course_id, page=EVERYTHING)
    return [(view.student_id, view.status, view.position) for view in page.items]


async def event_log(uow: FakeUnitOfWork, course_id: str = "CS101") -> list[tuple[str, str]]:
    page = await roster.course_events(uow, course_id=course_id, page=EVERYTHING)
    return [(event.type, event.student_id) for event in page.items]


async def counters(uow: FakeUnitOfWork, course_id: str = "CS101") -> tuple[int, int]:
    course = await get_course(uow, FakeCache(), course_id=course_id)
    return course.enrolled, course.waitlisted
