"""Answers repeated catalogue reads (GET /courses, GET /courses/{courseId}) before routing.

The first answer of 200 to a given path and query string is kept in the catalogue cache, so it
expires with the catalogue's TTL and is dropped by the same invalidation every local write does.
Only answers the routes produced are stored, so a query string that fails validation is never
served from here. With rate limits on, the request is counted here first, then answered from the
cache or by the route (which does not count it again).

Both kinds of answer go through `catalogue_response`, the one place that sets the validators: a
strong ETag computed from the exact body bytes, `Cache-Control: no-cache` (any cache may keep the
public catalogue but must revalidate before each reuse, so a client never sees an answer older
than ours), and 304 with no body when `If-None-Match` names the current ETag.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from types import SimpleNamespace

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from course_signup.api.deps import check_anonymous_limit
from course_signup.api.envelope import JSON
from course_signup.api.errors import domain_error_handler
from course_signup.domain.errors import RateLimitedError

_CATALOGUE = re.compile(r"^/courses(/[A-Za-z0-9_-]{1,32})?$")
_ROUTES = {False: SimpleNamespace(path="/courses"), True: SimpleNamespace(path="/courses/{courseId}")}
CACHE_CONTROL = "no-cache"
_CACHE_CONTROL = CACHE_CONTROL.encode()
_JSON = JSON.encode()
# An entity-tag in If-None-Match, W/ or not; the group is its opaque-tag (RFC 9110 §8.8.3).
_ENTITY_TAG = re.compile(rb'(?:W/)?"([\x21\x23-\x7e\x80-\xff]*)"')


def entity_tag(body: bytes) -> bytes:
    """A strong ETag for exactly these bytes: a quoted 128-bit BLAKE2b digest in base64url."""
    digest = hashlib.blake2b(body, digest_size=16).digest()
    return b'"' + base64.urlsafe_b64encode(digest).rstrip(b"=") + b'"'


def not_modified(scope: Scope, etag: bytes) -> bool:
    """If-None-Match is `*` or lists `etag`, compared weakly (RFC 9110 §13.1.2), so W/"x" matches "x"."""
    opaque = etag[1:-1]
    for name, value in scope["headers"]:
        # Several If-None-Match lines count as one comma-separated list.
        if name == b"if-none-match" and (value.strip() == b"*" or opaque in _ENTITY_TAG.findall(value)):
            return True
    return False


def catalogue_response(scope: Scope, body: bytes, etag: bytes | None = None) -> Response:
    """A catalogue answer: 200 with `body`, or 304 with no body; both carry ETag and Cache-Control."""
    etag = etag or entity_tag(body)
    response = Response(status_code=304) if not_modified(scope, etag) else Response(body, media_type=JSON)
    response.raw_headers += [(b"etag", etag), (b"cache-control", CACHE_CONTROL.encode())]
    return response


async def _send_cached(scope: Scope, send: Send, cached: bytes) -> None:
    """What catalogue_response sends for a kept answer, as two ASGI messages: the hottest path there is."""
    split = cached.index(b"\n")
    etag = cached[:split]
    validators = [(b"etag", etag), (b"cache-control", _CACHE_CONTROL)]
    if not_modified(scope, etag):
        await send({"type": "http.response.start", "status": 304, "headers": validators})
        await send({"type": "http.response.body", "body": b""})
        return
    body = cached[split + 1 :]
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON), *validators]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class CatalogueResponseCache:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._reading: dict[tuple[str, int], asyncio.Future[bytes | None]] = {}

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
        cached = await state.cache.get(key)
        if cached is not None:
            scope["route"] = _ROUTES[scope["path"] != "/courses"]  # for the log line and metrics
            await _send_cached(scope, send, cached)
            return
        # Single flight: requests for a key being read now wait for that read instead of starting
        # their own (when an entry expires under load, every request in flight would miss at once),
        # unless a write came in between (epoch), so a process still sees its own writes at once.
        flight = (key, state.cache.epoch)
        pending = self._reading.get(flight)
        if pending is not None:
            shared = await asyncio.shield(pending)
            if shared is not None:
                scope["route"] = _ROUTES[scope["path"] != "/courses"]
                await _send_cached(scope, send, shared)
                return
        else:
            self._reading[flight] = asyncio.get_running_loop().create_future()
        kept = None
        try:
            kept = await self._read(scope, receive, send, key)
        finally:
            leader = self._reading.pop(flight, None) if pending is None else None
            if leader is not None and not leader.done():
                leader.set_result(kept)  # None: the waiting requests answer through the app themselves

    async def _read(self, scope: Scope, receive: Receive, send: Send, key: str) -> bytes | None:
        """Answer through the app; a 200 is kept in the cache and returned (ETag, newline, body)."""
        state = scope["app"].state
        status, chunks = 0, []

        async def keep(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Kept as the route's ETag, a newline, then the body: one bytes value for any cache tier.
                chunks.append(dict(message.get("headers", [])).get(b"etag", b"") + b"\n")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, keep)
        if status != 200:
            return None
        kept = b"".join(chunks)
        await state.cache.put(key, kept)
        return kept
