"""A drop landing while a sign-up is decided never leaves the student waitlisted beside a free seat.

Deterministic: the sign-up runs on an engine that pauses before each of its statements in turn
(so in every gap between them, a released lock included), and at that pause a drop freeing the
course's only seat runs on another engine. Whatever the gap, the waiting student must end up
enrolled (seated at once, or promoted by the drop in its transaction). Runs on PostgreSQL and on
the embedded SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy import event
from sqlalchemy.util import await_only

from course_signup.adapters import database
from course_signup.domain.errors import DomainError
from course_signup.services import courses, enrollments
from course_signup.services.unit_of_work import SqlAlchemyUnitOfWork
from course_signup.settings import Settings
from tests.conftest import email, unique
from tests.fakes import FakeCache

# How long a pause gives the drop to finish; a drop still blocked by the sign-up's lock carries on later.
PAUSE_SECONDS = 0.3


class PausingEngine:
    """Runs `at_pause` (once) before the statement numbered `pause_before` on this engine."""

    def __init__(self, settings: Settings) -> None:
        self.engine = database.create_engine(settings)
        self.sessions = database.create_sessions(self.engine)
        self.statements = 0
        self.pause_before: int | None = None
        self.at_pause: Any = None
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._before)

    def _before(self, *_: object) -> None:
        self.statements += 1
        if self.statements == self.pause_before and self.at_pause is not None:
            # This runs inside SQLAlchemy's greenlet, so it may wait on the event loop.
            await_only(self.at_pause())


async def _scenario(settings: Settings, pause_before: int | None) -> tuple[str | None, int, int, int]:
    """One round; returns the waiting student's final status, the course's counters, and statements run."""
    signer = PausingEngine(settings)
    other = database.create_engine(settings)
    other_sessions = database.create_sessions(other)
    cache = FakeCache()
    course, holder, waiter = unique("RACE"), email("holder"), email("waiter")
    try:
        setup = SqlAlchemyUnitOfWork(other_sessions)
        await courses.create_course(setup, cache, course_id=course, name="Race", capacity=1)
        await enrollments.sign_up(setup, cache, student_id=holder, course_id=course, waitlist=False)
        drop: asyncio.Task[object] | None = None

        async def start_drop() -> None:
            nonlocal drop
            drop = asyncio.create_task(
                enrollments.drop(SqlAlchemyUnitOfWork(other_sessions), cache, student_id=holder, course_id=course)
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(drop), PAUSE_SECONDS)

        signer.statements, signer.pause_before, signer.at_pause = 0, pause_before, start_drop
        with contextlib.suppress(DomainError):
            await enrollments.sign_up(
                SqlAlchemyUnitOfWork(signer.sessions), cache, student_id=waiter, course_id=course, waitlist=True
            )
        statements = signer.statements
        if drop is None:  # no pause: the drop comes after the sign-up
            await enrollments.drop(SqlAlchemyUnitOfWork(other_sessions), cache, student_id=holder, course_id=course)
        else:
            await drop
        check = SqlAlchemyUnitOfWork(other_sessions)
        async with check:
            mine = await check.enrollments.get(student_id=waiter, course_id=course)
            row = await check.courses.get(course)
        return (None if mine is None else mine.status), row.enrolled, row.waitlisted, statements
    finally:
        await signer.engine.dispose()
        await other.dispose()


async def test_a_drop_in_any_gap_of_a_waitlist_sign_up_leaves_the_student_enrolled(settings: Settings):
    *_, statements = await _scenario(settings, pause_before=None)
    assert statements >= 1
    for gap in range(1, statements + 1):
        status, enrolled, waitlisted, _ = await _scenario(settings, pause_before=gap)
        assert (status, enrolled, waitlisted) == ("enrolled", 1, 0), f"drop before sign-up statement {gap}"
