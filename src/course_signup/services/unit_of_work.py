"""The unit of work: one transaction and the repositories that share it."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol, Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from course_signup.adapters.replicas import ReplicaRouter
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


class SqlAlchemyReads:
    """The repositories of one reading connection."""

    def __init__(self, connection: AsyncConnection, sessions: async_sessionmaker[AsyncSession], request_id: str | None):
        self._connection = connection
        self._sessions = sessions
        self._session: AsyncSession | None = None
        self.enrollments = EnrollmentRepository(connection)
        self.events = EventRepository(connection, request_id=request_id)

    @functools.cached_property
    def courses(self) -> CourseRepository:
        # Courses are read as Course objects, which takes a session; it runs on this same connection
        # and is made only for the reads that ask for courses.
        self._session = self._sessions(bind=self._connection)
        return CourseRepository(self._session)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()  # ends only its own work: the connection is not the session's


class SqlAlchemyUnitOfWork:
    """A session per `async with`; leaving without commit() rolls everything back.

    With `replicas`, reading() asks the router where a read by `reader` goes (adapters/replicas.py);
    without, every read goes to the primary. Only read-only routes pass a router.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        request_id: str | None = None,
        replicas: ReplicaRouter | None = None,
        reader: str | None = None,
    ) -> None:
        self._sessions = sessions
        self.request_id = request_id
        self._replicas = replicas
        self.reader = reader

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
        """Repositories on one pooled connection, without a unit of work: for a use case that only reads.

        No ORM session is set up unless courses are read, and on PostgreSQL each statement is its own
        transaction, so a read costs its statement's round trip and nothing else (no BEGIN, no
        ROLLBACK). The connection is a replica's when the router says so.
        """
        router, primary = self._replicas, self._sessions.kw["bind"]
        async with primary.connect() if router is None else router.connect(self.reader) as connection:
            if connection.dialect.name == "postgresql":
                await connection.execution_options(isolation_level="AUTOCOMMIT")
            reads = SqlAlchemyReads(connection, self._sessions, self.request_id)
            try:
                yield reads
            finally:
                await reads.close()

    async def commit(self) -> None:
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()
