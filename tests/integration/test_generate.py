"""`course-signup generate` on a new PostgreSQL database and on SQLite: the data keeps every rule the service keeps."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from course_signup.adapters import migrations
from course_signup.adapters.tokens import TokenService
from course_signup.services import dataset
from course_signup.settings import Settings
from tests.conftest import JWT_SECRET, PG_ADMIN_DSN, _pg_admin, _postgres_missing, running_app

SIZE = ("--courses", "50", "--students", "400", "--enrollments", "2000", "--seed", "7")
MIGRATE_FIRST = "run `course-signup migrate` first"


@dataclass(frozen=True)
class Generated:
    settings: Settings
    run: subprocess.CompletedProcess[str]
    env: dict[str, str]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "course_signup", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("COURSE_SIGNUP_")}, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


async def _admin(sql: str) -> None:
    connection = await _pg_admin()
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def new_postgres() -> Iterator[str]:
    """A brand-new PostgreSQL database, unmigrated, dropped at the end."""
    name = f"course_signup_generate_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _postgres_missing(str(exc))
    try:
        yield f"{PG_ADMIN_DSN.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def generated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """A small data set made by the command, after it refused the database while unmigrated."""
    data_dir = tmp_path_factory.mktemp(f"generate-{request.param}")
    env = {"COURSE_SIGNUP_DATA_DIR": str(data_dir)}
    common = {"data_dir": data_dir, "auth_mode": "jwt", "jwt_secret": JWT_SECRET, "cache_ttl_seconds": 0.0}
    if request.param == "postgres":
        env["COURSE_SIGNUP_DATABASE_URL"] = url = request.getfixturevalue("new_postgres")
        settings = Settings(database_url=url, **common)
    else:
        settings = Settings(**common)
    assert one_line_failure(cli("generate", *SIZE, env=env)).endswith(MIGRATE_FIRST)
    migrations.upgrade(settings)
    return Generated(settings, cli("generate", *SIZE, env=env), env)


def rows(settings: Settings, sql: str) -> list[tuple]:
    async def query() -> list[tuple]:
        engine = create_async_engine(settings.sqlalchemy_url)
        try:
            async with engine.connect() as connection:
                return [tuple(row) for row in await connection.execute(text(sql))]
        finally:
            await engine.dispose()

    return asyncio.run(query())


def utc(value: datetime | str) -> datetime:
    """A time as read with plain SQL: aware from PostgreSQL, naive UTC text from SQLite."""
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def test_generate_reports_what_it_wrote_with_a_progress_bar_on_stderr(generated: Generated):
    assert generated.run.returncode == 0, generated.run.stderr
    assert re.match(r"generated 50 courses \(\d+ full, \d+ with a waitlist\), \d+ students", generated.run.stdout)
    assert "2000 enrollments" in generated.run.stdout and "2000 audit events" in generated.run.stdout
    bar = generated.run.stderr.replace("\r", "\n")
    assert "100%" in bar and "4.05k/4.05k" in bar and "rows" in bar  # 50 courses + 2000 rows + 2000 events


def test_no_course_is_overfilled_and_the_counters_equal_the_rows(generated: Generated):
    assert rows(generated.settings, "SELECT count(*) FROM courses WHERE enrolled > capacity") == [(0,)]
    drift = rows(
        generated.settings,
        """SELECT c.course_id FROM courses c LEFT JOIN (
             SELECT course_id, sum(CASE WHEN status = 'enrolled' THEN 1 ELSE 0 END) AS enrolled,
                    sum(CASE WHEN status = 'waitlisted' THEN 1 ELSE 0 END) AS waitlisted
             FROM enrollments GROUP BY course_id) e ON e.course_id = c.course_id
           WHERE c.enrolled != coalesce(e.enrolled, 0) OR c.waitlisted != coalesce(e.waitlisted, 0)
              OR c.waitlist_seq != c.waitlisted""",
    )
    assert drift == []
    assert rows(generated.settings, "SELECT count(*), sum(enrolled + waitlisted) FROM courses") == [(50, 2000)]


def test_waitlists_are_behind_full_courses_with_consecutive_tickets(generated: Generated):
    tickets = rows(
        generated.settings,
        """SELECT c.course_id, c.capacity, c.enrolled, c.waitlisted, min(e.waitlist_seq), max(e.waitlist_seq),
                  count(DISTINCT e.waitlist_seq)
           FROM courses c JOIN enrollments e ON e.course_id = c.course_id AND e.status = 'waitlisted'
           GROUP BY c.course_id, c.capacity, c.enrolled, c.waitlisted""",
    )
    assert tickets, "no full course has a waitlist"
    for course_id, capacity, enrolled, waitlisted, first, last, distinct in tickets:
        assert capacity is not None and enrolled == capacity, course_id
        assert (first, last, distinct) == (1, waitlisted, waitlisted), course_id
    assert rows(
        generated.settings, "SELECT count(*) FROM enrollments WHERE status = 'enrolled' AND waitlist_seq IS NOT NULL"
    ) == [(0,)]


def test_students_never_hold_a_course_twice_and_every_row_has_its_audit_event(generated: Generated):
    assert (
        rows(generated.settings, "SELECT student_id, course_id FROM enrollments GROUP BY 1, 2 HAVING count(*) > 1")
        == []
    )
    students = [s for (s,) in rows(generated.settings, "SELECT DISTINCT student_id FROM enrollments")]
    assert 300 < len(students) <= 400 and all(re.fullmatch(r"s\d{6}@example\.edu", s) for s in students)
    matched = rows(
        generated.settings,
        """SELECT count(*) FROM enrollments e JOIN course_events v ON v.course_id = e.course_id
             AND v.student_id = e.student_id AND v.type = e.status AND v.at = e.created_at""",
    )
    assert matched == [(2000,)] and rows(generated.settings, "SELECT count(*) FROM course_events") == [(2000,)]


def test_catalogue_varies_and_sign_ups_fall_inside_registration_windows(generated: Generated):
    courses = rows(
        generated.settings, "SELECT course_id, capacity, registration_opens_at, registration_closes_at FROM courses"
    )
    assert all(re.fullmatch(r"[A-Z]{2,4}\d{3}-\d{2}", course_id) for course_id, *_ in courses)
    assert any(capacity is None for _, capacity, *_ in courses) and any(c and c >= 20 for _, c, *_ in courses)
    now = datetime.now(UTC)
    opens = [utc(o) for *_, o, _ in courses if o is not None]
    closes = [utc(c) for *_, c in courses if c is not None]
    assert any(o > now for o in opens) and any(c < now for c in closes), "no upcoming or closed course"
    outside = rows(
        generated.settings,
        """SELECT count(*) FROM enrollments e JOIN courses c ON c.course_id = e.course_id
           WHERE (c.registration_opens_at IS NOT NULL AND e.created_at < c.registration_opens_at)
              OR (c.registration_closes_at IS NOT NULL AND e.created_at >= c.registration_closes_at)""",
    )
    assert outside == [(0,)]


def test_a_database_with_courses_is_refused_in_one_line(generated: Generated):
    line = one_line_failure(cli("generate", "--courses", "1", "--enrollments", "0", env=generated.env))
    assert line == "course-signup: the database already has courses or enrollments: use a new database"
    assert rows(generated.settings, "SELECT count(*) FROM courses") == [(50,)]


async def test_the_service_answers_on_the_generated_data(generated: Generated):
    tokens = TokenService(generated.settings, secret=JWT_SECRET)
    (student, count), *_ = await asyncio.to_thread(
        rows, generated.settings, "SELECT student_id, count(*) FROM enrollments GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
    )
    async with running_app(generated.settings) as client:
        catalogue = (await client.get("/courses?limit=5")).json()
        assert len(catalogue["data"]) == 5 and catalogue["page"]["nextCursor"]
        assert all(c["enrolled"] <= (c["capacity"] or c["enrolled"]) for c in catalogue["data"])
        headers = {"Authorization": f"Bearer {tokens.issue(student)}"}
        mine = (await client.get(f"/students/{student}/courses", headers=headers)).json()
        assert len(mine["data"]) == count
        assert {c["status"] for c in mine["data"]} <= {"enrolled", "waitlisted"}


def test_the_plan_is_the_same_for_the_same_seed():
    size, now = dataset.DatasetSize(20, 100, 300), datetime(2026, 11, 25, 8, tzinfo=UTC)
    first = dataset.plan(size, seed=3, now=now)
    assert first == dataset.plan(size, seed=3, now=now)
    assert first != dataset.plan(size, seed=4, now=now)
    with pytest.raises(dataset.DatasetError):
        dataset.DatasetSize(2, 3, 7)
