"""The unit of work: one transaction and the repositories that share it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from course_signup.adapters.repositories import (
    CourseRepository,
    EnrollmentRepository,
    EventRepository,
    IdempotencyRepository,
)


class UnitOfWork(Protocol):
    request_id: str | None  # the request this work answers; goes into the audit events
    courses: CourseRepository
    enrollments: EnrollmentRepository
    events: EventRepository
    idempotency: IdempotencyRepository

    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc_info: object) -> None: ...
    async def single_statements(self) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...
    def reading(self) -> AbstractAsyncContextManager[Reads]: ...


class Reads(Protocol):
    """Repositories for a use case that only reads: each statement stands alone, nothing is written."""

    courses: CourseRepository
    enrollments: EnrollmentRepository
    events: EventRepository


@dataclass(frozen=True, slots=True)
class SqlAlchemyReads:
    courses: CourseRepository
    enrollments: EnrollmentRepository
    events: EventRepository


class SqlAlchemyUnitOfWork:
    """A session per `async with`; leaving without commit() rolls everything back."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, request_id: str | None = None) -> None:
        self._sessions = sessions
        self.request_id = request_id

    async def __aenter__(self) -> Self:
        self.session = self._sessions()
        self.courses = CourseRepository(self.session)
        self.enrollments = EnrollmentRepository(self.session)
        self.events = EventRepository(self.session, request_id=self.request_id)
        self.idempotency = IdempotencyRepository(self.session)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # close() rolls back whatever was not committed and detaches loaded objects without
        # expiring them, so a use case can return what it read.
        await self.session.close()

    async def single_statements(self) -> None:
        """Make each following statement its own transaction; call before the first one.

        Only for work that is one statement: a single read, or the sign-up fast path, whose
        statement then commits inside the server so no lock waits on Python. It saves the
        BEGIN and COMMIT/ROLLBACK round trips. SQLite keeps its one transaction.
        """
        if self.session.get_bind().dialect.name == "postgresql":
            await self.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[Reads]:
        """Repositories on one pooled connection, without a session: for a use case that only reads.

        No ORM session is set up, and on PostgreSQL each statement is its own transaction, so a
        read costs its statement's round trip and nothing else (no BEGIN, no ROLLBACK).
        """
        engine = self._sessions.kw["bind"]
        async with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execution_options(isolation_level="AUTOCOMMIT")
            yield SqlAlchemyReads(
                CourseRepository(connection),
                EnrollmentRepository(connection),
                EventRepository(connection, request_id=self.request_id),
            )

    async def commit(self) -> None:
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()
