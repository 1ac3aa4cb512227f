"""The floor for sign-ups and my-courses: raw ASGI, an asyncpg pool, and the service's exact SQL.

What the service does for these two requests, with nothing else around it: no framework, no ORM,
no middleware, and no batching (each sign-up is one statement with arrays of one element, so the
floor is one statement per request). It keeps what the service cannot drop: the JWT check (HS256
with PyJWT and the same secret, verified tokens remembered in a dict), the path's student checked
against the token's, the same SQL (compiled from course_signup's repositories module by
bench/service_sql.py), the same {code, message, data} envelope encoded with orjson, and the same
pool bounds (DB_POOL_SIZE + DB_MAX_OVERFLOW connections per worker, DB_POOL_TIMEOUT, then 503).

Settings come from the service's own COURSE_SIGNUP_* variables. Run it under the same uvicorn,
options and worker count as the service (bench/harness.py: asgi_command):

    uvicorn floor_app:app --app-dir bench --workers 2 --no-access-log --no-server-header ...

It answers POST and GET /students/{email}/courses, and GET /ready.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import jwt
import orjson
import service_sql

from course_signup.domain import errors
from course_signup.domain.pagination import DEFAULT_LIMIT, encode_cursor
from course_signup.settings import Settings

SETTINGS = Settings()
SECRET = SETTINGS.jwt_secret.get_secret_value() if SETTINGS.jwt_secret else ""
LEEWAY = SETTINGS.jwt_leeway_seconds
ADMIT = service_sql.admit()
MY_COURSES = service_sql.my_courses()
VERIFIED_CACHE_SIZE = 50_000  # as course_signup.adapters.tokens
MAX_ATTEMPTS = 10  # as course_signup.services.admission
PREFIX, SUFFIX = "/students/", "/courses"
HEADERS = [(b"content-type", b"application/json")]
REASONS = {200: "ok", 202: "ok", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 409: "Status Conflict", 500: "Internal Server Error",
           503: "Service Unavailable"}  # fmt: skip

_verified: dict[str, tuple[str, float]] = {}
_pool: asyncpg.Pool | None = None


class Refusal(Exception):
    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status = status
        self.sentence = sentence


def envelope(status: int, data: Any, page: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"code": 0 if status < 400 else status, "message": REASONS[status], "data": data}
    if page is not None:
        body["page"] = page
    return orjson.dumps(body)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def authorised_student(scope: dict[str, Any]) -> str:
    """The path's student, if the bearer token speaks for them (401 / 403 otherwise)."""
    email = scope["path"][len(PREFIX) : -len(SUFFIX)].strip().lower()
    token = next((v[7:].decode("latin-1") for k, v in scope["headers"] if k == b"authorization"
                  and v[:7].lower() == b"bearer "), None)  # fmt: skip
    if not token:
        raise Refusal(401, errors.UnauthenticatedError.sentence)
    known = _verified.get(token)
    if known is None or time.time() >= known[1]:
        try:
            claims = jwt.decode(token, SECRET, algorithms=["HS256"], leeway=LEEWAY,
                                options={"require": ["exp", "sub"]})  # fmt: skip
        except jwt.PyJWTError:
            raise Refusal(401, "The bearer token is not valid.") from None
        known = (str(claims["sub"]).strip().lower(), int(claims["exp"]) + LEEWAY)
        if len(_verified) >= VERIFIED_CACHE_SIZE:
            _verified.clear()
        _verified[token] = known
    if known[0] != email:
        raise Refusal(403, errors.ForbiddenError.sentence)
    return email


async def fetch(sql: str, arguments: list[Any]) -> list[asyncpg.Record]:
    """One statement on a pooled connection (autocommit); 503 after DB_POOL_TIMEOUT without one."""
    assert _pool is not None
    try:
        connection = await _pool.acquire(timeout=SETTINGS.db_pool_timeout)
    except TimeoutError:
        raise Refusal(503, "The database is unavailable; try again shortly.") from None
    try:
        return await connection.fetch(sql, *arguments)
    finally:
        await _pool.release(connection)


