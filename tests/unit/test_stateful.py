"""Random sequences of sign-ups, drops and capacity changes, checked against a tiny model of the rules."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from course_signup.domain.errors import (
    AlreadyEnrolledError,
    AlreadyWaitlistedError,
    CapacityBelowEnrollmentError,
    CourseFullError,
    DomainError,
    EnrollmentNotFoundError,
    RegistrationClosedError,
)
from course_signup.domain.models import STATUS_ENROLLED, STATUS_WAITLISTED, utcnow
from course_signup.domain.pagination import PageRequest
from course_signup.services import courses, enrollments, roster
from tests.fakes import FakeCache, FakeUnitOfWork

T = TypeVar("T")
STUDENTS = tuple(f"s{i}@example.com" for i in range(5))
COURSE_IDS = ("CS101", "MATH255")
EVERYTHING = PageRequest(limit=1000)

students = st.sampled_from(STUDENTS)
course_ids = st.sampled_from(COURSE_IDS)
capacities = st.sampled_from([1, 2, 0, 3, None])  # small, so courses fill and waitlists form


@dataclass
class CourseModel:
    """The rules of API.md for one course, written independently of the service."""

    capacity: int | None
    is_open: bool = True
    enrolled: set[str] = field(default_factory=set)
    waitlist: list[str] = field(default_factory=list)  # first come, first served
    events: list[tuple[str, str]] = field(default_factory=list)

    def has_room(self) -> bool:
        return self.capacity is None or len(self.enrolled) < self.capacity

    def sign_up(self, student: str, *, waitlist: bool) -> tuple[str, int | None]:
        if not self.is_open:
            raise RegistrationClosedError()
        if student in self.enrolled:
            raise AlreadyEnrolledError()
        if student in self.waitlist:
            raise AlreadyWaitlistedError()
        if self.has_room():
            self.enrolled.add(student)
            self.events.append(("enrolled", student))
            return STATUS_ENROLLED, None
        if not waitlist:
            raise CourseFullError()
        self.waitlist.append(student)
        self.events.append(("waitlisted", student))
        return STATUS_WAITLISTED, len(self.waitlist)

    def drop(self, student: str) -> str | None:
        if student in self.enrolled:
            self.enrolled.remove(student)
            self.events.append(("dropped", student))
            promoted = self.promote()
            return promoted[0] if promoted else None
        if student in self.waitlist:
            self.waitlist.remove(student)
            self.events.append(("left_waitlist", student))
            return None
        raise EnrollmentNotFoundError()

    def change_capacity(self, capacity: int | None) -> None:
        if capacity is not None and capacity < len(self.enrolled):
            raise CapacityBelowEnrollmentError()
        self.capacity = capacity
        self.promote()

    def promote(self) -> list[str]:
        promoted = []
        while self.waitlist and self.has_room():
            student = self.waitlist.pop(0)
            self.enrolled.add(student)
            self.events.append(("promoted", student))
            promoted.append(student)
        return promoted


def outcome(action: Any) -> tuple[str, Any]:
    """("ok", result) or ("error", the DomainError subclass): what the API would answer."""
    try:
        return "ok", action()
    except DomainError as exc:
        return "error", type(exc)


def label(expected: tuple[str, Any]) -> str:
    """An outcome's name for --hypothesis-show-statistics, to see that the interesting ones happen."""
    kind, result = expected
    return result.__name__ if kind == "error" else "ok"


