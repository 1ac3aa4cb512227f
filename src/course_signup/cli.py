"""The command line: serve, migrate, seed, token, import-courses, generate, relay, worker, events tail."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from course_signup import __version__, logs
from course_signup.adapters import database, migrations, tokens
from course_signup.adapters.cache import InProcessCache
from course_signup.adapters.tokens import TokenService, load_or_create_secret
from course_signup.services.unit_of_work import SqlAlchemyUnitOfWork
from course_signup.settings import CONFIG_ENV, ENV_PREFIX, Settings, get_settings

T = TypeVar("T")
BROKER_WAIT_SECONDS = 10.0
log = logging.getLogger("course_signup")

SERVE = """Run the HTTP API. The embedded database (COURSE_SIGNUP_DATABASE_URL unset) is created,
migrated and filled with the seven original courses on first start; any other database must
already be at the newest schema (run `course-signup migrate`). On SIGTERM it stops accepting
connections, answers the requests in flight, closes its pools and exits 0, within
COURSE_SIGNUP_SHUTDOWN_TIMEOUT seconds."""

MIGRATE = """Bring the database to the newest schema. Running it again on a current database changes
nothing. For the embedded database this creates it, empty: `seed` adds the original courses."""

SEED = """Add the original service's seven courses (CS101-CS105, MATH255, PHYS150) where missing.
Courses already there are left as they are. The database must be migrated first."""

TOKEN = """Print a signed JWT for a student (or, with --admin, a registrar) on stdout, and on stderr
which secret signed it: COURSE_SIGNUP_JWT_SECRET when set, else the one generated in the data
directory. Run it with the same settings and data directory as `serve`, or the service will
answer 401."""

IMPORT = """Insert or update courses from a CSV file, all in one transaction."""

IMPORT_COLUMNS = """CSV format: UTF-8, comma-separated, the header on line 1 naming the columns (any order):
  courseId              required; 1-32 of A-Z a-z 0-9 _ -, stored upper-case
  name                  required; 1-200 characters
  lessons               whole number >= 0; an empty cell means 0
  capacity              whole number >= 0; an empty cell means unlimited
  registrationOpensAt   RFC 3339 time (2026-11-25T08:00:00Z); empty means no opening time
  registrationClosesAt  RFC 3339 time after registrationOpensAt; empty means no closing time

