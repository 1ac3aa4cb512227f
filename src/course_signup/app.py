"""create_app(settings): the FastAPI app; its lifespan opens and closes the engine, cache and clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from course_signup import __version__, logs
from course_signup.adapters import broker, database, migrations
from course_signup.adapters.cache import InProcessCache, RedisCache
from course_signup.adapters.ratelimit import RateLimiter
from course_signup.adapters.redis_link import RedisLink
from course_signup.adapters.replicas import ReplicaRouter
from course_signup.adapters.tokens import TokenService, load_or_create_secret
from course_signup.api import docs, errors, portal, warmup
from course_signup.api.hot_paths import HotPaths
from course_signup.api.middleware import RequestMiddleware
from course_signup.api.response_cache import CatalogueResponseCache
from course_signup.api.routes import courses, health, registrar, students
from course_signup.services import idempotency, queue_admission
from course_signup.services.admission import Admissions
from course_signup.services.unit_of_work import SqlAlchemyUnitOfWork
from course_signup.settings import Settings, get_settings

log = logging.getLogger("course_signup")

PURGE_EVERY_SECONDS = 600


API_DESCRIPTION = """
Every answer is the envelope `{code, message, data}`. Students act only on themselves (bearer JWT);
registrars (role `admin`) manage the catalogue.

**Admission modes** (`COURSE_SIGNUP_ADMISSION`, the same answers and sentences in both):

- `database` (default): a sign-up or drop is decided and written by the database before the answer.
- `queue`: decided atomically in Redis, handed to RabbitMQ as a persistent, confirmed message before
  the answer, and written to PostgreSQL by `course-signup worker` (seat figures in the catalogue come
  from Redis and are live; my-courses, classmates, rosters and the audit trail show a sign-up once
  the worker has written it, typically within milliseconds). When Redis lost its state or the broker
  is unreachable, sign-ups and drops answer **503 with Retry-After** and admit nothing; they resume
  by themselves. Settings: `REDIS_URL` and `BROKER_URL` (both required), `QUEUE_SHARDS` (4),
  `QUEUE_PUBLISH_TIMEOUT_SECONDS` (2), `QUEUE_PENDING_SECONDS` (10), `WORKER_BATCH_SIZE` (500).

Every audit event is also published to the RabbitMQ topic exchange `course_signup.events`
(routing keys `enrollment.<type>`) by the event relay.
"""


class SchemaOutdatedError(RuntimeError):
    """The database is not at the newest migration."""


async def ensure_schema_current(engine: database.AsyncEngine) -> None:
    current, head = await database.current_revision(engine), migrations.head_revision()
    if current != head:
        raise SchemaOutdatedError(
            f"database schema is at {current or 'nothing'}, not {head}: run `course-signup migrate`"
        )


def create_app(settings: Settings) -> FastAPI:
    """The application for these settings; nothing is opened until the lifespan starts."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = database.create_engine(settings)
        try:
            await ensure_schema_current(engine)
        except BaseException:
            await engine.dispose()
            raise
        app.state.sessions = database.create_sessions(engine)
        redis_link = RedisLink.from_settings(settings) if settings.redis_url else None
        if redis_link is None:
            app.state.cache = InProcessCache(settings.cache_ttl_seconds)
        else:
            ttl, entries = settings.cache_ttl_seconds, settings.cache_local_entries
            app.state.cache = RedisCache(redis_link, ttl, max_entries=entries)
        app.state.admissions = Admissions(batching=settings.batch_admission)
        queue_mode = queue_admission.open_for(settings, engine) if settings.queue_mode else None
        if queue_mode is not None:
            app.state.admissions = queue_mode.admissions
            await queue_mode.queue.open()  # connects, and reconnects, in the background
        app.state.probes = {"database": lambda: database.ping(engine)}
        if redis_link is not None:
            app.state.probes["redis"] = redis_link.ping
        app.state.rate_limiter = RateLimiter(settings, redis_link) if settings.rate_limit_enabled else None
        if settings.auth_mode == "none":
            log.warning("AUTH_MODE=none: every student and admin endpoint is open to anyone")
            app.state.tokens = None
        else:
            app.state.tokens = TokenService(settings, secret=load_or_create_secret(settings))
        if queue_mode is not None:
            app.state.probes["broker"] = queue_mode.queue.ping
            app.state.probes["admission"] = queue_mode.ensure_loaded
        elif settings.broker_url:
            broker_url = settings.broker_url
            app.state.probes["broker"] = lambda: broker.ping(broker_url)
        app.state.replicas = ReplicaRouter.from_settings(settings, engine, redis_link)  # None: no replicas
        if app.state.replicas is not None:
            await app.state.replicas.start()  # measured before the first read (the warm-up's)
        if redis_link is not None:
            await app.state.cache.open(warm=lambda: warmup.warm_catalogue(app))  # once app.state is complete
        purger = asyncio.create_task(_purge_idempotency_keys(app))
        try:
            yield
        finally:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
            if redis_link is not None:
                await app.state.cache.close()
                await redis_link.close()
            if queue_mode is not None:
                await queue_mode.close()
            if app.state.replicas is not None:
                await app.state.replicas.close()
            await engine.dispose()

    app = FastAPI(
        title="course-signup",
        version=__version__,
        summary="Course sign-up service: catalogue, seat limits, waitlists and the registrar's API.",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        # Metrics are our own Prometheus ones; FastAPI's OpenTelemetry hooks would ask, on every
        # request, whether a provider was configured (a measurable share of a hot request's time).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # api/docs.py serves these, with the pages' assets from the package instead of a CDN.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    errors.install(app)
    docs.install(app)
    app.include_router(health.router)
    app.include_router(courses.router)
    app.include_router(students.router)
    app.include_router(registrar.router)
    portal.install(app, settings)  # GET / and /portal/...: pages that call the routes above
    # Innermost: sign-up and my-courses skip FastAPI's routing, inside CORS and the request middleware.
    app.add_middleware(HotPaths)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-None-Match", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "Idempotent-Replayed", "ETag"],
        )
    app.add_middleware(CatalogueResponseCache)
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_body_bytes)
    return app


async def _purge_idempotency_keys(app: FastAPI) -> None:
    while True:
        await asyncio.sleep(PURGE_EVERY_SECONDS)
        try:
            removed = await idempotency.purge_expired(SqlAlchemyUnitOfWork(app.state.sessions))
            if removed:
                log.info("purged expired idempotency keys", extra={"count": removed})
        except Exception:
            log.warning("could not purge expired idempotency keys", exc_info=True)


def factory() -> FastAPI:
    """Entry point for `uvicorn --factory course_signup.app:factory` (one per worker process)."""
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings)
