"""Dependencies as Annotated aliases: the unit of work, the cache, and the checked identities."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from course_signup.adapters.cache import Cache
from course_signup.adapters.replicas import CATALOGUE
from course_signup.adapters.tokens import Principal
from course_signup.domain import rules
from course_signup.domain.errors import ForbiddenError, InvalidInputError, RateLimitedError, UnauthenticatedError
from course_signup.domain.pagination import (
    CURSOR_PATTERN,
    DEFAULT_LIMIT,
    MAX_CURSOR_LENGTH,
    MAX_LIMIT,
    KeyShape,
    PageRequest,
    decode_cursor,
)
from course_signup.services.admission import Admitter
from course_signup.services.unit_of_work import SqlAlchemyUnitOfWork


async def get_uow(request: Request) -> SqlAlchemyUnitOfWork:
    return SqlAlchemyUnitOfWork(request.app.state.sessions, request_id=request.state.request_id)


async def get_read_uow(request: Request) -> SqlAlchemyUnitOfWork:
    """For a read-only route: its reads may go to a replica (adapters/replicas.py)."""
    return reading_uow(request, reader=_reader(request))


def reading_uow(request: Request, *, reader: str) -> SqlAlchemyUnitOfWork:
    """A unit of work whose reads go where the replica router sends a read by `reader`."""
    state = request.app.state
    return SqlAlchemyUnitOfWork(
        state.sessions, request_id=request.state.request_id, replicas=state.replicas, reader=reader
    )


def _reader(request: Request) -> str:
    """Whose reads these are: the path's student, else the token's subject, else the public catalogue's."""
    email = request.path_params.get("studentEmail")
    if email is not None:
        with contextlib.suppress(InvalidInputError):  # path_student answers it with a 400
            return rules.normalize_email(email)
    return getattr(request.state, "subject", None) or CATALOGUE


async def note_write(request: Request, *, student: str | None = None, catalogue: bool = False) -> None:
    """Call just before a write: the writer, `student` and (if `catalogue`) catalogue readers see it.

    Their reads go to the primary from now until READ_YOUR_WRITES_SECONDS after (adapters/replicas.py).
    Marking before the write, not after, leaves no moment in which a read could fill the catalogue
    cache from a replica that has not replayed it yet. Without replicas this does nothing.
    """
    router = request.app.state.replicas
    if router is not None:
        readers = (getattr(request.state, "subject", None), student, CATALOGUE if catalogue else None)
        await router.wrote(*{reader for reader in readers if reader})


async def get_cache(request: Request) -> Cache:
    return request.app.state.cache


async def get_admissions(request: Request) -> Admitter:
    return request.app.state.admissions


bearer = HTTPBearer(auto_error=False, description="A JWT: `sub` is the student's e-mail, `role` student or admin.")


async def get_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal | None:
    """The verified caller; None when AUTH_MODE=none. Runs before any lookup."""
    return await verify_bearer(request, None if credentials is None else credentials.credentials)


async def verify_bearer(request: Request, token: str | None) -> Principal | None:
    """The principal of a bearer token (401 if missing or not valid); None when AUTH_MODE=none."""
    tokens = request.app.state.tokens
    if tokens is None:
        return None
    if token is None or not token.strip():
        raise UnauthenticatedError("A bearer token is required.")
    principal = await tokens.verify(token.strip())
    request.state.subject = principal.student_id
    return principal


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, read as HTTPBearer reads it."""
    scheme, token = get_authorization_scheme_param(authorization)
    return token if authorization and scheme.lower() == "bearer" else None


PrincipalDep = Annotated[Principal | None, Depends(get_principal)]


async def path_student(
    principal: PrincipalDep,
    student_email: Annotated[
        str,
        Path(
            alias="studentEmail",
            max_length=rules.MAX_EMAIL_LENGTH,
            json_schema_extra={"pattern": rules.EMAIL_PATTERN},
            description="The student's e-mail; trimmed and lower-cased.",
            examples=["alice@example.com"],
        ),
    ],
) -> str:
    """The path's student, normalised; the token must be that student's or an admin's (else 403)."""
    return authorize_student(principal, student_email)


def authorize_student(principal: Principal | None, student_email: str) -> str:
    """Normalise the path's e-mail (400) and check the token may act for that student (403)."""
    student_id = rules.normalize_email(student_email)
    if principal is not None and not principal.is_admin and principal.student_id != student_id:
        raise ForbiddenError()
    return student_id


async def limit_writes(request: Request, principal: PrincipalDep) -> None:
    """Per token subject (or client address when auth is off) on sign-up and drop."""
    await check_write_limit(request, principal)


async def check_write_limit(request: Request, principal: Principal | None) -> None:
    """429 when the caller has used up its writes (rate limits on)."""
    limiter = request.app.state.rate_limiter
    if limiter is not None:
        identity = principal.student_id if principal is not None else _client(request)
        retry_after = await limiter.check("write", identity)
        if retry_after:
            raise RateLimitedError(retry_after)


async def limit_anonymous(request: Request) -> None:
    """Per client address on the public catalogue."""
    await check_anonymous_limit(request)


async def check_anonymous_limit(request: Request) -> None:
    """429 when the client address has used up its public reads; each request is counted once."""
    limiter = request.app.state.rate_limiter
    if limiter is not None and not getattr(request.state, "anonymous_counted", False):
        request.state.anonymous_counted = True
        retry_after = await limiter.check("anonymous", _client(request))
        if retry_after:
            raise RateLimitedError(retry_after)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def require_admin(principal: PrincipalDep) -> None:
    if principal is not None and not principal.is_admin:
        raise ForbiddenError()


async def path_course(
    course_id: Annotated[
        str,
        Path(
            alias="courseId",
            json_schema_extra={"pattern": rules.COURSE_ID_PATTERN, "maxLength": 32},
            description="Matched case-insensitively; answers use upper case.",
            examples=["CS101"],
        ),
    ],
) -> str:
    return rules.normalize_course_id(course_id)


CURSOR_HELP = "Opaque: `page.nextCursor` of the previous page. One that does not decode is a 400."


def paging(shape: KeyShape) -> Callable[..., Awaitable[PageRequest]]:
    """A dependency reading `limit` and `cursor` for a list whose sort key has this shape."""

    async def page_request(
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[
            str | None,
            Query(min_length=1, max_length=MAX_CURSOR_LENGTH, pattern=CURSOR_PATTERN, description=CURSOR_HELP),
        ] = None,
    ) -> PageRequest:
        return PageRequest(limit=limit, after=None if cursor is None else decode_cursor(cursor, shape=shape))

    return page_request


UowDep = Annotated[SqlAlchemyUnitOfWork, Depends(get_uow)]
ReadUowDep = Annotated[SqlAlchemyUnitOfWork, Depends(get_read_uow)]  # read-only routes: may read a replica
CacheDep = Annotated[Cache, Depends(get_cache)]
AdmissionsDep = Annotated[Admitter, Depends(get_admissions)]
PathStudent = Annotated[str, Depends(path_student)]
PathCourse = Annotated[str, Depends(path_course)]
Admin = Depends(require_admin)
WriteLimit = Depends(limit_writes)
AnonymousLimit = Depends(limit_anonymous)
PageDep = Annotated[PageRequest, Depends(paging((str,)))]  # by course id or student id
EventPageDep = Annotated[PageRequest, Depends(paging((int,)))]  # by event id
RosterPageDep = Annotated[PageRequest, Depends(paging((int, (str, int))))]  # (part, student id | ticket)
StatusFilter = Annotated[Literal["enrolled", "waitlisted"] | None, Query(alias="status")]