A course that exists is updated (a column missing from the header keeps its value; capacity may
not drop below the students enrolled), any other is added. If any line is bad nothing is
imported, and every bad line is listed by number."""

GENERATE = """Fill an empty database with a realistic data set, to try the service at scale: courses with
ids like CS101-01, capacities that vary (some unlimited), registration open, closed or not open yet;
students s000001@example.edu, ... each in distinct courses; popular courses full with a waitlist;
and one audit event per enrollment. The same --seed gives the same data (its times relative to
now). PostgreSQL is filled with COPY, SQLite with batched inserts, in one transaction, with a
progress bar on stderr. The database must be migrated and have no courses or enrollments."""

RELAY = """Publish every audit event to the RabbitMQ topic exchange course_signup.events (routing keys
enrollment.<type>: enrolled, waitlisted, promoted, dropped, left_waitlist), at least once and in
order per course, until SIGINT or SIGTERM. Needs COURSE_SIGNUP_BROKER_URL. Outages of the broker or
the database are logged once and retried. Several may run against one PostgreSQL database: one
publishes, the others stand by and take over when it stops."""

WORKER = """Queue admission's writer (COURSE_SIGNUP_ADMISSION=queue): consume the decisions API processes
hand to RabbitMQ and write them to PostgreSQL exactly once, in order per course; settle decisions
whose API process died before handing them off; load the admission state into Redis at start and
whenever Redis comes back empty. It also runs the event relay (see `relay`). In database mode it
runs the relay alone. Runs until SIGINT or SIGTERM."""

EVENTS_TAIL = """Print each event published to course_signup.events as it arrives, one line each: type,
course, student, time (UTC) and event id. Reads from a queue of its own that ends with the command,
so it shows what is published while it runs. Needs COURSE_SIGNUP_BROKER_URL."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written, and each option's default where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    config = getattr(args, "sub_config", None) or args.config
    if config:
        os.environ[CONFIG_ENV] = str(Path(config).resolve())
    for option in ("host", "port", "workers"):
        value = getattr(args, option, None)
        if value is not None:  # through the environment, so every worker process agrees
            os.environ[f"{ENV_PREFIX}{option.upper()}"] = str(value)
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_format)
    handler: Callable[[Settings, argparse.Namespace], None] = {
        "serve": _serve,
        "migrate": _migrate,
        "seed": _seed,
        "token": _token,
        "import-courses": _import,
        "generate": _generate,
        "relay": _relay,
        "worker": _worker,
        "events": _events,
    }[args.command]
    handler(settings, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="course-signup",
        description="Course sign-up service: run the API and look after its database. Settings come from "
        "COURSE_SIGNUP_* environment variables, or a YAML file named by --config.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", help="YAML settings file (COURSE_SIGNUP_* variables win over it)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str, **extra: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=description, formatter_class=_HelpFormatter, **extra)

    serve = command("serve", "run the HTTP API", SERVE)
    serve.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    for option, meaning in (("host", "address to listen on"), ("port", "TCP port"), ("workers", "processes")):
        default = Settings.model_fields[option].default
        serve.add_argument(
            f"--{option}",
            type=str if option == "host" else int,
            help=f"{meaning} (default: {ENV_PREFIX}{option.upper()}, else {default})",
        )
    command("migrate", "bring the database to the newest schema", MIGRATE)
    command("seed", "add the original seven courses where missing", SEED)
    token = command("token", "print a signed token for a student (or an admin)", TOKEN)
    token.add_argument("email", help="the student's e-mail address (the token's subject)")
    token.add_argument("--admin", action="store_true", help="a registrar's token (role admin)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    importer = command("import-courses", "insert or update courses from a CSV file", IMPORT, epilog=IMPORT_COLUMNS)
    importer.add_argument("file", type=Path, help="the CSV file")
    generate = command("generate", "fill an empty database with a large realistic data set", GENERATE)
    generate.add_argument("--courses", type=int, default=10_000, help="courses in the catalogue")
    generate.add_argument("--students", type=int, default=200_000, help="students who may sign up")
    generate.add_argument("--enrollments", type=int, default=1_000_000, help="enrollments and waitlist entries")
    generate.add_argument("--seed", type=int, default=1, help="the random seed: the same seed, the same data")
    command("relay", "publish the audit events to RabbitMQ until stopped", RELAY)
    command("worker", "write queued sign-ups to the database, and relay events, until stopped", WORKER)
    events = command("events", "watch the events the relay publishes", "Watch the events the relay publishes.")
    events_commands = events.add_subparsers(dest="events_command", required=True, metavar="COMMAND")
    tail = events_commands.add_parser(
        "tail", help="print events as they are published", description=EVENTS_TAIL, formatter_class=_HelpFormatter
    )
    tail.add_argument("--key", default="enrollment.#", help="routing-key pattern (* one word, # any), e.g. *.promoted")
    return parser


def _serve(settings: Settings, _args: argparse.Namespace) -> None:
    from course_signup import server

    database.secure_data_dir(settings)
    if settings.auth_mode == "jwt":
        _secret(settings)  # once, before workers start, so they all read the same secret
    seeded = prepare_database(settings)
    if settings.workers > 1:
        metrics_dir = settings.data_dir.resolve() / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(mode=0o700, parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    _announce(settings, seeded)
    server.run(settings)


def _announce(settings: Settings, seeded: int) -> None:
    # Logged here, in the parent, so it appears once however many workers start.
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    message = f"course-signup {__version__} starting on http://{host}:{settings.port}/"
    if seeded:
        message += f"; seeded {seeded} courses into the new embedded database"
    fields = {
        "database": _shown(settings),
        "data_dir": str(settings.data_dir.resolve()),
        "auth": settings.auth_mode,
        "workers": settings.workers,
    }
    log.info(message, extra=fields)


def prepare_database(settings: Settings) -> int:
    """Embedded: create, migrate and (when new) seed, returning how many courses were seeded.

    Elsewhere: refuse a database that cannot be reached or is not at the newest schema.
    """
    if not settings.embedded:
        _require_schema(settings)
        return 0
    is_new = _schema_revision(settings) is None
    with _database_errors(settings):
        migrations.upgrade(settings)
    return len(_run(settings, _seed_catalogue)) if is_new else 0


def _migrate(settings: Settings, _args: argparse.Namespace) -> None:
    with _database_errors(settings):
        migrations.upgrade(settings)
    print(f"database at revision {migrations.head_revision()}")


def _seed(settings: Settings, _args: argparse.Namespace) -> None:
    _require_schema(settings)
    added = _run(settings, _seed_catalogue)
    print(f"seeded {len(added)} course(s): {', '.join(added) or 'all were already there'}")


def _token(settings: Settings, args: argparse.Namespace) -> None:
    from course_signup.domain.errors import InvalidInputError

    if args.ttl <= 0:
        sys.exit(f"course-signup: --ttl must be at least 1 second, not {args.ttl}")
    if not settings.embedded:  # the embedded database is created by `serve`; any other must be ready
        _require_schema(settings)
    service = TokenService(settings, secret=_secret(settings))
    try:
        token = service.issue(args.email, admin=args.admin, ttl_seconds=args.ttl)
    except (InvalidInputError, RuntimeError) as exc:
        sys.exit(f"course-signup: {exc}")
    print(token)
    print(f"signed with {_secret_source(settings)}", file=sys.stderr)


def _secret(settings: Settings) -> str | None:
    """The HS256 secret `serve` and `token` share; a missing, empty or weak one ends the command in one line."""
    if settings.jwt_secret is None:
        database.secure_data_dir(settings)
    try:
        return load_or_create_secret(settings)
    except (ValueError, RuntimeError) as exc:  # ValueError: a secret too short or empty to sign with
        sys.exit(f"course-signup: {exc}")


def _secret_source(settings: Settings) -> str:
    """Where the HS256 secret came from, as load_or_create_secret chose it."""
    if settings.jwt_secret is None:
        return f"the secret in {(settings.data_dir / tokens.SECRET_FILE).resolve()}"
    if f"{ENV_PREFIX}JWT_SECRET" in os.environ:
        return f"{ENV_PREFIX}JWT_SECRET"
    return f"jwt_secret from {os.environ.get(CONFIG_ENV, 'the settings')}"


def _import(settings: Settings, args: argparse.Namespace) -> None:
    from course_signup.services import catalogue_import

    try:
        with args.file.open(newline="", encoding="utf-8-sig") as handle:
            rows = catalogue_import.parse(handle)
    except OSError as exc:
        sys.exit(f"course-signup: {exc}")
    except (UnicodeDecodeError, csv.Error) as exc:
        sys.exit(f"course-signup: {args.file} is not a UTF-8 CSV file: {exc}")
    except catalogue_import.CatalogueImportError as exc:
        sys.exit(f"course-signup: nothing imported:\n{exc}")
    _require_schema(settings)

    async def run(engine: database.AsyncEngine) -> tuple[int, int]:
        async with _queue_admissions(settings, engine) as admissions:
            return await catalogue_import.import_courses(_uow(engine), InProcessCache(0), rows, admissions=admissions)

    try:
        added, changed = _run(settings, run)
    except catalogue_import.CatalogueImportError as exc:
        sys.exit(f"course-signup: nothing imported:\n{exc}")
    print(f"imported {added} new and {changed} changed course(s)")


def _generate(settings: Settings, args: argparse.Namespace) -> None:
    from time import monotonic

    from tqdm import tqdm

    from course_signup.adapters.bulk import NotEmptyError
    from course_signup.services import dataset

    try:
        size = dataset.DatasetSize(args.courses, args.students, args.enrollments)
    except dataset.DatasetError as exc:
        sys.exit(f"course-signup: {exc}")
    _require_schema(settings)

    def bar(total: int) -> tqdm:
        return tqdm(total=total, unit=" rows", unit_scale=True, file=sys.stderr, mininterval=0.5)

    started = monotonic()
    try:
        data = _run(settings, lambda engine: dataset.generate(engine, size=size, seed=args.seed, progress=bar))
    except (NotEmptyError, dataset.DatasetError) as exc:
        sys.exit(f"course-signup: {exc}")
    print(f"generated {data.summary()} in {monotonic() - started:.0f} s")
    if settings.queue_mode:
        # The admission state knows none of these courses (the database had none): the worker
        # reloads it from the database, pausing sign-ups for a few seconds.
        asyncio.run(_forget_admission_state(settings))
        print("the worker reloads the admission state from the database")


async def _forget_admission_state(settings: Settings) -> None:
    from course_signup.adapters.admission_state import AdmissionState
    from course_signup.services.queue_admission import close_redis, connect_redis

    redis = connect_redis(settings)
    try:
        await AdmissionState(redis).forget()
    finally:
        await close_redis(redis)


@contextlib.asynccontextmanager
async def _queue_admissions(settings: Settings, engine: database.AsyncEngine) -> AsyncIterator[Any]:
    """In queue mode, the admission state and broker a catalogue change must go through; else None."""
    if not settings.queue_mode:
        yield None
        return
    from course_signup.services import queue_admission

    mode = queue_admission.open_for(settings, engine)
    await mode.queue.open()
    try:
        await asyncio.wait_for(mode.queue.connected.wait(), BROKER_WAIT_SECONDS)
    except TimeoutError:
        await mode.close()
        sys.exit(f"course-signup: the broker did not answer within {BROKER_WAIT_SECONDS:.0f} s; nothing imported")
    try:
        yield mode.admissions
    finally:
        await mode.close()


def _relay(settings: Settings, _args: argparse.Namespace) -> None:
    from course_signup.services.relay import EventRelay

    broker_url = _broker_url(settings, "relay")
    _require_schema(settings)
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)  # a traceback per reconnect; the relay logs outages once

    async def run(engine: database.AsyncEngine) -> None:
        await EventRelay(broker_url, engine).run(_stop_on_signals())

    _run(settings, run)


def _worker(settings: Settings, _args: argparse.Namespace) -> None:
    from course_signup.adapters.relay import shown
    from course_signup.services.relay import EventRelay

    broker_url = _broker_url(settings, "worker")
    _require_schema(settings)
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)  # outages are logged once by the worker and relay

    async def run(engine: database.AsyncEngine) -> None:
        stop = _stop_on_signals()
        parts = [EventRelay(broker_url, engine).run(stop)]
        if settings.queue_mode:
            from course_signup.adapters.admission_queue import AdmissionQueue
            from course_signup.services.queue_admission import close_redis, connect_redis
            from course_signup.services.worker import Worker

            redis = connect_redis(settings)
            queue = AdmissionQueue(broker_url, shards=settings.queue_shards, prefetch=2 * settings.worker_batch_size)
            parts.append(Worker(settings, engine, redis, queue).run(stop))
        print(f"course-signup worker: {settings.admission} mode, broker {shown(broker_url)}", flush=True)
        try:
            await asyncio.gather(*parts)
        finally:
            if settings.queue_mode:
                await queue.close()
                await close_redis(redis)

    _run(settings, run)


def _events(settings: Settings, args: argparse.Namespace) -> None:
    from course_signup.adapters import relay

    broker_url = _broker_url(settings, "events tail")
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)  # a failed connect is said once, below

    def ready() -> None:
        print(f"course-signup: showing {relay.EXCHANGE} events matching {args.key}", file=sys.stderr, flush=True)

    async def run() -> None:
        await relay.tail(
            broker_url, args.key, _stop_on_signals(), show=lambda line: print(line, flush=True), ready=ready
        )

    try:
        asyncio.run(run())
    except relay.BrokerUnavailableError as exc:
        sys.exit(f"course-signup: cannot use the broker {relay.shown(broker_url)}: {exc}")


