"""The command line as an operator uses it: help, migrate, seed, serve, token, import-courses, and their failures."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from sqlalchemy.engine import make_url

from course_signup import __version__
from course_signup.services.catalogue_import import COLUMNS
from tests.conftest import JWT_SECRET, PG_ADMIN_DSN, _pg_admin
from tests.integration.servers import free_port, start_server

pytestmark = pytest.mark.postgres

PG_BASE = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
MIGRATE_FIRST = "run `course-signup migrate` first"


def cli(
    *args: str, env: dict[str, str], check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "course_signup", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("COURSE_SIGNUP_")}, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def failure_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command printed on stderr (and prove it failed without a traceback)."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def empty_database(postgres_url: str) -> Iterator[str]:
    """A brand-new, unmigrated PostgreSQL database."""
    name = f"course_signup_cli_{uuid.uuid4().hex[:8]}"

    async def run(sql: str) -> None:
        connection = await _pg_admin()
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_serve_refuses_an_unmigrated_database_until_migrate(empty_database: str, tmp_path: Path):
    env = {
        "COURSE_SIGNUP_DATABASE_URL": empty_database,
        "COURSE_SIGNUP_DATA_DIR": str(tmp_path),
        "COURSE_SIGNUP_PORT": "1",
    }
    refused = cli("serve", env=env, check=False)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1].endswith("run `course-signup migrate` first")
    assert "Traceback" not in refused.stderr
    cli("migrate", env=env)
    assert "seeded 7 course(s)" in cli("seed", env=env).stdout
    assert "all were already there" in cli("seed", env=env).stdout


def test_token_uses_the_secret_generated_in_the_data_directory(tmp_path: Path):
    env = {"COURSE_SIGNUP_DATA_DIR": str(tmp_path)}
    token = cli("token", "Alice@Example.com", "--admin", "--ttl", "120", env=env).stdout.strip()
    secret_file = tmp_path / "jwt-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    claims = jwt.decode(token, secret_file.read_text().strip(), algorithms=["HS256"])
    assert claims["sub"] == "alice@example.com" and claims["role"] == "admin"
    assert claims["exp"] - claims["iat"] == 120
    again = cli("token", "bob@example.com", env=env).stdout.strip()
    assert jwt.decode(again, secret_file.read_text().strip(), algorithms=["HS256"])["role"] == "student"
    bad = cli("token", "not-an-email", env=env, check=False)
    assert bad.returncode != 0 and "e-mail" in bad.stderr


def test_import_courses_upserts_or_reports_bad_lines_and_changes_nothing(empty_database: str, tmp_path: Path):
    env = {"COURSE_SIGNUP_DATABASE_URL": empty_database, "COURSE_SIGNUP_DATA_DIR": str(tmp_path)}
    cli("migrate", env=env)
    good = tmp_path / "good.csv"
    good.write_text(
        "courseId,name,lessons,capacity,registrationOpensAt,registrationClosesAt\n"
        "art100,Drawing,12,30,,\n"
        "BIO200,Cells,8,,2026-01-01T08:00:00Z,2027-01-01T08:00:00Z\n"
    )
    assert "imported 2 new and 0 changed" in cli("import-courses", str(good), env=env).stdout
    update = tmp_path / "update.csv"
    update.write_text("courseId,name,lessons,capacity\nART100,Drawing II,14,40\n")
    assert "imported 0 new and 1 changed" in cli("import-courses", str(update), env=env).stdout
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "courseId,name,lessons,capacity\nNEW1,Fine,1,1\nbad id!,Broken,1,1\nNEW2,,1,1\nNEW3,Also fine,-4,1\n"
    )
    refused = cli("import-courses", str(bad), env=env, check=False)
    assert refused.returncode != 0
    assert "line 3:" in refused.stderr and "line 4:" in refused.stderr and "line 5:" in refused.stderr
    assert "line 2:" not in refused.stderr
    # nothing from the bad file went in: re-importing the good part reports NEW1 as new
    fine = tmp_path / "fine.csv"
    fine.write_text("courseId,name\nNEW1,Fine\n")
    assert "imported 1 new" in cli("import-courses", str(fine), env=env).stdout


def test_version_prints_the_package_version():
    assert cli("--version", env={}).stdout.strip() == f"course-signup {__version__}"


@pytest.mark.parametrize("command", ["serve", "migrate", "seed", "token", "import-courses"])
def test_every_command_explains_itself_in_its_help(command: str):
    text = cli(command, "--help", env={}).stdout
    description = text.split("\n\n")[1]
    assert not description.startswith(("options:", "positional arguments:"))
    assert len(description) > 60, description
    assert command in cli("--help", env={}).stdout


def test_help_shows_the_defaults():
    assert "--ttl TTL   seconds until it expires (default: 3600)" in cli("token", "--help", env={}).stdout
    serve = " ".join(cli("serve", "--help", env={}).stdout.split())
    for default in (
        "COURSE_SIGNUP_HOST, else 127.0.0.1",
        "COURSE_SIGNUP_PORT, else 8000",
        "COURSE_SIGNUP_WORKERS, else 1",
    ):
        assert f"(default: {default})" in serve


def test_import_courses_help_lists_the_csv_columns_and_rules():
    text = cli("import-courses", "--help", env={}).stdout
    for column in COLUMNS:
        assert f"\n  {column} " in text
    assert "header on line 1" in text
    assert "If any line is bad nothing is\nimported" in text


@pytest.fixture
def courses_csv(tmp_path: Path) -> Path:
    path = tmp_path / "courses.csv"
    path.write_text("courseId,name\nART100,Drawing\n")
    return path


FAILURES = {
    "missing database": (f"{PG_BASE}/course_signup_missing_{uuid.uuid4().hex[:8]}", None, "does not exist"),
    "silent server": ("postgresql+asyncpg://postgres:hunter2@127.0.0.1:{port}/x", None, "postgres:***@"),
    "unsupported scheme": ("mysql://root@127.0.0.1/courses", None, "unsupported scheme mysql://"),
    "empty secret": (None, "", "COURSE_SIGNUP_JWT_SECRET: set but empty"),
}


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("command", ["migrate", "seed", "import-courses", "token"])
def test_a_broken_configuration_ends_in_one_line(command: str, failure: str, courses_csv: Path, tmp_path: Path):
    url, secret, expected = FAILURES[failure]
    env = {"COURSE_SIGNUP_DATA_DIR": str(tmp_path / "data")}
    if url is not None:
        env["COURSE_SIGNUP_DATABASE_URL"] = url.replace("{port}", str(free_port()))  # nothing listens there
    if secret is not None:
        env["COURSE_SIGNUP_JWT_SECRET"] = secret
    args = {"import-courses": [str(courses_csv)], "token": ["alice@example.com"]}.get(command, [])
    line = failure_line(cli(command, *args, env=env, check=False))
    assert line.startswith("course-signup: ") and expected in line
    assert "hunter2" not in line


def test_an_unmigrated_database_asks_for_migrate(empty_database: str, courses_csv: Path, tmp_path: Path):
    env = {"COURSE_SIGNUP_DATABASE_URL": empty_database, "COURSE_SIGNUP_DATA_DIR": str(tmp_path / "data")}
    for args in (["seed"], ["import-courses", str(courses_csv)], ["token", "alice@example.com"]):
        assert failure_line(cli(*args, env=env, check=False)).endswith(MIGRATE_FIRST)


def test_seed_on_a_new_embedded_directory_asks_for_migrate_and_leaves_no_file(tmp_path: Path):
    env = {"COURSE_SIGNUP_DATA_DIR": str(tmp_path)}
    assert failure_line(cli("seed", env=env, check=False)).endswith(MIGRATE_FIRST)
    assert not (tmp_path / "course_signup.db").exists()  # else `serve` would take it as old and not seed it


def test_postgres_and_postgresql_schemes_are_accepted(empty_database: str, tmp_path: Path):
    libpq_style = empty_database.replace("postgresql+asyncpg://", "postgres://")
    cli("migrate", env={"COURSE_SIGNUP_DATABASE_URL": libpq_style, "COURSE_SIGNUP_DATA_DIR": str(tmp_path)})
    env = {"COURSE_SIGNUP_DATABASE_URL": libpq_style.replace("postgres://", "postgresql://")}
    assert "seeded 7 course(s)" in cli("seed", env={**env, "COURSE_SIGNUP_DATA_DIR": str(tmp_path)}).stdout


@pytest.mark.parametrize("ttl", ["0", "-60"])
def test_token_refuses_a_ttl_that_is_not_positive(ttl: str, tmp_path: Path):
    result = cli("token", "alice@example.com", "--ttl", ttl, env={"COURSE_SIGNUP_DATA_DIR": str(tmp_path)}, check=False)
    assert "--ttl must be at least 1 second" in failure_line(result)
    assert result.stdout == ""


def test_token_says_which_secret_signed_it(tmp_path: Path):
    relative = cli("token", "alice@example.com", env={"COURSE_SIGNUP_DATA_DIR": "state"}, cwd=tmp_path)
    secret_file = (tmp_path / "state" / "jwt-secret").resolve()
    assert relative.stderr.strip() == f"signed with the secret in {secret_file}"
    jwt.decode(relative.stdout.strip(), secret_file.read_text().strip(), algorithms=["HS256"])
    configured = cli("token", "alice@example.com", env={"COURSE_SIGNUP_JWT_SECRET": JWT_SECRET}, cwd=tmp_path)
    assert configured.stderr.strip() == "signed with COURSE_SIGNUP_JWT_SECRET"
    jwt.decode(configured.stdout.strip(), JWT_SECRET, algorithms=["HS256"])
    config = tmp_path / "settings.yml"
    config.write_text(f"jwt_secret: {JWT_SECRET}\n")
    from_file = cli("--config", str(config), "token", "alice@example.com", env={}, cwd=tmp_path)
    assert from_file.stderr.strip() == f"signed with jwt_secret from {config.resolve()}"


def start_up_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if " starting on http://" in line]


def test_serve_logs_one_start_up_line_however_many_workers(tmp_path: Path):
    data = tmp_path / "data"
    server = start_server(None, data, workers=2, COURSE_SIGNUP_LOG_LEVEL="info")
    server.stop()
    (line,) = start_up_lines(server.log)
    assert f"course-signup {__version__} starting on {server.url}/; seeded 7 courses" in line
    assert f"database=sqlite+aiosqlite:///{data.resolve() / 'course_signup.db'} " in line
    assert f"data_dir={data.resolve()} auth=jwt workers=2" in line


def test_serve_start_up_line_hides_the_database_password(postgres_url: str, tmp_path: Path):
    # trust auth ignores the password; a configured one must not be logged either
    url = make_url(postgres_url).set(password=make_url(postgres_url).password or "hunter2")
    server = start_server(url.render_as_string(hide_password=False), tmp_path, COURSE_SIGNUP_LOG_LEVEL="info")
    server.stop()
    (line,) = start_up_lines(server.log)
    masked = f"{url.drivername}://{url.username}:***@{url.host}:{url.port}/{url.database}"
    assert f" database={masked} " in line
    assert url.password not in line and "seeded" not in line


def test_embedded_data_is_private_to_its_owner(tmp_path: Path):
    data = tmp_path / "data"
    previous = os.umask(0o022)  # a permissive umask, as on most machines
    try:
        server = start_server(None, data)  # start_server made the directory 0755 beforehand
        try:
            database = data / "course_signup.db"
            assert mode(data) == 0o700
            for file in (
                database,
                database.with_name("course_signup.db-wal"),
                database.with_name("course_signup.db-shm"),
            ):
                assert mode(file) == 0o600, file
        finally:
            server.stop()
        data.chmod(0o755)
        database.chmod(0o644)
        cli("migrate", env={"COURSE_SIGNUP_DATA_DIR": str(data)})
        assert (mode(data), mode(database)) == (0o700, 0o600)
    finally:
        os.umask(previous)
