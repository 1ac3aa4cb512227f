"""The catalogue and its admin use cases (list, create, seed, change, delete) on the in-memory fakes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from course_signup.domain.errors import (
    CapacityBelowEnrollmentError,
    CourseExistsError,
    CourseFullError,
    CourseHasEnrollmentsError,
    CourseNotFoundError,
    InvalidInputError,
)
from course_signup.domain.models import STATUS_ENROLLED, STATUS_WAITLISTED, utcnow
from course_signup.domain.pagination import PageRequest, decode_cursor
from course_signup.services import courses, enrollments
from tests.fakes import FakeCache, FakeUnitOfWork
from tests.unit.helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    EVERYTHING,
    counters,
    drop,
    event_log,
    get_course,
    new_course,
    roster_of,
    same,
    sign_up,
)

# --- admin: create, change, delete ----------------------------------------------------------------


async def test_creating_an_existing_course_raises_course_exists(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, name="First")

    with pytest.raises(CourseExistsError):
        await new_course(uow, cache, name="Second")

    assert (await get_course(uow, cache, course_id="CS101")).name == "First"


async def test_create_course_rejects_a_window_that_closes_before_it_opens(
    uow: FakeUnitOfWork, cache: FakeCache
) -> None:
    now = utcnow()
    with pytest.raises(InvalidInputError):
        await new_course(uow, cache, registration_opens_at=now, registration_closes_at=now - timedelta(hours=1))
    with pytest.raises(CourseNotFoundError):
        await get_course(uow, cache, course_id="CS101")


async def test_list_courses_pages_by_course_id(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    for course_id in ("PHYS150", "CS102", "MATH255", "CS101"):
        await new_course(uow, cache, course_id)

    first = await courses.list_courses(uow, cache, page=PageRequest(limit=3), render=same)
    second = await courses.list_courses(
        uow, cache, page=PageRequest(limit=3, after=decode_cursor(first.next_cursor or "", shape=(str,))), render=same
    )

    assert [c.course_id for c in first.items] == ["CS101", "CS102", "MATH255"]
    assert [c.course_id for c in second.items] == ["PHYS150"]
    assert second.next_cursor is None


async def test_list_courses_filters_by_text_and_open_seats(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, "CS101", name="Intro to Computing", capacity=1)
    await new_course(uow, cache, "MATH255", name="Linear Algebra")
    await new_course(
        uow, cache, "PHYS150", name="Computational Physics", registration_opens_at=utcnow() + timedelta(days=1)
    )
    await enrollments.sign_up(uow, cache, student_id=ALICE, course_id="CS101", waitlist=False)
    everything = PageRequest(limit=10)

    async def ids(**filters: object) -> list[str]:
        page = await courses.list_courses(uow, cache, page=everything, render=same, **filters)  # type: ignore[arg-type]
        return [c.course_id for c in page.items]

    assert await ids(text="comput") == ["CS101", "PHYS150"]  # id or name, any case
    assert await ids(text="math") == ["MATH255"]
    assert await ids(available=True) == ["MATH255"]  # CS101 is full, PHYS150 not open yet
    assert await ids(text="comput", available=True) == []


async def test_seed_catalogue_adds_the_original_courses_once(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    assert await courses.seed_catalogue(uow) == ["CS101", "CS102", "CS103", "CS104", "CS105", "MATH255", "PHYS150"]
    assert await courses.seed_catalogue(uow) == []


async def test_raising_capacity_promotes_waitlisted_students_in_order(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=1)
    await sign_up(uow, cache, ALICE)
    for student in (BOB, CAROL, DAVE):
        await sign_up(uow, cache, student, waitlist=True)

    course = await courses.change_course(uow, cache, course_id="CS101", changes={"capacity": 3})

    assert (course.capacity, course.enrolled, course.waitlisted) == (3, 3, 1)
    assert await roster_of(uow) == [
        (ALICE, STATUS_ENROLLED, None),
        (BOB, STATUS_ENROLLED, None),
        (CAROL, STATUS_ENROLLED, None),
        (DAVE, STATUS_WAITLISTED, 1),
    ]
    assert (await event_log(uow))[-2:] == [("promoted", BOB), ("promoted", CAROL)]


async def test_removing_the_capacity_limit_promotes_the_whole_waitlist(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=0)
    for student in (ALICE, BOB):
        await sign_up(uow, cache, student, waitlist=True)

    course = await courses.change_course(uow, cache, course_id="CS101", changes={"capacity": None})

    assert (course.enrolled, course.waitlisted, course.seats_left) == (2, 0, None)
    assert [status for _, status, _ in await roster_of(uow)] == [STATUS_ENROLLED, STATUS_ENROLLED]


async def test_capacity_below_enrollment_raises_and_changes_nothing(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=3)
    await sign_up(uow, cache, ALICE)
    await sign_up(uow, cache, BOB)

    with pytest.raises(CapacityBelowEnrollmentError):
        await courses.change_course(uow, cache, course_id="CS101", changes={"capacity": 1, "name": "Renamed"})

    course = await get_course(uow, cache, course_id="CS101")
    assert (course.capacity, course.name) == (3, "Intro to Computer Science")


async def test_capacity_equal_to_enrollment_is_allowed_and_fills_the_course(
    uow: FakeUnitOfWork, cache: FakeCache
) -> None:
    await new_course(uow, cache, capacity=3)
    await sign_up(uow, cache, ALICE)
    await sign_up(uow, cache, BOB)

    course = await courses.change_course(uow, cache, course_id="CS101", changes={"capacity": 2})

    assert (course.capacity, course.seats_left) == (2, 0)
    with pytest.raises(CourseFullError):
        await sign_up(uow, cache, CAROL)


async def test_change_course_keeps_fields_it_was_not_given(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, lessons=24, capacity=10)

    course = await courses.change_course(uow, cache, course_id="CS101", changes={"name": "New name"})

    assert (course.name, course.lessons, course.capacity) == ("New name", 24, 10)


async def test_change_course_rejects_fields_outside_the_catalogue(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=10)

    with pytest.raises(ValueError, match="enrolled"):
        await courses.change_course(uow, cache, course_id="CS101", changes={"enrolled": 99})


async def test_change_course_checks_the_merged_window(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    now = utcnow()
    await new_course(uow, cache, registration_opens_at=now)

    with pytest.raises(InvalidInputError):
        await courses.change_course(
            uow, cache, course_id="CS101", changes={"registration_closes_at": now - timedelta(days=1)}
        )


async def test_change_of_an_unknown_course_raises_course_not_found(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    with pytest.raises(CourseNotFoundError):
        await courses.change_course(uow, cache, course_id="NOPE", changes={"name": "x"})


async def test_delete_course_with_enrollments_needs_force(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=1)
    await sign_up(uow, cache, ALICE)
    await sign_up(uow, cache, BOB, waitlist=True)

    with pytest.raises(CourseHasEnrollmentsError):
        await courses.delete_course(uow, cache, course_id="CS101", force=False)
    assert await counters(uow) == (1, 1)

    await courses.delete_course(uow, cache, course_id="CS101", force=True)

    with pytest.raises(CourseNotFoundError):
        await get_course(uow, cache, course_id="CS101")
    alices = await enrollments.list_my_courses(uow, student_id=ALICE, status=None, page=EVERYTHING)
    assert alices.items == []
    # The audit trail outlives the course.
    assert (await event_log(uow))[-2:] == [("dropped", ALICE), ("left_waitlist", BOB)]


async def test_delete_course_with_only_a_waitlist_needs_force(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=0)
    await sign_up(uow, cache, ALICE, waitlist=True)

    with pytest.raises(CourseHasEnrollmentsError):
        await courses.delete_course(uow, cache, course_id="CS101", force=False)


async def test_delete_empty_course_needs_no_force(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache)
    await sign_up(uow, cache, ALICE)
    await drop(uow, cache, ALICE)

    await courses.delete_course(uow, cache, course_id="CS101", force=False)

    with pytest.raises(CourseNotFoundError):
        await get_course(uow, cache, course_id="CS101")
    with pytest.raises(CourseNotFoundError):
        await courses.delete_course(uow, cache, course_id="CS101", force=True)
