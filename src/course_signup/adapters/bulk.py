"""Bulk writes into a database with no courses or enrollments: COPY on PostgreSQL, executemany on SQLite."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

from sqlalchemy import String, Table, TextClause, bindparam, exists, insert, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from course_signup.domain.models import Course, Enrollment

CHUNK = 50_000  # rows per COPY or executemany: the progress bar moves this often, memory stays flat
SORT_MEMORY = "256MB"

# The tables' unique and foreign-key constraints and their other non-primary indexes, each with the
# statement that drops it and the one that makes it again (in that order: constraints, then indexes).
_SET_ASIDE = text(
    """
    SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname) AS drop_it,
           format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname,
                  pg_get_constraintdef(c.oid)) AS make_it,
           CASE c.contype WHEN 'f' THEN 0 ELSE 1 END AS drop_order
    FROM pg_constraint c
    WHERE c.conrelid::regclass::text = ANY(:tables) AND c.contype IN ('u', 'f')
    UNION ALL
    SELECT format('DROP INDEX %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid), 2
    FROM pg_index i
    WHERE i.indrelid::regclass::text = ANY(:tables) AND NOT i.indisprimary
      AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)
    ORDER BY drop_order
    """
).bindparams(bindparam("tables", type_=ARRAY(String())))
# SQLite: the indexes made by CREATE INDEX (those of UNIQUE constraints have no SQL and stay).
_SET_ASIDE_SQLITE = text(
    "SELECT 'DROP INDEX ' || name AS drop_it, sql AS make_it FROM sqlite_master"
    " WHERE type = 'index' AND tbl_name IN :tables AND sql IS NOT NULL"
).bindparams(bindparam("tables", expanding=True))


class NotEmptyError(Exception):
    def __str__(self) -> str:
        return "the database already has courses or enrollments: use a new database"


class Progress(Protocol):
    def update(self, n: int) -> object: ...
    def set_description(self, desc: str) -> object: ...


@dataclass(frozen=True, slots=True)
class TableRows:
    """Rows for one table, each a tuple in the order of `columns`."""

    table: Table
    columns: tuple[str, ...]
    rows: Iterable[tuple[Any, ...]]
    count: int


async def ensure_empty(engine: AsyncEngine) -> None:
    """NotEmptyError if any course or enrollment exists."""
    async with engine.connect() as connection:
        await _ensure_empty(connection)


async def load(engine: AsyncEngine, tables: Sequence[TableRows], *, progress: Progress) -> None:
    """Write every table's rows in one transaction that first makes sure the database is empty.

    The tables' secondary indexes (on PostgreSQL also their unique and foreign-key constraints)
    are dropped for the load and made again before the commit: one sorted build each instead of a
    million random inserts. DDL is transactional on both, so no other session sees them missing.
    """
    names = [part.table.name for part in tables]
    async with engine.begin() as connection:  # SQLite: BEGIN IMMEDIATE holds off every other writer
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            # Nothing lands between the check and the load, and nobody reads a table without its indexes.
            await connection.execute(text(f"LOCK TABLE {', '.join(names)} IN ACCESS EXCLUSIVE MODE"))
            # This transaction only: the index builds sort in memory instead of in temporary files.
            await connection.execute(text(f"SET LOCAL maintenance_work_mem = '{SORT_MEMORY}'"))
        await _ensure_empty(connection)
        restore = await _set_aside(connection, names, _SET_ASIDE if postgres else _SET_ASIDE_SQLITE)
        for part in tables:
            progress.set_description(part.table.name)
            rows = iter(part.rows)
            while chunk := list(islice(rows, CHUNK)):
                await (_copy if postgres else _insert)(connection, part, chunk)
                progress.update(len(chunk))
        progress.set_description("indexes")
        for statement in restore:
            await connection.execute(text(statement))
    progress.set_description("analyze")
    await _analyze(engine, names)


async def _ensure_empty(connection: AsyncConnection) -> None:
    taken = or_(exists().select_from(Course.__table__), exists().select_from(Enrollment.__table__))
    if (await connection.execute(select(taken))).scalar():
        raise NotEmptyError()


async def _set_aside(connection: AsyncConnection, tables: list[str], listing: TextClause) -> list[str]:
    """Drop the constraints and indexes the listing names; returns the statements that make them again."""
    found = (await connection.execute(listing, {"tables": tables})).all()
    for row in found:
        await connection.execute(text(row.drop_it))
    return [row.make_it for row in reversed(found)]  # indexes and unique constraints before foreign keys


async def _copy(connection: AsyncConnection, part: TableRows, chunk: list[tuple[Any, ...]]) -> None:
    # asyncpg's binary COPY on the connection SQLAlchemy holds, inside its transaction.
    driver = (await connection.get_raw_connection()).driver_connection
    await driver.copy_records_to_table(part.table.name, records=chunk, columns=list(part.columns))


async def _insert(connection: AsyncConnection, part: TableRows, chunk: list[tuple[Any, ...]]) -> None:
    await connection.execute(insert(part.table), [dict(zip(part.columns, row, strict=True)) for row in chunk])


async def _analyze(engine: AsyncEngine, tables: list[str]) -> None:
    """Planner statistics for the new rows; on PostgreSQL also the visibility map (VACUUM), so the
    first readers do not set hint bits and autovacuum has no million-row table left to visit."""
    async with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text(f"VACUUM (ANALYZE) {', '.join(tables)}"))
        else:
            await connection.execute(text("ANALYZE"))
            await connection.commit()
