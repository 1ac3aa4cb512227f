"""What every repository shares: the executor it runs on and the dialect's differences."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

# Repositories run on a session (a unit of work) or, for a use case that only reads, directly on a
# pooled connection (UnitOfWork.reading): the read methods below use Core statements that both run.
Executor = AsyncSession | AsyncConnection


def _is_postgres(session: Executor) -> bool:
    bind = session if isinstance(session, AsyncConnection) else session.get_bind()
    return bind.dialect.name == "postgresql"


def _upsert(session: Executor) -> Any:
    """The dialect's INSERT that knows ON CONFLICT (PostgreSQL and SQLite both do)."""
    return pg_insert if _is_postgres(session) else sqlite_insert


def _is_unique_violation(exc: IntegrityError, constraint: str) -> bool:
    return constraint in str(exc.orig)
