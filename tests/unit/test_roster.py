"""Who is in a course: classmates and the admin roster, on the in-memory fakes."""

from __future__ import annotations

import pytest

from course_signup.domain.errors import CourseNotFoundError, InvalidInputError, NotClassmateError
from course_signup.domain.models import STATUS_ENROLLED, STATUS_WAITLISTED
from course_signup.domain.pagination import PageRequest, decode_cursor
from course_signup.services import roster
from tests.fakes import FakeCache, FakeUnitOfWork
from tests.unit.helpers import ALICE, BOB, CAROL, DAVE, ERIN, EVERYTHING, new_course, roster_of, sign_up

ROSTER_SHAPE = (int, (str, int))  # (part, student id | waitlist ticket)


# --- classmates and roster ------------------------------------------------------------------------


async def test_classmates_are_the_other_enrolled_students_by_id(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=3)
    for student in (CAROL, ALICE, BOB):
        await sign_up(uow, cache, student)
    await sign_up(uow, cache, DAVE, waitlist=True)
    await new_course(uow, cache, "CS102")
    await sign_up(uow, cache, ERIN, "CS102")

    page = await roster.list_classmates(uow, student_id=BOB, course_id="CS101", page=EVERYTHING)

    assert [(row.student_id, row.course_id) for row in page.items] == [(ALICE, "CS101"), (CAROL, "CS101")]


async def test_classmates_page_by_student_id(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache)
    for student in (ALICE, BOB, CAROL, DAVE):
        await sign_up(uow, cache, student)

    first = await roster.list_classmates(uow, student_id=CAROL, course_id="CS101", page=PageRequest(limit=2))
    after = decode_cursor(first.next_cursor or "", shape=(str,))
    second = await roster.list_classmates(uow, student_id=CAROL, course_id="CS101", page=PageRequest(2, after))

    assert [row.student_id for row in first.items] == [ALICE, BOB]
    assert [row.student_id for row in second.items] == [DAVE]
    assert second.next_cursor is None


async def test_classmates_of_a_student_not_enrolled_raise_not_classmate(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=1)
    await sign_up(uow, cache, ALICE)
    await sign_up(uow, cache, BOB, waitlist=True)

    for student, course_id in ((CAROL, "CS101"), (BOB, "CS101"), (ALICE, "NOPE")):
        with pytest.raises(NotClassmateError):
            await roster.list_classmates(uow, student_id=student, course_id=course_id, page=EVERYTHING)


async def test_roster_lists_enrolled_by_id_then_waitlist_by_position(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=2)
    for student in (CAROL, ALICE):
        await sign_up(uow, cache, student)
    for student in (ERIN, BOB, DAVE):
        await sign_up(uow, cache, student, waitlist=True)

    assert await roster_of(uow) == [
        (ALICE, STATUS_ENROLLED, None),
        (CAROL, STATUS_ENROLLED, None),
        (ERIN, STATUS_WAITLISTED, 1),
        (BOB, STATUS_WAITLISTED, 2),
        (DAVE, STATUS_WAITLISTED, 3),
    ]


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5, 6])
async def test_roster_pages_join_up_across_the_enrolled_and_waitlisted_parts(
    uow: FakeUnitOfWork, cache: FakeCache, limit: int
) -> None:
    await new_course(uow, cache, capacity=2)
    for student in (CAROL, ALICE):
        await sign_up(uow, cache, student)
    for student in (ERIN, BOB, DAVE):
        await sign_up(uow, cache, student, waitlist=True)
    everything = await roster_of(uow)

    seen: list[tuple[str, str, int | None]] = []
    after = None
    for _ in range(10):
        page = await roster.course_roster(uow, course_id="CS101", page=PageRequest(limit, after))
        assert len(page.items) <= limit
        seen += [(view.student_id, view.status, view.position) for view in page.items]
        if page.next_cursor is None:
            break
        after = decode_cursor(page.next_cursor, shape=ROSTER_SHAPE)  # the cursor survives the trip through the client

    assert seen == everything


@pytest.mark.parametrize("after", [(0, 7), (1, "alice@example.com"), (2, 1), (1, None)])
async def test_roster_refuses_a_cursor_naming_no_part_of_the_roster(
    uow: FakeUnitOfWork, cache: FakeCache, after: tuple[object, ...]
) -> None:
    await new_course(uow, cache)

    with pytest.raises(InvalidInputError):
        await roster.course_roster(uow, course_id="CS101", page=PageRequest(10, after))


async def test_roster_of_an_unknown_course_raises_course_not_found(uow: FakeUnitOfWork) -> None:
    with pytest.raises(CourseNotFoundError):
        await roster.course_roster(uow, course_id="NOPE", page=EVERYTHING)
