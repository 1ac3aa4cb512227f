"""Sign up, drop or leave the waitlist, and list a student's courses, on the in-memory fakes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from course_signup.domain.errors import (
    AlreadyEnrolledError,
    AlreadyWaitlistedError,
    CourseFullError,
    CourseNotFoundError,
    EnrollmentNotFoundError,
    RegistrationClosedError,
)
from course_signup.domain.models import STATUS_ENROLLED, STATUS_WAITLISTED, utcnow
from course_signup.domain.pagination import PageRequest, decode_cursor
from course_signup.services import courses, enrollments, roster
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
    sign_up,
)

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


async def test_a_promoted_student_is_enrolled_as_of_the_promotion(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=1)
    await sign_up(uow, cache, ALICE)
    joined = (await sign_up(uow, cache, BOB, waitlist=True)).enrolled_at
    before_drop = utcnow()

    await drop(uow, cache, ALICE)

    bobs = await enrollments.list_my_courses(uow, student_id=BOB, status=None, page=EVERYTHING)
    assert bobs.items[0].enrolled_at >= before_drop > joined


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


# --- a student's courses --------------------------------------------------------------------------


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
