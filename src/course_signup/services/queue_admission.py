"""Queue mode (`COURSE_SIGNUP_ADMISSION=queue`): decided in Redis, handed to RabbitMQ, written by the worker.

A sign-up or drop is decided by one Lua script (adapters/admission_state.py), published as a
persistent message with publisher confirms (adapters/admission_queue.py) and only then answered.
If the publish fails or is not confirmed within `queue_publish_timeout_seconds`, the decision is
undone and the client gets 503 with Retry-After. The worker (services/worker.py) writes the
messages to PostgreSQL, exactly once, in decision order per course.

The registrar's changes go through the same state: capacity and window are checked and set in Redis
(atomically against the live seat count), a new course appears there once committed, and a deleted
one leaves it first. Reads of the catalogue take their seat figures from the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from course_signup.adapters.admission_queue import AdmissionQueue, BrokerUnavailableError
from course_signup.adapters.admission_state import AdmissionPausedError, AdmissionState, CourseConfig, decode
from course_signup.adapters.repositories.decisions import DecisionRepository
from course_signup.domain.admission import Admission, AdmissionRequest, Verdict
from course_signup.domain.errors import (
    AdmissionUnavailableError,
    CapacityBelowEnrollmentError,
    CourseHasEnrollmentsError,
    EnrollmentNotFoundError,
)
from course_signup.domain.models import Course, utcnow
from course_signup.services.admission import Admissions, Admitter
from course_signup.services.unit_of_work import UnitOfWork
from course_signup.settings import Settings

log = logging.getLogger("course_signup.admission")


class QueueAdmissions:
    """The queue mode's `admit` and `drop` (the Admitter protocol), and its catalogue hooks."""

    def __init__(self, state: AdmissionState, queue: AdmissionQueue, settings: Settings, engine: AsyncEngine) -> None:
        self.state = state
        self.queue = queue
        self.engine = engine  # the primary: what the worker has written, never a replica's view of it
        self._published = _DeadlineClearer(state)
        self._batches = Admissions(batching=settings.batch_admission, decide=self._decide)
        self.publish_timeout = settings.queue_publish_timeout_seconds
        self.pending_ms = int(settings.queue_pending_seconds * 1000)

    async def admit(self, uow: UnitOfWork, course_id: str, request: AdmissionRequest) -> Admission:
        # Sign-ups to one course that arrive while its script runs go together as the next script
        # (services/admission.py's batching, with Redis deciding instead of the database).
        return await self._batches.admit(uow, course_id, request)

    async def _decide(
        self, uow: UnitOfWork, course_id: str, requests: Sequence[AdmissionRequest]
    ) -> list[Admission | BaseException]:
        at = utcnow()
        if not self.queue.ready:  # decide nothing that could not be handed off
            raise AdmissionUnavailableError()
        try:
            decisions, promotion = await self.state.sign_up_many(
                course_id,
                [(r.student_id, r.waitlist, r.request_id) for r in requests],
                at=at,
                pending_ms=self.pending_ms,
            )
        except AdmissionPausedError:
            raise AdmissionUnavailableError() from None
        except (RedisError, OSError) as exc:
            log.warning("admission state unavailable: %r", exc)
            raise AdmissionUnavailableError() from None
        if promotion is not None:  # a seat was free while someone waited: theirs first
            await self.publish_system(course_id, promotion)
        handed = await asyncio.gather(
            *(self.hand_off(course_id, d.seq, d.message, at=at) for d in decisions if d.message is not None),
            return_exceptions=True,
        )
        failures = iter(handed)
        answers: list[Admission | BaseException] = []
        for decision in decisions:
            verdict = Verdict(decision.verdict)
            failure = next(failures) if decision.message is not None else None
            if isinstance(failure, BaseException):
                answers.append(failure)
            elif verdict is Verdict.WAITLISTED:
                answers.append(Admission(verdict, at, waitlist_seq=decision.ticket, position=decision.position))
            else:
                answers.append(Admission(verdict, at))
        return answers

    async def drop(self, uow: UnitOfWork, *, student_id: str, course_id: str) -> str | None:
        at = utcnow()
        if not self.queue.ready:
            raise AdmissionUnavailableError()
        try:
            decision = await self.state.drop(
                course_id, student_id, at=at, pending_ms=self.pending_ms, request_id=uow.request_id
            )
        except (AdmissionPausedError, RedisError, OSError):
            raise AdmissionUnavailableError() from None
        if decision.message is None:
            raise EnrollmentNotFoundError()
        await self.hand_off(course_id, decision.seq, decision.message, at=at)
        return decision.promoted

    async def hand_off(self, course_id: str, seq: int, message: bytes, *, at: datetime) -> None:
        """Publish a decision; on failure undo it and raise AdmissionUnavailableError (503)."""
        try:
            await self.queue.publish(course_id, message, timeout=self.publish_timeout)
        except BrokerUnavailableError as exc:
            log.warning("decision not handed off (%s); undoing it", exc)
            await self._undo(course_id, seq, at=at)
            return
        failure = await self._published.mark(f"{course_id}|{seq}")
        if failure is not None:
            # The worker's claim clears the deadline too; only a backlog longer than the deadline
            # would let the reconciler undo this published decision (the worker then skips it).
            log.warning("could not clear the deadline of %s|%s: %r", course_id, seq, failure)

    async def _undo(self, course_id: str, seq: int, *, at: datetime) -> None:
        try:
            outcome, follow = await self.state.void(course_id, seq, at=at, pending_ms=self.pending_ms)
        except (RedisError, OSError):
            raise AdmissionUnavailableError() from None  # the reconciler settles it at its deadline
        if follow is not None:
            await self.publish_system(course_id, follow)
        if outcome == "claimed":
            return  # the broker had it after all, and the worker took it: the decision stands
        if outcome == "kept":
            # Later decisions depend on it (or undoing a drop would oversell): it stands, and the
            # reconciler publishes it at its deadline.
            return
        raise AdmissionUnavailableError()

    async def publish_system(self, course_id: str, message: bytes) -> None:
        """Publish a decision no client waits for (a promotion); if that fails the reconciler will."""
        body = _decode_seq(message)
        try:
            await self.queue.publish(course_id, message, timeout=self.publish_timeout)
            await self.state.published(course_id, body)
        except (BrokerUnavailableError, RedisError, OSError):
            log.warning("promotion %s|%s left for the reconciler", course_id, body)

    # --- the registrar's changes ---------------------------------------------------------------

    async def course_created(self, uow: UnitOfWork, course: Course) -> None:
        """A committed new course joins the state (its numbering continues a deleted namesake's).

        The course exists once committed: if Redis fails here, the answer is still the course, and
        the worker's catalogue sync adds it to the state within `queue_pending_seconds`.
        """
        async with self.engine.connect() as connection:
            seq = await DecisionRepository(connection).applied_seq(course.course_id)
        try:
            await self.state.create(CourseConfig.of(course), ticket=course.waitlist_seq, seq=seq)
        except (RedisError, OSError) as exc:
            log.warning("course %s left for the worker's catalogue sync: %r", course.course_id, exc)

    async def configure(self, course: Course, merged: dict[str, Any]) -> None:
        """Set capacity and window in the state, refusing a capacity below the seats taken now."""
        outcome = await self._checked(
            self.state.configure(
                CourseConfig(
                    course.course_id,
                    merged["capacity"],
                    merged["registration_opens_at"],
                    merged["registration_closes_at"],
                )
            )
        )
        if outcome == "below":
            raise CapacityBelowEnrollmentError()
        if outcome == "paused":
            raise AdmissionUnavailableError()

    async def restore_config(self, config: CourseConfig) -> None:
        """Put back a course's previous capacity and window (its database change failed). A capacity
        now under the seats taken stays raised; the worker's catalogue sync aligns it later."""
        with contextlib.suppress(RedisError, OSError):
            outcome = await self.state.configure(config)
            if outcome == "below":
                log.warning("course %s: capacity could not be put back under the seats taken", config.course_id)

    async def promote(self, course_id: str) -> None:
        """After a committed capacity rise: seat waitlisted students in order, as one decision.

        The change is committed either way: if Redis fails here, the next sign-up to the course
        promotes first (a free seat never goes to a newcomer while someone waits).
        """
        try:
            message = await self.state.promote(course_id, at=utcnow(), pending_ms=self.pending_ms)
        except (AdmissionPausedError, RedisError, OSError):
            return
        if message:
            await self.publish_system(course_id, message)

    async def remove(self, course_id: str, *, force: bool) -> None:
        """Before the database deletes a course: it answers "not found" from now on (refused, counted
        live, while it has students unless forced). Then `removed`, or `keep` if the delete failed."""
        outcome = await self._checked(self.state.remove(course_id, force=force))
        if outcome == "has enrollments":
            raise CourseHasEnrollmentsError()
        if outcome == "paused":
            raise AdmissionUnavailableError()

    async def removed(self, course_id: str) -> None:
        with contextlib.suppress(AdmissionUnavailableError):  # the worker's catalogue sync finishes it
            await self._checked(self.state.removed(course_id))

    async def keep(self, course_id: str) -> None:
        with contextlib.suppress(AdmissionUnavailableError):
            await self._checked(self.state.keep(course_id))

    async def imported(self, uow: UnitOfWork, course_ids: Iterable[str]) -> None:
        """After an import committed: new courses join the state, waitlists are promoted into seats.

        Capacity and window were set in the state before the commit. If Redis fails here the import
        still stands; the worker's catalogue sync adds what is missing.
        """
        async with self.engine.connect() as connection:
            states = await DecisionRepository(connection).states(list(course_ids))
        for course in states:
            try:
                await self.state.create(course.config, ticket=course.ticket, seq=course.seq)
            except (RedisError, OSError) as exc:
                log.warning("course %s left for the worker's catalogue sync: %r", course.config.course_id, exc)
                continue
            await self.promote(course.config.course_id)

    async def live_counters(self, course_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
        """(enrolled, waitlisted) now, from the state; {} when it cannot say (the database's figures stand)."""
        try:
            return await self.state.counters(course_ids)
        except (RedisError, OSError):
            return {}

    async def _checked(self, call: Any) -> Any:
        try:
            return await call
        except (RedisError, OSError):
            raise AdmissionUnavailableError() from None


class _DeadlineClearer:
    """Clears the deadlines of published decisions, many per Redis command.

    Each caller waits for the command that covers its decision (its answer goes out only after
    the deadline is gone); decisions published while one command is in flight go in the next.
    """

    def __init__(self, state: AdmissionState) -> None:
        self.state = state
        self._waiting: list[tuple[str, asyncio.Future[BaseException | None]]] = []
        self._running = False

    async def mark(self, member: str) -> BaseException | None:
        """Clear one deadline; returns the Redis failure, if any, instead of raising it."""
        done: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((member, done))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                failure: BaseException | None = None
                try:
                    await self.state.published_many([member for member, _ in batch])
                except (RedisError, OSError) as exc:
                    failure = exc
                for _, done in batch:
                    if not done.done():
                        done.set_result(failure)
        finally:
            self._running = False


def _decode_seq(message: bytes) -> int:
    return int(decode(message)["s"])


def queued(admissions: Admitter | None) -> QueueAdmissions | None:
    """The queue mode's admitter, when that is the mode; None in database mode."""
    return admissions if isinstance(admissions, QueueAdmissions) else None


@dataclass
class QueueMode:
    """What an API process opens for queue mode: the Redis client, the broker connection, the admitter."""

    redis: Redis
    queue: AdmissionQueue
    admissions: QueueAdmissions

    async def ensure_loaded(self) -> None:
        """For /ready: raises while the admission state is not loaded (nothing can be admitted)."""
        if await self.admissions.state.generation() is None:
            raise AdmissionUnavailableError()

    async def close(self) -> None:
        await self.queue.close()
        await close_redis(self.redis)


REDIS_CONNECTIONS = 64


def connect_redis(settings: Settings) -> Redis:
    """The admission state's client: a decision waits up to a second for Redis, then answers 503.

    A burst beyond REDIS_CONNECTIONS concurrent decisions waits for a connection (a script takes
    microseconds) instead of failing.
    """
    assert settings.redis_url is not None
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=REDIS_CONNECTIONS,
        timeout=1.0,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
    )
    return Redis(connection_pool=pool)


async def close_redis(redis: Redis) -> None:
    await redis.aclose()
    await redis.connection_pool.disconnect()


def open_for(settings: Settings, engine: AsyncEngine) -> QueueMode:
    """Queue mode's parts for an API process; `queue.open()` then connects it in the background."""
    assert settings.broker_url is not None
    redis = connect_redis(settings)
    queue = AdmissionQueue(settings.broker_url, shards=settings.queue_shards)
    return QueueMode(redis, queue, QueueAdmissions(AdmissionState(redis), queue, settings, engine))