async def sign_up(student: str, body: bytes) -> tuple[int, bytes]:
    try:
        payload = orjson.loads(body)
        course_id, waitlist = payload["courseId"], payload.get("waitlist", False)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise Refusal(400, "The request body is not valid.") from None
    if not isinstance(course_id, str) or not isinstance(waitlist, bool):
        raise Refusal(400, "The request body is not valid.")
    course_id = course_id.upper()
    request_id = uuid.uuid4().hex
    for _ in range(MAX_ATTEMPTS):
        at = datetime.now(UTC)
        arguments = ADMIT.arguments({"p_course": course_id, "p_at": at, "p_students": [student],
                                     "p_waitlist": [waitlist], "p_requests": [request_id]})  # fmt: skip
        try:
            row = (await fetch(ADMIT.sql, arguments))[0]
        except asyncpg.UniqueViolationError:
            continue  # the same student signed up concurrently: run again with a fresh snapshot
        return admission(row, student, course_id, at)
    raise Refusal(503, "Sign-ups to this course kept racing with identical ones.")


def admission(row: asyncpg.Record, student: str, course_id: str, at: datetime) -> tuple[int, bytes]:
    """The answer from the statement's row, as the service's _verdict and sign-up route give it."""
    if not row["found"]:
        raise Refusal(404, errors.CourseNotFoundError.sentence)
    if not row["open"]:
        raise Refusal(409, errors.RegistrationClosedError.sentence)
    if row["existing"] is not None:
        waitlisted = row["existing"] == "waitlisted"
        raise Refusal(409, (errors.AlreadyWaitlistedError if waitlisted else errors.AlreadyEnrolledError).sentence)
    if row["status"] is None:
        raise Refusal(409, errors.CourseFullError.sentence)
    data: dict[str, Any] = {"studentId": student, "courseId": course_id, "status": row["status"],
                            "enrolledAt": rfc3339(at)}  # fmt: skip
    if row["status"] == "waitlisted":
        data["position"] = int(row["position"])
        return 202, envelope(202, data)
    return 200, envelope(200, data)


async def my_courses(student: str) -> tuple[int, bytes]:
    rows = await fetch(MY_COURSES.sql, MY_COURSES.arguments({"p_student": student, "p_limit": DEFAULT_LIMIT + 1}))
    items = []
    for row in rows[:DEFAULT_LIMIT]:
        item = {"courseId": row["course_id"], "name": row["name"], "lessons": row["lessons"],
                "status": row["status"], "enrolledAt": rfc3339(row["created_at"])}  # fmt: skip
        if row["status"] == "waitlisted":
            item["position"] = row["position"]
        items.append(item)
    after = encode_cursor((rows[DEFAULT_LIMIT - 1]["course_id"],)) if len(rows) > DEFAULT_LIMIT else None
    return 200, envelope(200, items, page={"limit": DEFAULT_LIMIT, "nextCursor": after})


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def handle(scope: dict[str, Any], receive: Any) -> tuple[int, bytes]:
    path, method = scope["path"], scope["method"]
    if path == "/ready":
        await fetch("SELECT 1", [])
        return 200, envelope(200, {"database": "ok"})
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX) and "/" not in path[len(PREFIX) : -len(SUFFIX)]):
        raise Refusal(404, "Not found.")
    if method not in ("GET", "POST"):
        raise Refusal(405, "Method not allowed.")
    student = authorised_student(scope)
    if method == "POST":
        return await sign_up(student, await read_body(receive))
    return await my_courses(student)


async def lifespan(receive: Any, send: Any) -> None:
    global _pool
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            dsn = (SETTINGS.database_url or "").replace("postgresql+asyncpg://", "postgresql://", 1)
            # Opened on demand and kept, as SQLAlchemy's pool does (no pre-ping either).
            _pool = await asyncpg.create_pool(dsn, min_size=0,
                                              max_size=SETTINGS.db_pool_size + SETTINGS.db_max_overflow)  # fmt: skip
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _pool is not None:
                await asyncio.wait_for(_pool.close(), 10)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    headers = HEADERS
    try:
        status, body = await handle(scope, receive)
    except Refusal as refusal:
        status, body = refusal.status, envelope(refusal.status, refusal.sentence)
        if status == 503:
            headers = [*HEADERS, (b"retry-after", b"1")]
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.TooManyConnectionsError, asyncpg.InterfaceError):
        status, body = 503, envelope(503, "The database is unavailable; try again shortly.")
    except Exception:
        status, body = 500, envelope(500, "Internal error.")
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
