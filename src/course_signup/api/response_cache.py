"""Answers repeated catalogue reads (GET /courses, GET /courses/{courseId}) before routing.

The first answer of 200 to a given path and query string is kept in the catalogue cache, so it
expires with the catalogue's TTL and is dropped by the same invalidation every local write does.
Only answers the routes produced are stored, so a query string that fails validation is never
served from here. With rate limits on, the request is counted here first, then answered from the
cache or by the route (which does not count it again).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from course_signup.api.deps import check_anonymous_limit
from course_signup.api.errors import domain_error_handler
from course_signup.domain.errors import RateLimitedError

_CATALOGUE = re.compile(r"^/courses(/[A-Za-z0-9_-]{1,32})?$")
_ROUTES = {False: SimpleNamespace(path="/courses"), True: SimpleNamespace(path="/courses/{courseId}")}
_JSON_HEADERS = [(b"content-type", b"application/json")]


class CatalogueResponseCache:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not _CATALOGUE.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        if state.rate_limiter is not None:
            # Counted here, once, whether the answer then comes from the cache or from the route.
            request = Request(scope)
            try:
                await check_anonymous_limit(request)
            except RateLimitedError as exc:
                scope["route"] = _ROUTES[scope["path"] != "/courses"]
                await (await domain_error_handler(request, exc))(scope, receive, send)
                return
        key = f"http:{scope['path']}?{scope['query_string'].decode('latin-1')}"
        body = state.cache.get(key)
        if body is not None:
            scope["route"] = _ROUTES[scope["path"] != "/courses"]  # for the log line and metrics
            headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        status, chunks = 0, []

        async def keep(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, keep)
        if status == 200:
            state.cache.put(key, b"".join(chunks))
