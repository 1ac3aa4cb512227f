"""The command line as an operator uses it: migrate, seed, serve's schema guard, token, import-courses."""

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

from tests.conftest import PG_ADMIN_DSN, _pg_admin

pytestmark = pytest.mark.postgres


def cli(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "course_signup", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("COURSE_SIGNUP_")}, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


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
