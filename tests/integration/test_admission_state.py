"""The admission state's Lua scripts on a real redis-server of the test's own.

They must answer as the database mode does (domain/admission.py decides there), undo only what can
be undone, and hand decisions to the worker in order.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from course_signup.adapters.admission_state import (
    AdmissionPausedError,
    AdmissionState,
    CourseConfig,
    CourseState,
    decode,
)
from course_signup.domain.admission import AdmissionRequest, Verdict, decide
from course_signup.domain.models import STATUS_ENROLLED, STATUS_WAITLISTED, Course
from tests.integration.instances import RedisServer, required_private_redis

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
LATER = 3_600_000  # an hour to confirm: nothing here falls due


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with required_private_redis() as server:
        yield server


@pytest.fixture
async def state(redis_server: RedisServer) -> AsyncIterator[AdmissionState]:
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushdb()  # this test's own server
    admission = AdmissionState(client)
    await admission.load([])
    yield admission
    await client.aclose()


async def _course(state: AdmissionState, capacity: int | None, **window: datetime | None) -> str:
    course_id = f"C{random.randrange(10**9)}"
    config = CourseConfig(course_id, capacity, window.get("opens"), window.get("closes"))
    assert await state.create(config, ticket=0, seq=0) == "ok"
    return course_id


async def _sign_up(state: AdmissionState, course: str, student: str, *, waitlist: bool = True, at: datetime = NOW):
    return await state.sign_up(course, student, waitlist=waitlist, at=at, pending_ms=LATER, request_id="r")


async def test_answers_match_the_database_modes_decision_for_random_histories(state: AdmissionState):
    rng = random.Random(20261129)
    for _ in range(20):
        capacity = rng.choice([None, 0, 1, 2, 5])
        course_id = await _course(state, capacity)
        enrolled: list[str] = []
        waiting: list[str] = []
        ticket = 0
        for _ in range(60):
            student = f"s{rng.randrange(12)}"
            if rng.random() < 0.65:
                waitlist = rng.random() < 0.6
                model = Course(
                    course_id=course_id,
                    capacity=capacity,
                    enrolled=len(enrolled),
                    waitlisted=len(waiting),
                    waitlist_seq=ticket,
                    registration_opens_at=None,
                    registration_closes_at=None,
                )
                existing = {s: STATUS_ENROLLED for s in enrolled} | {s: STATUS_WAITLISTED for s in waiting}
                expected = decide(model, [AdmissionRequest(student, waitlist)], existing=existing, at=NOW)[0]
                got = await _sign_up(state, course_id, student, waitlist=waitlist)
                assert got.verdict == expected.verdict.value
                if expected.verdict is Verdict.ENROLLED:
                    enrolled.append(student)
                elif expected.verdict is Verdict.WAITLISTED:
                    ticket += 1
                    waiting.append(student)
                    assert (got.ticket, got.position) == (expected.waitlist_seq, expected.position)
            else:
                got = await state.drop(course_id, student, at=NOW, pending_ms=LATER, request_id="r")
                if student in enrolled:
                    enrolled.remove(student)
                    promoted = waiting.pop(0) if waiting and (capacity is None or len(enrolled) < capacity) else None
                    if promoted:
                        enrolled.append(promoted)
                    assert (got.verdict, got.promoted) == ("dropped", promoted)
                elif student in waiting:
                    waiting.remove(student)
                    assert got.verdict == "left_waitlist"
                else:
                    assert got.verdict == "not found" and got.message is None
        assert await state.counters([course_id]) == {course_id: (len(enrolled), len(waiting))}


async def test_unknown_course_and_closed_window_are_refused_without_a_decision(state: AdmissionState):
    assert (await _sign_up(state, "NOPE", "a")).verdict == "not found"
    closed = await _course(state, 5, closes=NOW - timedelta(minutes=1))
    not_yet = await _course(state, 5, opens=NOW + timedelta(minutes=1))
    for course in (closed, not_yet):
        answer = await _sign_up(state, course, "a")
        assert answer.verdict == "closed" and answer.message is None


async def test_the_worker_claims_a_courses_decisions_in_sequence_order(state: AdmissionState):
    course = await _course(state, 10)
    first, second = await _sign_up(state, course, "a"), await _sign_up(state, course, "b")
    assert (first.seq, second.seq) == (1, 2)
    # The second reached the queue first (another API process was quicker): it waits.
    assert await state.claim({course: [2]}) == {course: (["wait"], [])}
    assert await state.claim({course: [1, 2]}) == {course: (["ok", "ok"], [])}
    assert await state.claim({course: [1]}) == {course: (["gone"], [])}  # a redelivery
    assert decode(first.message)["st"] == "a" and decode(second.message)["s"] == 2


async def test_undoing_a_seat_gives_it_to_the_head_of_the_waitlist_as_a_new_decision(state: AdmissionState):
    course = await _course(state, 1)
    seated = await _sign_up(state, course, "a")
    await _sign_up(state, course, "b")  # waitlisted behind a's seat
    outcome, follow = await state.void(course, seated.seq, at=NOW, pending_ms=LATER)
    assert outcome == "voided"
    promotion = decode(follow)
    assert promotion["t"] == "promote" and [p[:2] for p in promotion["pr"]] == [["b", 1]] and promotion["s"] == 3
    assert await state.counters([course]) == {course: (1, 0)}
    assert await state.claim({course: [1]}) == {course: (["void"], [])}  # the worker skips it
    assert (await _sign_up(state, course, "a", waitlist=False)).verdict == "full"  # b has the seat now


async def test_a_drop_whose_seat_was_taken_since_is_kept_not_undone(state: AdmissionState):
    course = await _course(state, 1)
    await _sign_up(state, course, "a")
    await state.claim({course: [1]})
    dropped = await state.drop(course, "a", at=NOW, pending_ms=LATER, request_id="r")
    assert (await _sign_up(state, course, "b")).verdict == "enrolled"  # the freed seat is resold
    outcome, _ = await state.void(course, dropped.seq, at=NOW, pending_ms=LATER)
    assert outcome == "kept"  # restoring a would oversell: the drop must be published instead
    assert await state.counters([course]) == {course: (1, 0)}


async def test_a_drop_can_be_undone_while_nothing_depends_on_it(state: AdmissionState):
    course = await _course(state, 1)
    await _sign_up(state, course, "a")
    await _sign_up(state, course, "b")
    await state.claim({course: [1, 2]})
    dropped = await state.drop(course, "a", at=NOW, pending_ms=LATER, request_id="r")
    assert dropped.promoted == "b"
    assert (await state.void(course, dropped.seq, at=NOW, pending_ms=LATER))[0] == "voided"
    assert (await _sign_up(state, course, "a")).verdict == "already enrolled"
    assert (await _sign_up(state, course, "b")).verdict == "already waitlisted"


async def test_a_claimed_decision_cannot_be_undone(state: AdmissionState):
    course = await _course(state, 3)
    decision = await _sign_up(state, course, "a")
    assert await state.claim({course: [decision.seq]}) == {course: (["ok"], [])}
    assert (await state.void(course, decision.seq, at=NOW, pending_ms=LATER))[0] == "claimed"


async def test_an_emptied_redis_pauses_admission_instead_of_seeming_empty(state: AdmissionState):
    course = await _course(state, 3)
    await state.redis.flushdb()  # as a restarted Redis without persistence
    with pytest.raises(AdmissionPausedError):
        await _sign_up(state, course, "a")
    assert (await state.void(course, 1, at=NOW, pending_ms=LATER))[0] == "lost"
    assert await state.counters([course]) == {}  # reads fall back to the database's figures


async def test_loading_replaces_the_state_with_the_databases(state: AdmissionState):
    stale = await _course(state, 1)
    loaded = CourseState(
        CourseConfig("L1", 2, None, None), ticket=7, seq=40, enrolled=["a", "b"], waitlisted=[("c", 7)]
    )
    await state.load([loaded])
    assert await state.counters([stale, "L1"]) == {"L1": (2, 1)}
    waitlisted = await _sign_up(state, "L1", "d")
    assert (waitlisted.verdict, waitlisted.ticket, waitlisted.position, waitlisted.seq) == ("waitlisted", 8, 2, 41)
    assert (await _sign_up(state, "L1", "c")).verdict == "already waitlisted"


async def test_capacity_is_checked_against_the_live_count(state: AdmissionState):
    course = await _course(state, 3)
    for student in "abc":
        await _sign_up(state, course, student)
    assert await state.configure(CourseConfig(course, 2, None, None)) == "below"
    assert await state.configure(CourseConfig(course, 4, None, None)) == "ok"
    assert await state.remove(course, force=False) == "has enrollments"
    assert await state.remove(course, force=True) == "ok"  # marked: it takes nothing more
    assert (await _sign_up(state, course, "d")).verdict == "not found"
    await state.keep(course)  # the database's delete failed: it is back, as it was
    assert await state.counters([course]) == {course: (3, 0)}
    assert (await _sign_up(state, course, "d")).verdict == "enrolled"


async def test_an_undo_leaves_a_student_whose_place_later_decisions_changed(state: AdmissionState):
    course = await _course(state, 1)
    await _sign_up(state, course, "x")
    waiting = await _sign_up(state, course, "a")  # waitlisted, and its process dies unconfirmed
    await state.drop(course, "x", at=NOW, pending_ms=LATER, request_id="r")  # promotes a
    assert (await state.void(course, waiting.seq, at=NOW, pending_ms=LATER))[0] == "kept"
    # Enrolled, dropped and back again: the first decision is history the later ones build on.
    other = await _course(state, 1)
    first = await _sign_up(state, other, "b")
    await state.drop(other, "b", at=NOW, pending_ms=LATER, request_id="r")
    await _sign_up(state, other, "b")
    assert (await state.void(other, first.seq, at=NOW, pending_ms=LATER))[0] == "kept"
    assert await state.counters([course, other]) == {course: (1, 0), other: (1, 0)}


async def test_a_seat_freed_by_a_capacity_rise_goes_to_the_waitlist_before_newcomers(state: AdmissionState):
    course = await _course(state, 1)
    await _sign_up(state, course, "a")
    await _sign_up(state, course, "w")  # waitlisted
    assert await state.configure(CourseConfig(course, 2, None, None)) == "ok"
    decisions, promotion = await state.sign_up_many(course, [("n", False, None)], at=NOW, pending_ms=LATER)
    assert [d.verdict for d in decisions] == ["full"]
    assert promotion is not None and [p[0] for p in decode(promotion)["pr"]] == ["w"]


async def test_a_removed_course_voids_its_pending_decisions_and_a_namesake_numbers_on(state: AdmissionState):
    course = await _course(state, 5)
    for student in "abc":
        await _sign_up(state, course, student)
    assert await state.remove(course, force=True) == "ok"
    await state.removed(course)
    assert await state.claim({course: [3]}) == {course: (["void"], [])}  # written nowhere
    assert await state.create(CourseConfig(course, 5, None, None), ticket=0, seq=0) == "ok"
    assert (await _sign_up(state, course, "d")).seq == 4


async def test_a_claim_takes_earlier_standing_decisions_with_it_and_waits_for_unconfirmed_ones(state: AdmissionState):
    course = await _course(state, 10)
    first, second = await _sign_up(state, course, "a"), await _sign_up(state, course, "b")
    assert await state.claim({course: [2]}) == {course: (["wait"], [])}  # the first may still be undone
    await state.published(course, first.seq)  # confirmed: it stands, whenever its message arrives
    outcomes, pulled = (await state.claim({course: [second.seq]}))[course]
    assert outcomes == ["ok"] and [decode(body)["st"] for body in pulled] == ["a"]
    assert await state.claim({course: [1]}) == {course: (["gone"], [])}  # its own copy, later


async def test_the_reconciler_leaves_a_decision_that_is_not_due(state: AdmissionState):
    course = await _course(state, 3)
    decision = await _sign_up(state, course, "a")
    outcome, _ = await state.void(course, decision.seq, at=NOW, pending_ms=LATER, overdue_only=True)
    assert outcome == "standing"
    await state.published(course, decision.seq)
    assert await state.overdue() == []
