"""The one place exceptions become the {code, message, data} envelope."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from course_signup.api.envelope import error
from course_signup.domain import errors as e

log = logging.getLogger("course_signup.errors")

STATUS_BY_ERROR: dict[type[e.DomainError], int] = {
    e.InvalidInputError: 400,
    e.UnauthenticatedError: 401,
    e.ForbiddenError: 403,
    e.CourseNotFoundError: 404,
    e.EnrollmentNotFoundError: 404,
    e.NotClassmateError: 404,
    e.RateLimitedError: 429,
    e.AdmissionUnavailableError: 503,
}  # every other DomainError is a 409 conflict with the current state

RETRY_AFTER_SECONDS = "1"


async def domain_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, e.DomainError)
    status = STATUS_BY_ERROR.get(type(exc), 409)
    request.state.domain_error = type(exc).__name__
    headers = None
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="course-signup"'}
    elif isinstance(exc, e.RateLimitedError):
        headers = {"Retry-After": str(exc.retry_after)}
    elif status == 503:
        headers = {"Retry-After": RETRY_AFTER_SECONDS}
    return error(status, str(exc), headers)


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error(400, describe_validation_error(exc))


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    sentences = {404: "No such endpoint.", 405: "Method not allowed on this endpoint."}
    sentence = sentences.get(exc.status_code, str(exc.detail))
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return error(exc.status_code, sentence, headers or None)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match == Match.FULL and route_methods:
            methods |= route_methods
    return sorted(methods)


# SQLSTATE classes meaning "the database cannot serve now; try again": connection exceptions,
# transaction rollback (a deadlock, or a read cancelled on a streaming replica by a conflict with
# recovery), insufficient resources (e.g. too many clients), operator intervention (shutdown, restart).
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "40", "53", "57")


def _sqlstate(exc: DBAPIError) -> str:
    return str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")


async def database_error_handler(request: Request, exc: Exception) -> Response:
    """An unreachable or overloaded database is 503 with Retry-After; any other failure is 500."""
    if isinstance(exc, (PoolTimeoutError, OperationalError, InterfaceError, OSError)) or (
        isinstance(exc, DBAPIError)
        and (exc.connection_invalidated or _sqlstate(exc).startswith(UNAVAILABLE_SQLSTATE_CLASSES))
    ):
        log.warning("database unavailable: %s", type(exc).__name__)
        return error(503, "The database is unavailable; try again shortly.", {"Retry-After": RETRY_AFTER_SECONDS})
    log.exception("database error")
    return internal_error()


def internal_error() -> Response:
    return error(500, "The server failed to answer this request.")


def describe_validation_error(exc: RequestValidationError) -> str:
    """One human-readable sentence naming the first problem, without echoing the input."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "path", "query"))
    reason = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON."
    if first.get("type") == "missing" and where == "":
        return "A JSON request body is required."
    return f"{where or 'request'}: {reason}." if not reason.endswith(".") else f"{where or 'request'}: {reason}"


HANDLERS: tuple[tuple[type[Exception], Callable[[Request, Exception], Awaitable[Response]]], ...] = (
    (e.DomainError, domain_error_handler),
    (RequestValidationError, validation_error_handler),
    (HTTPException, http_error_handler),
    (DBAPIError, database_error_handler),
    (PoolTimeoutError, database_error_handler),
    (OSError, database_error_handler),
)


def install(app: FastAPI) -> None:
    for kind, handler in HANDLERS:
        app.add_exception_handler(kind, handler)


async def answer_for(request: Request, exc: Exception) -> Response | None:
    """The envelope the app's handlers give for `exc` (for answers made outside FastAPI); None if unexpected."""
    for kind, handler in HANDLERS:
        if isinstance(exc, kind):
            return await handler(request, exc)
    return None
