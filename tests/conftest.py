"""Shared fixtures: per-run databases (embedded SQLite and the real PostgreSQL), the app, clients, tokens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from course_signup.adapters import migrations
from course_signup.adapters.tokens import TokenService
from course_signup.app import create_app
from course_signup.settings import Settings

PG_ADMIN_DSN = os.environ.get("COURSE_SIGNUP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
JWT_SECRET = "test-secret-" + "x" * 40
TABLES = ("enrollments", "course_events", "idempotency_keys", "admission_progress", "courses")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unique(prefix: str = "C") -> str:
    """A fresh course id or e-mail local part, so tests never share rows."""
    return f"{prefix}{uuid.uuid4().hex[:10]}".upper()


def email(name: str = "s") -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}@example.com"


def _postgres_missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not reachable: {reason}")


async def _pg_admin() -> asyncpg.Connection:
    return await asyncpg.connect(PG_ADMIN_DSN, timeout=5)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A new PostgreSQL database for this run, migrated with Alembic, dropped at the end."""
    name = f"course_signup_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def create() -> None:
        connection = await _pg_admin()
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    async def drop() -> None:
        connection = await _pg_admin()
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    try:
        asyncio.run(create())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _postgres_missing(str(exc))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    migrations.upgrade(Settings(database_url=url))
    yield url
    asyncio.run(drop())


@pytest.fixture(scope="session")
def sqlite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("embedded")
    migrations.upgrade(Settings(data_dir=data_dir))
    return data_dir


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def settings(backend: str, request: pytest.FixtureRequest) -> Settings:
    """Settings for the backend under test: JWT on, a fixed secret, no cache lag."""
    common = {"auth_mode": "jwt", "jwt_secret": JWT_SECRET, "cache_ttl_seconds": 0.0}
    if backend == "postgres":
        url = request.getfixturevalue("postgres_url")
        data_dir = request.getfixturevalue("tmp_path_factory").mktemp("pgdata")
        return Settings(database_url=url, data_dir=data_dir, **common)
    return Settings(data_dir=request.getfixturevalue("sqlite_dir"), **common)


async def truncate(settings: Settings) -> None:
    engine = create_async_engine(settings.sqlalchemy_url)
    async with engine.begin() as connection:
        if settings.is_sqlite:
            for table in TABLES:
                await connection.execute(text(f"DELETE FROM {table}"))
        else:
            await connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings)
    # ASGITransport sends only HTTP requests, so the fixture runs the lifespan itself.
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: object, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
    await truncate(settings)


@pytest.fixture(scope="session")
def tokens() -> TokenService:
    return TokenService(Settings(jwt_secret=JWT_SECRET), secret=JWT_SECRET)


@pytest.fixture(scope="session")
def admin_headers(tokens: TokenService) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.issue('registrar@example.com', admin=True)}"}


@pytest.fixture
def auth(tokens: TokenService):  # type: ignore[no-untyped-def]
    """auth(email) -> headers carrying that student's token."""

    def headers(student: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.issue(student)}"}

    return headers


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client on a fresh app for these settings, lifespan included."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http