class SignUpMachine(RuleBasedStateMachine):
    """Two courses and five students; every answer and every invariant is compared with the model."""

    def __init__(self) -> None:
        super().__init__()
        # The machine is synchronous; each use case runs to completion on a private loop.
        self.loop = asyncio.new_event_loop()
        self.uow = FakeUnitOfWork()
        self.cache = FakeCache()
        self.model: dict[str, CourseModel] = {}

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.loop.close()

    @initialize(
        capacities=st.tuples(*(capacities for _ in COURSE_IDS)),
        arrivals=st.lists(st.tuples(students, course_ids), max_size=8),
    )
    def create_courses(self, capacities: tuple[int | None, ...], arrivals: list[tuple[str, str]]) -> None:
        for course_id, capacity in zip(COURSE_IDS, capacities, strict=True):
            create = courses.create_course(self.uow, self.cache, course_id=course_id, name=course_id, capacity=capacity)
            self.run(create)
            self.model[course_id] = CourseModel(capacity)
        self.rush(arrivals)

    @rule(student=students, course_id=course_ids, waitlist=st.booleans())
    def sign_up(self, student: str, course_id: str, waitlist: bool) -> None:
        expected = outcome(lambda: self.model[course_id].sign_up(student, waitlist=waitlist))
        event(f"sign_up: {expected[1][0] if expected[0] == 'ok' else label(expected)}")
        actual = outcome(
            lambda: self.run(
                enrollments.sign_up(self.uow, self.cache, student_id=student, course_id=course_id, waitlist=waitlist)
            )
        )
        if actual[0] == "ok":
            view = actual[1]
            assert (view.student_id, view.course_id) == (student, course_id)
            actual = ("ok", (view.status, view.position))
        assert actual == expected

    @rule(arrivals=st.lists(st.tuples(students, course_ids), min_size=1, max_size=8))
    def rush(self, arrivals: list[tuple[str, str]]) -> None:
        """Several students arrive, each willing to wait: fills courses and grows waitlists quickly."""
        for student, course_id in arrivals:
            self.sign_up(student, course_id, waitlist=True)

    def members(self) -> list[tuple[str, str]]:
        return sorted((c, s) for c, model in self.model.items() for s in (*model.enrolled, *model.waitlist))

    @precondition(lambda self: self.members())
    @rule(data=st.data())
    def drop_a_member(self, data: st.DataObject) -> None:
        course_id, student = data.draw(st.sampled_from(self.members()), label="member")
        self.drop(student, course_id)

    @rule(student=students, course_id=course_ids)
    def drop(self, student: str, course_id: str) -> None:
        expected = outcome(lambda: self.model[course_id].drop(student))
        event(f"drop: {label(expected)}{' and a promotion' if expected[0] == 'ok' and expected[1] else ''}")
        actual = outcome(
            lambda: self.run(enrollments.drop(self.uow, self.cache, student_id=student, course_id=course_id)).promoted
        )
        assert actual == expected

    @rule(course_id=course_ids, capacity=capacities)
    def change_capacity(self, course_id: str, capacity: int | None) -> None:
        promotions = sum(kind == "promoted" for kind, _ in self.model[course_id].events)
        expected = outcome(lambda: self.model[course_id].change_capacity(capacity))
        event(f"change_capacity: {label(expected)}")
        actual = outcome(
            lambda: self.run(
                courses.change_course(self.uow, self.cache, course_id=course_id, changes={"capacity": capacity})
            )
        )
        if actual[0] == "ok":
            assert actual[1].capacity == capacity
            actual = ("ok", None)
        assert actual == expected
        if promotions < sum(kind == "promoted" for kind, _ in self.model[course_id].events):
            event("change_capacity: ok and a promotion")

    @rule(course_id=course_ids)
    def close_registration(self, course_id: str) -> None:
        self.set_window(course_id, closes_at=utcnow() - timedelta(minutes=1))
        self.model[course_id].is_open = False

    @rule(course_id=course_ids)
    def reopen_registration(self, course_id: str) -> None:
        self.set_window(course_id, closes_at=None)
        self.model[course_id].is_open = True

    def set_window(self, course_id: str, *, closes_at: datetime | None) -> None:
        change = {"registration_closes_at": closes_at}
        self.run(courses.change_course(self.uow, self.cache, course_id=course_id, changes=change))

    @invariant()
    def courses_match_the_model(self) -> None:
        for course_id, model in self.model.items():
            course = self.run(courses.get_course(self.uow, self.cache, course_id=course_id, render=lambda c: c))
            assert course.capacity == model.capacity
            assert (course.enrolled, course.waitlisted) == (len(model.enrolled), len(model.waitlist))
            if course.capacity is not None:
                assert course.enrolled <= course.capacity
            # Nobody waits while a seat is free.
            assert not model.waitlist or (course.capacity is not None and course.enrolled == course.capacity)

    @invariant()
    def counters_equal_the_committed_rows(self) -> None:
        tables = self.uow.tables
        for course_id, course in tables.courses.items():
            rows = [e for (c, _), e in tables.enrollments.items() if c == course_id]
            assert course.enrolled == sum(e.status == STATUS_ENROLLED for e in rows)
            assert course.waitlisted == sum(e.status == STATUS_WAITLISTED for e in rows)
            assert all((e.waitlist_seq is None) == (e.status == STATUS_ENROLLED) for e in rows)

    @invariant()
    def roster_is_enrolled_by_id_then_waitlist_in_fifo_order(self) -> None:
        for course_id, model in self.model.items():
            page = self.run(roster.course_roster(self.uow, course_id=course_id, page=EVERYTHING))
            got = [(view.student_id, view.status, view.position) for view in page.items]
            # Nobody is both enrolled and waitlisted, and positions run 1..n without gaps.
            assert len({student for student, _, _ in got}) == len(got)
            waiting = [position for _, status, position in got if status == STATUS_WAITLISTED]
            assert waiting == list(range(1, len(waiting) + 1))
            assert got == [(s, STATUS_ENROLLED, None) for s in sorted(model.enrolled)] + [
                (s, STATUS_WAITLISTED, position) for position, s in enumerate(model.waitlist, start=1)
            ]

    @invariant()
    def each_student_sees_their_own_courses(self) -> None:
        for student in STUDENTS:
            page = self.run(enrollments.list_my_courses(self.uow, student_id=student, status=None, page=EVERYTHING))
            expected = []
            for course_id in sorted(self.model):
                model = self.model[course_id]
                if student in model.enrolled:
                    expected.append((course_id, STATUS_ENROLLED, None))
                elif student in model.waitlist:
                    expected.append((course_id, STATUS_WAITLISTED, model.waitlist.index(student) + 1))
            assert [(c.course_id, c.status, c.position) for c in page.items] == expected

    @invariant()
    def audit_trail_matches_the_model(self) -> None:
        for course_id, model in self.model.items():
            page = self.run(roster.course_events(self.uow, course_id=course_id, page=EVERYTHING))
            assert [(e.type, e.student_id) for e in page.items] == model.events


SignUpMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestSignUpMachine = SignUpMachine.TestCase
