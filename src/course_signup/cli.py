"""The command line: serve, migrate, seed, token, import-courses. Calls the same services as the API."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from course_signup import logs
from course_signup.adapters import database, migrations
from course_signup.adapters.cache import InProcessCache
from course_signup.adapters.tokens import TokenService, load_or_create_secret
from course_signup.services.unit_of_work import SqlAlchemyUnitOfWork
from course_signup.settings import CONFIG_ENV, Settings, get_settings

T = TypeVar("T")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="course-signup", description="Course sign-up service.")
    parser.add_argument("--config", help="YAML settings file (COURSE_SIGNUP_* variables win over it)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)

    commands.add_parser("migrate", help="bring the database to the newest schema")
    commands.add_parser("seed", help="add the original seven courses where missing")

    token = commands.add_parser("token", help="print a signed token for a student (or an admin)")
    token.add_argument("email")
    token.add_argument("--admin", action="store_true")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")

    importer = commands.add_parser("import-courses", help="insert or update courses from a CSV file")
    importer.add_argument("file", type=Path)

    args = parser.parse_args(argv)
    config = getattr(args, "sub_config", None) or args.config
    if config:
        os.environ[CONFIG_ENV] = str(Path(config).resolve())
    for option in ("host", "port", "workers"):
        value = getattr(args, option, None)
        if value is not None:  # through the environment, so every worker process agrees
            os.environ[f"COURSE_SIGNUP_{option.upper()}"] = str(value)
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_format)
    handler: Callable[[Settings, argparse.Namespace], None] = {
        "serve": _serve,
        "migrate": _migrate,
        "seed": _seed,
        "token": _token,
        "import-courses": _import,
    }[args.command]
    handler(settings, args)


def _serve(settings: Settings, _args: argparse.Namespace) -> None:
    import uvicorn

    prepare_database(settings)
    if settings.auth_mode == "jwt":
        load_or_create_secret(settings)  # once, before workers start, so they all read the same secret
    if settings.workers > 1:
        metrics_dir = settings.data_dir.resolve() / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    uvicorn.run(
        "course_signup.app:factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


def prepare_database(settings: Settings) -> None:
    """Embedded: create, migrate and (when new) seed. Elsewhere: refuse an outdated schema."""
    if settings.embedded:
        is_new = not settings.embedded_database.exists()
        migrations.upgrade(settings)
        if is_new:
            _run(settings, _seed_catalogue)
        return
    try:
        current = _run(settings, database.current_revision)
    except (OSError, DBAPIError) as exc:
        sys.exit(f"course-signup: cannot reach the database: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    if current != migrations.head_revision():
        sys.exit(
            f"course-signup: the database schema is at {current or 'nothing'}, "
            f"not {migrations.head_revision()}: run `course-signup migrate` first"
        )


def _migrate(settings: Settings, _args: argparse.Namespace) -> None:
    migrations.upgrade(settings)
    print(f"database at revision {migrations.head_revision()}")


def _seed(settings: Settings, _args: argparse.Namespace) -> None:
    added = _run(settings, _seed_catalogue)
    print(f"seeded {len(added)} course(s): {', '.join(added) or 'all were already there'}")


def _token(settings: Settings, args: argparse.Namespace) -> None:
    from course_signup.domain.errors import InvalidInputError

    try:
        token = TokenService(settings, secret=load_or_create_secret(settings)).issue(
            args.email, admin=args.admin, ttl_seconds=args.ttl
        )
    except (InvalidInputError, RuntimeError) as exc:
        sys.exit(f"course-signup: {exc}")
    print(token)


def _import(settings: Settings, args: argparse.Namespace) -> None:
    from course_signup.services import catalogue_import

    try:
        with args.file.open(newline="", encoding="utf-8-sig") as handle:
            rows = catalogue_import.parse(handle)

        async def run(engine: database.AsyncEngine) -> tuple[int, int]:
            return await catalogue_import.import_courses(_uow(engine), InProcessCache(0), rows)

        added, changed = _run(settings, run)
    except OSError as exc:
        sys.exit(f"course-signup: {exc}")
    except catalogue_import.CatalogueImportError as exc:
        sys.exit(f"course-signup: nothing imported:\n{exc}")
    print(f"imported {added} new and {changed} changed course(s)")


async def _seed_catalogue(engine: database.AsyncEngine) -> list[str]:
    from course_signup.services import courses

    return await courses.seed_catalogue(_uow(engine))


def _uow(engine: database.AsyncEngine) -> SqlAlchemyUnitOfWork:
    return SqlAlchemyUnitOfWork(database.create_sessions(engine))


def _run(settings: Settings, work: Callable[[database.AsyncEngine], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = database.create_engine(settings)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())
