"""Batched admission on the real databases: one statement answers many sign-ups to one course.

Every test runs on PostgreSQL (one statement) and on the embedded SQLite file (the same decision
in steps, under the write lock).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text

from course_signup.adapters import database
from course_signup.domain.admission import Admission, AdmissionRequest, Verdict
from course_signup.domain.errors import (
    AlreadyEnrolledError,
    AlreadyWaitlistedError,
    CourseFullError,
    CourseNotFoundError,
    DomainError,
)
from course_signup.domain.pagination import PageRequest
from course_signup.services import courses, enrollments, roster
from course_signup.services.admission import Admissions, admit_batch
from course_signup.services.unit_of_work import SqlAlchemyUnitOfWork
from course_signup.settings import Settings
from tests.conftest import unique
from tests.fakes import FakeCache

EVERYTHING = PageRequest(limit=1000)


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[object]:
    engine = database.create_engine(settings)
    yield database.create_sessions(engine)
    await engine.dispose()


async def _course(sessions, capacity: int | None, **fields: object) -> str:  # type: ignore[no-untyped-def]
    course_id = unique("BATCH")
    await courses.create_course(
        SqlAlchemyUnitOfWork(sessions), FakeCache(), course_id=course_id, name="Batch", capacity=capacity, **fields
    )
    return course_id


async def _state(sessions, course_id: str) -> tuple[list[tuple[str, str, int | None]], tuple[int, int], list]:  # type: ignore[no-untyped-def]
    """The roster (student, status, position), the counters, and the audit trail (type, student, request id)."""
    uow = SqlAlchemyUnitOfWork(sessions)
    page = await roster.course_roster(uow, course_id=course_id, page=EVERYTHING)
    async with uow:
        course = await uow.courses.get(course_id)
    events = await roster.course_events(SqlAlchemyUnitOfWork(sessions), course_id=course_id, page=EVERYTHING)
    return (
        [(v.student_id, v.status, v.position) for v in page.items],
        (course.enrolled, course.waitlisted),
        [(e.type, e.student_id, e.request_id) for e in events.items],
    )


def _requests(*spec: tuple[str, bool]) -> list[AdmissionRequest]:
    return [AdmissionRequest(f"{name}@example.com", waitlist, f"req-{name}") for name, waitlist in spec]


async def test_more_students_than_seats_fill_it_in_arrival_order_and_the_rest_are_refused(sessions):
    course = await _course(sessions, capacity=3)
    answers = await admit_batch(
        SqlAlchemyUnitOfWork(sessions), course, _requests(*((f"s{i}", False) for i in range(7)))
    )
    assert [a.verdict for a in answers] == [Verdict.ENROLLED] * 3 + [Verdict.FULL] * 4
    rows, counters, events = await _state(sessions, course)
    assert sorted(r[0] for r in rows) == [f"s{i}@example.com" for i in range(3)]
    assert counters == (3, 0)
    # one audit event per written row, each with its own request's id
    assert events == [("enrolled", f"s{i}@example.com", f"req-s{i}") for i in range(3)]


async def test_mixed_waitlist_flags_get_tickets_in_arrival_order(sessions):
    course = await _course(sessions, capacity=1)
    spec = [("a", False), ("b", True), ("c", False), ("d", True), ("e", True)]
    answers = await admit_batch(SqlAlchemyUnitOfWork(sessions), course, _requests(*spec))
    assert [(a.verdict, a.position) for a in answers] == [
        (Verdict.ENROLLED, None),
        (Verdict.WAITLISTED, 1),
        (Verdict.FULL, None),
        (Verdict.WAITLISTED, 2),
        (Verdict.WAITLISTED, 3),
    ]
    rows, counters, events = await _state(sessions, course)
    assert rows == [
        ("a@example.com", "enrolled", None),
        ("b@example.com", "waitlisted", 1),
        ("d@example.com", "waitlisted", 2),
        ("e@example.com", "waitlisted", 3),
    ]
    assert counters == (1, 3)
    assert [(t, s) for t, s, _ in events] == [
        ("enrolled", "a@example.com"),
        ("waitlisted", "b@example.com"),
        ("waitlisted", "d@example.com"),
        ("waitlisted", "e@example.com"),
    ]
    # the next student joins behind them
    later = await admit_batch(SqlAlchemyUnitOfWork(sessions), course, _requests(("f", True)))
    assert (later[0].verdict, later[0].position) == (Verdict.WAITLISTED, 4)


async def test_an_already_enrolled_student_affects_only_their_own_request(sessions):
    course = await _course(sessions, capacity=2)
    await admit_batch(SqlAlchemyUnitOfWork(sessions), course, _requests(("a", False)))
    answers = await admit_batch(
        SqlAlchemyUnitOfWork(sessions), course, _requests(("b", False), ("a", True), ("c", True))
    )
    assert [(a.verdict, a.position) for a in answers] == [
        (Verdict.ENROLLED, None),
        (Verdict.ALREADY_ENROLLED, None),
        (Verdict.WAITLISTED, 1),
    ]
    _, counters, _ = await _state(sessions, course)
    assert counters == (2, 1)


async def test_duplicates_inside_one_burst_are_answered_as_if_they_came_one_by_one(sessions):
    course = await _course(sessions, capacity=2)
    admissions = Admissions(batching=True)
    students = ["a", "a", "b", "a", "c", "c", "d"]
    outcomes = await asyncio.gather(
        *(
            enrollments.sign_up(
                SqlAlchemyUnitOfWork(sessions, request_id=f"r{i}"),
                FakeCache(),
                student_id=f"{s}@example.com",
                course_id=course,
                waitlist=s == "d",
                admissions=admissions,
            )
            for i, s in enumerate(students)
        ),
        return_exceptions=True,
    )
    kinds = [type(o).__name__ if isinstance(o, DomainError) else o.status for o in outcomes]
    assert kinds == [
        "enrolled",
        "AlreadyEnrolledError",
        "enrolled",
        "AlreadyEnrolledError",
        "CourseFullError",
        "CourseFullError",
        "waitlisted",
    ]
    assert all(not isinstance(o, Exception) or isinstance(o, DomainError) for o in outcomes)
    _, counters, events = await _state(sessions, course)
    assert counters == (2, 1)
    assert len(events) == 3


async def test_a_course_deleted_while_its_batch_waits_answers_not_found_and_writes_nothing(sessions, settings):
    course = await _course(sessions, capacity=5)
    engine = database.create_engine(settings)
    try:
        async with engine.connect() as blocker:
            transaction = await blocker.begin()
            await blocker.execute(text("DELETE FROM courses WHERE course_id = :c"), {"c": course})
            batch = asyncio.create_task(
                admit_batch(SqlAlchemyUnitOfWork(sessions), course, _requests(("a", False), ("b", True)))
            )
            await asyncio.sleep(0.3)  # the batch now waits for the course's lock (or SQLite's write lock)
            assert not batch.done()
            await transaction.commit()
            answers = await batch
    finally:
        await engine.dispose()
    assert [a.verdict for a in answers] == [Verdict.NOT_FOUND, Verdict.NOT_FOUND]
    uow = SqlAlchemyUnitOfWork(sessions)
    async with uow:
        assert await uow.enrollments.get(student_id="a@example.com", course_id=course) is None
    with pytest.raises(CourseNotFoundError):
        await enrollments.sign_up(
            SqlAlchemyUnitOfWork(sessions), FakeCache(), student_id="x@example.com", course_id=course, waitlist=False
        )


ERRORS = {
    CourseFullError: Verdict.FULL,
    AlreadyEnrolledError: Verdict.ALREADY_ENROLLED,
    AlreadyWaitlistedError: Verdict.ALREADY_WAITLISTED,
}

batches = st.lists(
    st.tuples(st.sampled_from("abcdefgh"), st.booleans()), min_size=1, max_size=8, unique_by=lambda r: r[0]
)


@hypothesis_settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    capacity=st.sampled_from([0, 1, 2, 3, None]),
    before=st.lists(st.tuples(st.sampled_from("abcdefgh"), st.booleans()), max_size=4, unique_by=lambda r: r[0]),
    batch=batches,
)
async def test_a_batch_gives_the_same_rows_and_answers_as_its_requests_one_by_one(sessions, capacity, before, batch):
    together, apart = await _course(sessions, capacity), await _course(sessions, capacity)
    for course in (together, apart):
        for name, waitlist in before:
            await admit_batch(SqlAlchemyUnitOfWork(sessions), course, _requests((name, waitlist)))
    batched = await admit_batch(SqlAlchemyUnitOfWork(sessions), together, _requests(*batch))
    single: list[Admission] = []
    for spec in batch:
        single += await admit_batch(SqlAlchemyUnitOfWork(sessions), apart, _requests(spec))
    assert [(a.verdict, a.position) for a in batched] == [(a.verdict, a.position) for a in single]
    rows_t, counters_t, events_t = await _state(sessions, together)
    rows_a, counters_a, events_a = await _state(sessions, apart)
    assert rows_t == rows_a
    assert counters_t == counters_a
    assert events_t == events_a
