"""Admission: sign-ups decided by one statement per batch, and batched per course within a process.

On registration morning most sign-ups in a process are for the same few courses, and each one's
statement waits for that course's row lock. Instead of queueing one statement per request on the
lock, the requests for a course that arrive while its statement is in flight wait in memory and
then go together, in arrival order, as the next statement. No timer is involved: a lone request
starts its statement at once, and a batch is whatever queued meanwhile (at most MAX_BATCH).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from course_signup.domain import rules
from course_signup.domain.admission import Admission, AdmissionRequest, status_of
from course_signup.domain.errors import CourseNotFoundError, EnrollmentNotFoundError
from course_signup.domain.events import EventType
from course_signup.domain.models import STATUS_ENROLLED, utcnow
from course_signup.services.unit_of_work import UnitOfWork

MAX_BATCH = 256
# A retry happens only when a concurrent sign-up of the same student committed while the statement
# waited for the course; the retry's fresh snapshot sees it. More than a few in a row means trouble.
MAX_ATTEMPTS = 10


# Decides a batch of sign-ups to one course: an answer per request, or the exception that request
# alone met (raising fails the whole batch).
Decide = Callable[[UnitOfWork, str, Sequence[AdmissionRequest]], Awaitable[Sequence[Admission | BaseException]]]


def _answer(answer: Admission | BaseException) -> Admission:
    if isinstance(answer, BaseException):
        raise answer
    return answer


class Admitter(Protocol):
    """How sign-ups and drops are decided: by the database (Admissions) or in Redis (QueueAdmissions)."""

    async def admit(self, uow: UnitOfWork, course_id: str, request: AdmissionRequest) -> Admission: ...
    async def drop(self, uow: UnitOfWork, *, student_id: str, course_id: str) -> str | None: ...


class AdmissionContendedError(RuntimeError):
    """The batch lost its race MAX_ATTEMPTS times in a row; nothing was written."""


async def admit_batch(uow: UnitOfWork, course_id: str, requests: Sequence[AdmissionRequest]) -> list[Admission]:
    """Decide and write the requests (one per student) in one transaction: all of them, or none."""
    for _ in range(MAX_ATTEMPTS):
        async with uow:
            # PostgreSQL: one autocommit statement, so the course's lock is never held across a round trip.
            await uow.single_statements()
            answers = await uow.enrollments.admit(course_id, requests, at=utcnow())
            if answers is not None:
                if any(status_of(answer.verdict) for answer in answers):
                    await uow.commit()
                return answers
    raise AdmissionContendedError(f"sign-ups to {course_id} kept racing with identical ones")


@dataclass(eq=False, slots=True)
class _Waiter:
    uow: UnitOfWork
    request: AdmissionRequest
    answer: asyncio.Future[Admission]


class Admissions:
    """Admits sign-ups, one statement per course at a time in this process, batching those that wait.

    With `batching` off, every request runs its own statement (the database still serialises them
    on the course's row lock), which the benchmark uses for comparison. This is the database mode;
    services/queue_admission.py has the same two methods for the queue mode.
    """

    def __init__(self, *, batching: bool = True, max_batch: int = MAX_BATCH, decide: Decide | None = None) -> None:
        self.batching = batching
        self.max_batch = max_batch
        # How a batch is decided: by the database here; queue mode passes its Redis script.
        self.decide: Decide = decide or admit_batch
        # A course has a queue here exactly while one of its statements is in flight.
        self._queues: dict[str, deque[_Waiter]] = {}

    async def drop(self, uow: UnitOfWork, *, student_id: str, course_id: str) -> str | None:
        """Drop an enrollment or leave the waitlist; returns the student promoted into a freed seat."""
        now = utcnow()
        async with uow:
            try:
                # The course row is locked first, in the same order sign-ups lock it: no deadlock.
                await uow.courses.get(course_id, for_update=True)
            except CourseNotFoundError:
                raise EnrollmentNotFoundError() from None
            removed = await uow.enrollments.remove(student_id=student_id, course_id=course_id)
            if removed is None:
                raise EnrollmentNotFoundError()
            promoted: list[str] = []
            if removed.status == STATUS_ENROLLED:
                await uow.courses.adjust_counters(course_id, enrolled=-1, at=now)
                await uow.events.add(course_id=course_id, type=EventType.DROPPED, student_ids=[student_id], at=now)
                promoted = await promote_waitlisted(uow, course_id, at=now)
            else:
                await uow.courses.adjust_counters(course_id, waitlisted=-1, at=now)
                await uow.events.add(
                    course_id=course_id, type=EventType.LEFT_WAITLIST, student_ids=[student_id], at=now
                )
            await uow.commit()
        return promoted[0] if promoted else None

    async def admit(self, uow: UnitOfWork, course_id: str, request: AdmissionRequest) -> Admission:
        if not self.batching:
            return _answer((await self.decide(uow, course_id, [request]))[0])
        waiter = _Waiter(uow, request, asyncio.get_running_loop().create_future())
        queue = self._queues.get(course_id)
        if queue is None:
            self._queues[course_id] = queue = deque([waiter])
            self._start(course_id, queue)
        else:
            queue.append(waiter)
        return await waiter.answer

    def _start(self, course_id: str, queue: deque[_Waiter]) -> None:
        batch = self._take(queue)
        if not batch:  # every request that was waiting went away
            del self._queues[course_id]
            return
        # A task of its own: a client that goes away cancels its wait, never a batch others share.
        statement = asyncio.create_task(self.decide(batch[0].uow, course_id, [w.request for w in batch]))
        statement.add_done_callback(lambda done: self._finish(course_id, queue, batch, done))

    def _take(self, queue: deque[_Waiter]) -> list[_Waiter]:
        """The next batch in arrival order; a student's second request waits for the next one."""
        batch: list[_Waiter] = []
        students: set[str] = set()
        later: list[_Waiter] = []
        while queue and len(batch) < self.max_batch:
            waiter = queue.popleft()
            if waiter.answer.done():  # its client went away before the statement started
                continue
            if waiter.request.student_id in students:
                later.append(waiter)
            else:
                students.add(waiter.request.student_id)
                batch.append(waiter)
        queue.extendleft(reversed(later))
        return batch

    def _finish(
        self,
        course_id: str,
        queue: deque[_Waiter],
        batch: list[_Waiter],
        done: asyncio.Task[list[Admission | BaseException]],
    ) -> None:
        error = asyncio.CancelledError() if done.cancelled() else done.exception()
        answers = [None] * len(batch) if error is not None else done.result()
        for waiter, answer in zip(batch, answers, strict=True):
            if waiter.answer.done():
                continue
            if answer is None:
                waiter.answer.set_exception(error or asyncio.CancelledError())
            elif isinstance(answer, BaseException):  # this request alone failed
                waiter.answer.set_exception(answer)
            else:
                waiter.answer.set_result(answer)
        while queue and queue[0].answer.done():
            queue.popleft()
        if queue:
            self._start(course_id, queue)
        else:
            del self._queues[course_id]


async def promote_waitlisted(uow: UnitOfWork, course_id: str, *, at: datetime) -> list[str]:
    """Admit waitlisted students in ticket order while seats are free; the course row is locked."""
    course = await uow.courses.get(course_id)
    count = rules.seats_to_promote(capacity=course.capacity, enrolled=course.enrolled, waitlisted=course.waitlisted)
    promoted = await uow.enrollments.promote_first(course_id, count, at=at)
    if promoted:
        await uow.courses.adjust_counters(course_id, enrolled=len(promoted), waitlisted=-len(promoted), at=at)
        await uow.events.add(course_id=course_id, type=EventType.PROMOTED, student_ids=promoted, at=at)
    return promoted
