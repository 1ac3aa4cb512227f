"""Use cases on the in-memory fakes: state is built by calling use cases, never by writing rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

import pytest

from course_signup.domain.errors import (
    AlreadyEnrolledError,
    AlreadyWaitlistedError,
    CapacityBelowEnrollmentError,
    CourseExistsError,
    CourseFullError,
    CourseHasEnrollmentsError,
    CourseNotFoundError,
    EnrollmentNotFoundError,
    IdempotencyKeyInFlightError,
    IdempotencyKeyReusedError,
    InvalidInputError,
    NotClassmateError,
    RegistrationClosedError,
)
from course_signup.domain.models import STATUS_ENROLLED, STATUS_WAITLISTED, Course, utcnow
from course_signup.domain.pagination import PageRequest, decode_cursor
from course_signup.domain.views import EnrollmentView
from course_signup.services import courses, enrollments, idempotency, roster
from course_signup.services.idempotency import StoredAnswer
from tests.fakes import FakeCache, FakeUnitOfWork

T = TypeVar("T")
ALICE, BOB, CAROL, DAVE, ERIN = (f"{name}@example.com" for name in ("alice", "bob", "carol", "dave", "erin"))
EVERYTHING = PageRequest(limit=1000)
ROSTER_SHAPE = (int, (str, int))  # (part, student id | waitlist ticket)


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork(request_id="req-1")


@pytest.fixture
def cache() -> FakeCache:
    return FakeCache()


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


# --- sign up --------------------------------------------------------------------------------------


async def test_sign_up_enrolls_the_student_and_takes_a_seat(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=2)

    view = await sign_up(uow, cache, ALICE)

    assert (view.student_id, view.course_id, view.status, view.position) == (ALICE, "CS101", STATUS_ENROLLED, None)
    assert view.is_enrolled
    course = await get_course(uow, cache, course_id="CS101")
    assert (course.enrolled, course.seats_left, course.waitlisted) == (1, 1, 0)
    assert await event_log(uow) == [("enrolled", ALICE)]


async def test_sign_up_records_the_request_id_on_the_audit_event(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache)
    await sign_up(uow, cache, ALICE)

    page = await roster.course_events(uow, course_id="CS101", page=EVERYTHING)
    assert [event.request_id for event in page.items] == ["req-1"]


async def test_sign_up_clears_the_catalogue_cache(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=5)
    before = await get_course(uow, cache, course_id="CS101")

    forgotten = cache.forgotten

    await sign_up(uow, cache, ALICE)

    assert cache.forgotten == forgotten + 1
    after = await get_course(uow, cache, course_id="CS101")
    assert (before.enrolled, after.enrolled) == (0, 1)


async def test_sign_up_for_an_unknown_course_raises_course_not_found(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    with pytest.raises(CourseNotFoundError):
        await sign_up(uow, cache, ALICE, "NOPE")
    with pytest.raises(CourseNotFoundError):
        await sign_up(uow, cache, ALICE, "NOPE", waitlist=True)


async def test_signing_up_twice_raises_already_enrolled_and_keeps_one_seat(
    uow: FakeUnitOfWork, cache: FakeCache
) -> None:
    await new_course(uow, cache, capacity=3)
    await sign_up(uow, cache, ALICE)

    with pytest.raises(AlreadyEnrolledError):
        await sign_up(uow, cache, ALICE)
    with pytest.raises(AlreadyEnrolledError):
        await sign_up(uow, cache, ALICE, waitlist=True)

    assert await counters(uow) == (1, 0)
    assert await roster_of(uow) == [(ALICE, STATUS_ENROLLED, None)]
    assert await event_log(uow) == [("enrolled", ALICE)]


async def test_signing_up_again_for_a_full_course_still_says_already_enrolled(
    uow: FakeUnitOfWork, cache: FakeCache
) -> None:
    await new_course(uow, cache, capacity=1)
    await sign_up(uow, cache, ALICE)

    with pytest.raises(AlreadyEnrolledError):
        await sign_up(uow, cache, ALICE, waitlist=True)

    assert await counters(uow) == (1, 0)


async def test_full_course_without_waitlist_raises_course_full_and_changes_nothing(
    uow: FakeUnitOfWork, cache: FakeCache
) -> None:
    await new_course(uow, cache, capacity=1)
    await sign_up(uow, cache, ALICE)
    commits = uow.commits

    with pytest.raises(CourseFullError):
        await sign_up(uow, cache, BOB)

    assert uow.commits == commits
    assert await counters(uow) == (1, 0)
    mine = await enrollments.list_my_courses(uow, student_id=BOB, status=None, page=EVERYTHING)
    assert mine.items == []


async def test_full_course_waitlists_students_in_arrival_order(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=1)
    await sign_up(uow, cache, ALICE)

    views = [await sign_up(uow, cache, student, waitlist=True) for student in (BOB, CAROL, DAVE)]

    assert [(v.student_id, v.status, v.position) for v in views] == [
        (BOB, STATUS_WAITLISTED, 1),
        (CAROL, STATUS_WAITLISTED, 2),
        (DAVE, STATUS_WAITLISTED, 3),
    ]
    assert not any(v.is_enrolled for v in views)
    assert await counters(uow) == (1, 3)
    assert await event_log(uow) == [
        ("enrolled", ALICE),
        ("waitlisted", BOB),
        ("waitlisted", CAROL),
        ("waitlisted", DAVE),
    ]


async def test_waitlisted_student_signing_up_again_raises_already_waitlisted(
    uow: FakeUnitOfWork, cache: FakeCache
) -> None:
    await new_course(uow, cache, capacity=0)
    await sign_up(uow, cache, ALICE, waitlist=True)

    with pytest.raises(AlreadyWaitlistedError):
        await sign_up(uow, cache, ALICE, waitlist=True)
    with pytest.raises(AlreadyWaitlistedError):
        await sign_up(uow, cache, ALICE)

    assert await counters(uow) == (0, 1)


async def test_unlimited_course_never_fills(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=None)

    views = [await sign_up(uow, cache, f"s{i}@example.com") for i in range(50)]

    assert all(view.is_enrolled for view in views)
    course = await get_course(uow, cache, course_id="CS101")
    assert (course.enrolled, course.seats_left) == (50, None)


async def test_sign_up_before_the_window_opens_raises_registration_closed(
    uow: FakeUnitOfWork, cache: FakeCache
) -> None:
    await new_course(uow, cache, capacity=5, registration_opens_at=utcnow() + timedelta(days=1))

    with pytest.raises(RegistrationClosedError):
        await sign_up(uow, cache, ALICE)
    with pytest.raises(RegistrationClosedError):
        await sign_up(uow, cache, ALICE, waitlist=True)

    assert await counters(uow) == (0, 0)


async def test_sign_up_after_the_window_closes_raises_registration_closed(
    uow: FakeUnitOfWork, cache: FakeCache
) -> None:
    now = utcnow()
    await new_course(
        uow, cache, registration_opens_at=now - timedelta(days=2), registration_closes_at=now - timedelta(days=1)
    )

    with pytest.raises(RegistrationClosedError):
        await sign_up(uow, cache, ALICE)


async def test_sign_up_inside_the_window_succeeds(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    now = utcnow()
    await new_course(
        uow, cache, registration_opens_at=now - timedelta(hours=1), registration_closes_at=now + timedelta(hours=1)
    )

    assert (await sign_up(uow, cache, ALICE)).is_enrolled


async def test_closing_registration_does_not_stop_a_drop(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=1)
    await sign_up(uow, cache, ALICE)
    await sign_up(uow, cache, BOB, waitlist=True)
    await courses.change_course(
        uow, cache, course_id="CS101", changes={"registration_closes_at": utcnow() - timedelta(seconds=1)}
    )

    assert await drop(uow, cache, ALICE) == BOB
    assert await roster_of(uow) == [(BOB, STATUS_ENROLLED, None)]


# --- drop and leave the waitlist ------------------------------------------------------------------


async def test_drop_frees_the_seat(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=1)
    await sign_up(uow, cache, ALICE)

    assert await drop(uow, cache, ALICE) is None

    assert await counters(uow) == (0, 0)
    assert (await sign_up(uow, cache, BOB)).is_enrolled
    assert await event_log(uow) == [("enrolled", ALICE), ("dropped", ALICE), ("enrolled", BOB)]


async def test_drop_promotes_first_waitlisted_student(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=1)
    await sign_up(uow, cache, ALICE)
    for student in (BOB, CAROL, DAVE):
        await sign_up(uow, cache, student, waitlist=True)

    assert await drop(uow, cache, ALICE) == BOB

    assert await roster_of(uow) == [
        (BOB, STATUS_ENROLLED, None),
        (CAROL, STATUS_WAITLISTED, 1),
        (DAVE, STATUS_WAITLISTED, 2),
    ]
    assert await counters(uow) == (1, 2)
    assert (await event_log(uow))[-2:] == [("dropped", ALICE), ("promoted", BOB)]
    bobs = await enrollments.list_my_courses(uow, student_id=BOB, status=None, page=EVERYTHING)
    assert [(c.course_id, c.status, c.position) for c in bobs.items] == [("CS101", STATUS_ENROLLED, None)]


async def test_leaving_the_waitlist_moves_later_students_up_and_promotes_nobody(
    uow: FakeUnitOfWork, cache: FakeCache
) -> None:
    await new_course(uow, cache, capacity=1)
    await sign_up(uow, cache, ALICE)
    for student in (BOB, CAROL, DAVE):
        await sign_up(uow, cache, student, waitlist=True)

    assert await drop(uow, cache, CAROL) is None

    assert await roster_of(uow) == [
        (ALICE, STATUS_ENROLLED, None),
        (BOB, STATUS_WAITLISTED, 1),
        (DAVE, STATUS_WAITLISTED, 2),
    ]
    assert await counters(uow) == (1, 2)
    assert (await event_log(uow))[-1] == ("left_waitlist", CAROL)
    # A newcomer joins behind everyone who was already waiting.
    assert (await sign_up(uow, cache, CAROL, waitlist=True)).position == 3


async def test_drop_without_an_enrollment_raises_enrollment_not_found(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache)
    await sign_up(uow, cache, ALICE)

    with pytest.raises(EnrollmentNotFoundError):
        await drop(uow, cache, BOB)
    with pytest.raises(EnrollmentNotFoundError):
        await drop(uow, cache, ALICE, "NOPE")
    await drop(uow, cache, ALICE)
    with pytest.raises(EnrollmentNotFoundError):
        await drop(uow, cache, ALICE)


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


# --- classmates, roster, a student's courses ------------------------------------------------------


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


async def test_my_courses_join_the_course_and_filter_by_status(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, "MATH255", name="Calculus I", lessons=10, capacity=0)
    await new_course(uow, cache, "CS101", lessons=24)
    await sign_up(uow, cache, BOB, "MATH255", waitlist=True)
    await sign_up(uow, cache, ALICE, "MATH255", waitlist=True)
    await sign_up(uow, cache, ALICE, "CS101")

    mine = await enrollments.list_my_courses(uow, student_id=ALICE, status=None, page=EVERYTHING)
    waiting = await enrollments.list_my_courses(uow, student_id=ALICE, status=STATUS_WAITLISTED, page=EVERYTHING)
    enrolled = await enrollments.list_my_courses(uow, student_id=ALICE, status=STATUS_ENROLLED, page=EVERYTHING)

    assert [(c.course_id, c.name, c.lessons, c.status, c.position) for c in mine.items] == [
        ("CS101", "Intro to Computer Science", 24, STATUS_ENROLLED, None),
        ("MATH255", "Calculus I", 10, STATUS_WAITLISTED, 2),
    ]
    assert [c.course_id for c in waiting.items] == ["MATH255"]
    assert [c.course_id for c in enrolled.items] == ["CS101"]


async def test_my_courses_of_a_student_with_none_is_empty(uow: FakeUnitOfWork) -> None:
    page = await enrollments.list_my_courses(uow, student_id=ALICE, status=None, page=EVERYTHING)
    assert (page.items, page.next_cursor) == ([], None)


async def test_my_courses_page_by_course_id(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    for course_id in ("CS103", "CS101", "CS102"):
        await new_course(uow, cache, course_id)
        await sign_up(uow, cache, ALICE, course_id)

    first = await enrollments.list_my_courses(uow, student_id=ALICE, status=None, page=PageRequest(limit=2))
    after = decode_cursor(first.next_cursor or "", shape=(str,))
    second = await enrollments.list_my_courses(uow, student_id=ALICE, status=None, page=PageRequest(2, after))

    assert [c.course_id for c in first.items + second.items] == ["CS101", "CS102", "CS103"]
    assert second.next_cursor is None


# --- idempotency keys -----------------------------------------------------------------------------


async def claim(uow: FakeUnitOfWork, fingerprint: str = "body-1", *, student: str = ALICE) -> StoredAnswer | None:
    return await idempotency.claim(uow, student_id=student, key="key-1", fingerprint=fingerprint)


async def test_first_claim_of_a_key_reserves_it(uow: FakeUnitOfWork) -> None:
    assert await claim(uow) is None
    with pytest.raises(IdempotencyKeyInFlightError):
        await claim(uow)


async def test_claim_replays_the_stored_answer_for_the_same_body(uow: FakeUnitOfWork) -> None:
    await claim(uow)
    await idempotency.remember(uow, student_id=ALICE, key="key-1", answer=StoredAnswer(202, b'{"code":0}'))

    assert await claim(uow) == StoredAnswer(202, b'{"code":0}')
    assert await claim(uow) == StoredAnswer(202, b'{"code":0}')


async def test_claim_with_a_different_body_raises_key_reused(uow: FakeUnitOfWork) -> None:
    await claim(uow)
    await idempotency.remember(uow, student_id=ALICE, key="key-1", answer=StoredAnswer(200, b"{}"))

    with pytest.raises(IdempotencyKeyReusedError):
        await claim(uow, "body-2")


async def test_keys_belong_to_one_student(uow: FakeUnitOfWork) -> None:
    await claim(uow)

    assert await claim(uow, "body-2", student=BOB) is None


async def test_released_key_can_be_claimed_again(uow: FakeUnitOfWork) -> None:
    await claim(uow)
    await idempotency.release(uow, student_id=ALICE, key="key-1")

    assert await claim(uow, "body-2") is None


async def test_key_expires_after_a_day(uow: FakeUnitOfWork, monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    monkeypatch.setattr(idempotency, "utcnow", lambda: now - idempotency.KEEP_FOR - timedelta(seconds=1))
    await claim(uow)
    await idempotency.remember(uow, student_id=ALICE, key="key-1", answer=StoredAnswer(200, b"{}"))
    monkeypatch.setattr(idempotency, "utcnow", lambda: now)

    assert await claim(uow, "body-2") is None
    assert await idempotency.purge_expired(uow) == 0


async def test_abandoned_reservation_can_be_taken_over(uow: FakeUnitOfWork, monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    monkeypatch.setattr(idempotency, "utcnow", lambda: now - timedelta(seconds=30))
    await claim(uow)
    monkeypatch.setattr(idempotency, "utcnow", lambda: now)
    with pytest.raises(IdempotencyKeyInFlightError):
        await claim(uow)  # 30 s: still running

    monkeypatch.setattr(idempotency, "utcnow", lambda: now + idempotency.ABANDONED_AFTER)

    assert await claim(uow) is None


async def test_purge_removes_only_expired_keys(uow: FakeUnitOfWork, monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    monkeypatch.setattr(idempotency, "utcnow", lambda: now - timedelta(days=2))
    await claim(uow, student=ALICE)
    monkeypatch.setattr(idempotency, "utcnow", lambda: now)
    await claim(uow, student=BOB)

    assert await idempotency.purge_expired(uow) == 1
    with pytest.raises(IdempotencyKeyInFlightError):
        await claim(uow, student=BOB)


# --- the fake unit of work itself -----------------------------------------------------------------


async def test_unit_of_work_discards_what_was_not_committed(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=1)

    async with uow:
        assert await uow.courses.claim_seat("CS101", at=utcnow())
    async with uow:
        assert await uow.courses.claim_seat("CS101", at=utcnow())
        await uow.rollback()
        assert (await uow.courses.get("CS101")).enrolled == 0

    assert await counters(uow) == (0, 0)
