"""Start-up warm-up of the shared catalogue cache: the catalogue's first page and each course on it."""

from __future__ import annotations

import logging

import orjson
from starlette.types import ASGIApp, Message

log = logging.getLogger("course_signup.cache")

REQUEST_ID = b"catalogue-warm-up"


async def warm_catalogue(app: ASGIApp) -> None:
    """GET /courses as clients send it by default, then GET /courses/{courseId} for each course on that page.

    Each goes through the whole app, so the cache holds exactly what a client's GET leaves there
    (the encoded answer and the page or course behind it) with no second copy of how they are
    rendered. Bounded: one page of the default size, one request at a time.
    """
    status, body = await _get(app, "/courses")
    if status != 200:
        return
    course_ids = [course["courseId"] for course in orjson.loads(body)["data"]]
    for course_id in course_ids:
        await _get(app, f"/courses/{course_id}")
    log.info("catalogue cache warmed", extra={"courses": len(course_ids)})


async def _get(app: ASGIApp, path: str) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "server": ("127.0.0.1", 0),
        "client": None,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"localhost"), (b"x-request-id", REQUEST_ID)],
        # Marked as counted: the warm-up is no client and spends nobody's anonymous rate limit.
        "state": {"anonymous_counted": True},
    }
    status, chunks = 0, []
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if requested:
            return {"type": "http.disconnect"}
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)
