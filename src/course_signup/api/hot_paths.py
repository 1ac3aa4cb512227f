"""Sign-up and my-courses, answered before FastAPI's route matching and dependency solving.

On registration morning nearly every request is one of these two. Profiled under load (py-spy on
one of two workers, my-courses at 64 clients), FastAPI's route matching and dependency solving
took about 40 % of the worker's time, more than the database did. These handlers take the same
steps as the routes in routes/students.py, with the same functions: deps.py for the token, the
rate limit and the path's student; the same use cases; errors.py for every error envelope.

They answer only requests they recognise exactly. Anything else goes on, untouched, to FastAPI,
whose routes remain the documented contract: a query string with other parameters or a limit out
of range, an e-mail the path pattern refuses, an Idempotency-Key, a body other than a plain
{"courseId", "waitlist"} object.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from course_signup.api import deps, errors
from course_signup.api.envelope import JSON, envelope_bytes, page_out
from course_signup.api.schemas import enrollment_out, student_course_out
from course_signup.domain import rules
from course_signup.domain.pagination import (
    CURSOR_PATTERN,
    DEFAULT_LIMIT,
    MAX_CURSOR_LENGTH,
    MAX_LIMIT,
    PageRequest,
    decode_cursor,
)
from course_signup.services import enrollments
from course_signup.services.unit_of_work import SqlAlchemyUnitOfWork

_STUDENT_COURSES = re.compile(r"^/students/([^/]+)/courses$")
_EMAIL = re.compile(rules.EMAIL_PATTERN)
_COURSE_ID = re.compile(rules.COURSE_ID_PATTERN)
_LIMIT = re.compile(r"[1-9][0-9]{0,3}")
_STATUSES = ("enrolled", "waitlisted")
_CURSOR = re.compile(CURSOR_PATTERN)
_ROUTE = SimpleNamespace(path="/students/{studentEmail}/courses")  # for the log line and metrics
_JSON = JSON.encode()

Work = Callable[[Request], Awaitable[tuple[int, bytes]]]


class HotPaths:
    """ASGI middleware in front of the app; see the module docstring for what it answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _STUDENT_COURSES.match(scope["path"]) if scope["type"] == "http" else None
        email = match.group(1) if match is not None else None
        if email is not None and len(email) <= rules.MAX_EMAIL_LENGTH and _EMAIL.match(email):
            if scope["method"] == "GET":
                query = _my_courses_query(scope["query_string"])
                if query is not None:
                    await _answer(scope, send, lambda request: _my_courses(request, email, *query))
                    return
            elif scope["method"] == "POST" and _header(scope, b"idempotency-key") is None:
                body, receive = await _buffer(receive)
                sign_up = _sign_up_body(body)
                if sign_up is not None:
                    await _answer(scope, send, lambda request: _sign_up(request, email, *sign_up))
                    return
        await self.app(scope, receive, send)


async def _answer(scope: Scope, send: Send, work: Work) -> None:
    scope["route"] = _ROUTE
    request = Request(scope)
    try:
        status, body = await work(request)
    except Exception as exc:
        answer = await errors.answer_for(request, exc)
        if answer is None:
            raise  # RequestMiddleware logs it and answers 500
        await answer(scope, _no_body, send)
        return
    # What Response(body, media_type=JSON) sends, without building a Response.
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _my_courses(
    request: Request, email: str, limit: int, cursor: str | None, status: str | None
) -> tuple[int, bytes]:
    """GET /students/{studentEmail}/courses, as routes/students.py my_courses answers it."""
    principal = await deps.verify_bearer(request, _bearer(request))
    student = deps.authorize_student(principal, email)
    page = PageRequest(limit=limit, after=None if cursor is None else decode_cursor(cursor, shape=(str,)))
    uow = deps.reading_uow(request, reader=student)
    result = await enrollments.list_my_courses(uow, student_id=student, status=status, page=page)
    return 200, envelope_bytes(200, [student_course_out(v) for v in result.items], page=page_out(result, limit))


async def _sign_up(request: Request, email: str, course_id: str, waitlist: bool) -> tuple[int, bytes]:
    """POST /students/{studentEmail}/courses without an Idempotency-Key, as routes/students.py sign_up."""
    principal = await deps.verify_bearer(request, _bearer(request))
    await deps.check_write_limit(request, principal)
    student = deps.authorize_student(principal, email)
    state = request.app.state
    await deps.note_write(request, student=student, catalogue=True)  # as routes/students.py does
    view = await enrollments.sign_up(
        SqlAlchemyUnitOfWork(state.sessions, request_id=request.state.request_id),
        state.cache,
        student_id=student,
        course_id=rules.normalize_course_id(course_id),
        waitlist=waitlist,
        admissions=state.admissions,
    )
    status = 200 if view.is_enrolled else 202
    return status, envelope_bytes(status, enrollment_out(view))


def _my_courses_query(raw: bytes) -> tuple[int, str | None, str | None] | None:
    """(limit, cursor, status) when the query string is plainly valid; None to let FastAPI judge it."""
    if not raw:
        return DEFAULT_LIMIT, None, None
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    values = dict(pairs)
    if len(values) != len(pairs) or not values.keys() <= {"limit", "cursor", "status"}:
        return None
    limit, cursor, status = values.get("limit"), values.get("cursor"), values.get("status")
    if limit is not None and not (_LIMIT.fullmatch(limit) and int(limit) <= MAX_LIMIT):
        return None
    if cursor is not None and not (len(cursor) <= MAX_CURSOR_LENGTH and _CURSOR.match(cursor)):
        return None
    if status is not None and status not in _STATUSES:
        return None
    return (DEFAULT_LIMIT if limit is None else int(limit)), cursor, status


def _sign_up_body(body: bytes) -> tuple[str, bool] | None:
    """(courseId, waitlist) from a plain, valid sign-up body; None to let FastAPI judge it."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not data.keys() <= {"courseId", "waitlist"}:
        return None
    course_id, waitlist = data.get("courseId"), data.get("waitlist", False)
    if not isinstance(course_id, str) or not _COURSE_ID.match(course_id) or not isinstance(waitlist, bool):
        return None
    return course_id, waitlist


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a receive that hands it on again to whoever reads it next."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _bearer(request: Request) -> str | None:
    authorization = _header(request.scope, b"authorization")
    return deps.bearer_token(None if authorization is None else authorization.decode("latin-1"))


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
