"""The async engine and session factory, the private data directory, and the schema-version check."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

from course_signup.adapters import metrics
from course_signup.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

log = logging.getLogger(__name__)


class TimedPool(AsyncAdaptedQueuePool):
    """The default async pool, reporting how long each checkout waited for a connection."""

    def _do_get(self) -> ConnectionPoolEntry:
        started = time.perf_counter()
        try:
            return super()._do_get()
        finally:
            metrics.POOL_WAIT.observe(time.perf_counter() - started)


# SQLAlchemy keeps its own pool loggers at WARNING; this subclass logs under our name, so do the same.
logging.getLogger(f"{__name__}.{TimedPool.__name__}").setLevel(logging.WARNING)


def create_engine(settings: Settings) -> AsyncEngine:
    """An engine for the configured database, tuned per backend, reporting its pool to metrics."""
    engine = _create_engine(settings)
    event.listen(engine.sync_engine.pool, "checkout", lambda *_: metrics.POOL_IN_USE.inc())
    event.listen(engine.sync_engine.pool, "checkin", lambda *_: metrics.POOL_IN_USE.dec())
    return engine


def secure_data_dir(settings: Settings) -> None:
    """Create the data directory private to its owner (0700), tightening one left open before."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _make_private(settings.data_dir)


def secure_embedded_database(settings: Settings) -> None:
    """The private data directory, and the embedded database file (created if missing) readable by its owner only."""
    secure_data_dir(settings)
    path = settings.embedded_database
    # Created 0600 before SQLite opens it: SQLite gives the -wal and -shm files it creates the
    # database file's mode. Files an older version left open are tightened: they hold e-mails.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_SIDE_FILES)):
        if file.exists():
            _make_private(file)


def _make_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        try:
            path.chmod(mode & 0o700)
        except OSError as exc:  # e.g. a volume owned by another user: serve anyway, but say so
            log.warning("cannot make %s private to its owner: %s", path, exc.strerror)


def _create_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        if settings.embedded:
            secure_embedded_database(settings)
        else:
            secure_data_dir(settings)
        engine = create_async_engine(
            settings.sqlalchemy_url,
            poolclass=TimedPool,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout,
        )
        _serialise_sqlite_writes(engine)
        return engine
    return create_async_engine(
        settings.sqlalchemy_url,
        poolclass=TimedPool,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        # No pre-ping (a round trip per checkout): a connection the server dropped fails its
        # request with a 503, and SQLAlchemy then invalidates the whole pool, so the next
        # requests reconnect.
        pool_recycle=1800,
    )


def _serialise_sqlite_writes(engine: AsyncEngine) -> None:
    # Every transaction starts with BEGIN IMMEDIATE: it takes SQLite's single write lock up
    # front, so a read-then-write transaction (claim a seat, then insert) never fails to
    # upgrade its lock, and concurrent writers queue on busy_timeout instead of erroring.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects returned by a use case stay readable after its commit.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The Alembic revision the database is at, or None when it was never migrated."""
    async with engine.connect() as connection:
        has_table = await connection.run_sync(lambda sync: sync.dialect.has_table(sync, "alembic_version"))
        if not has_table:
            return None
        return (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