def _broker_url(settings: Settings, command: str) -> str:
    if settings.broker_url is None:
        print(
            f"course-signup: {command} needs {ENV_PREFIX}BROKER_URL (amqp://user:password@host:5672/)", file=sys.stderr
        )
        sys.exit(2)
    return settings.broker_url


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM; call it inside the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


def _require_schema(settings: Settings) -> None:
    """Exit with one line unless the database answers and is at the newest schema."""
    current, head = _schema_revision(settings), migrations.head_revision()
    if current is None:
        sys.exit(f"course-signup: the database {_shown(settings)} has no schema yet: run `course-signup migrate` first")
    if current != head:
        sys.exit(f"course-signup: the database schema is at {current}, not {head}: run `course-signup migrate` first")


def _schema_revision(settings: Settings) -> str | None:
    if settings.embedded and not settings.embedded_database.exists():
        return None  # not opened: that would leave an empty file, and `serve` would not seed it
    return _run(settings, database.current_revision)


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

    with _database_errors(settings):
        return asyncio.run(go())


@contextlib.contextmanager
def _database_errors(settings: Settings) -> Iterator[None]:
    """A database that is missing, silent or failing ends the command with one line, not a traceback."""
    try:
        yield
    except (OSError, DBAPIError) as exc:
        reason = (exc.orig or exc) if isinstance(exc, DBAPIError) else exc
        first_line = (str(reason).strip().splitlines() or [type(reason).__name__])[0]
        sys.exit(f"course-signup: cannot use the database {_shown(settings)}: {first_line}")


def _shown(settings: Settings) -> str:
    """The database URL with its password masked, fit for logs and error messages."""
    return make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)
