"""The {code, message, data} envelope, encoded once with orjson."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from starlette.responses import Response

from course_signup.domain.pagination import Page

JSON = "application/json"

# API.md's reason phrases (409 keeps the original service's wording); other codes use Python's.
REASONS: dict[int, str] = {status.value: status.phrase for status in HTTPStatus} | {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Status Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def envelope_bytes(status: int, data: Any, *, page: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {
        "code": 0 if status < 400 else status,
        "message": "ok" if status < 400 else REASONS.get(status, "Error"),
        "data": data,
    }
    if page is not None:
        body["page"] = page
    return orjson.dumps(body)


def page_out(page: Page[Any], limit: int) -> dict[str, Any]:
    """The sibling `page` object of API.md's pagination."""
    return {"limit": limit, "nextCursor": page.next_cursor}


def ok(data: Any, *, status: int = 200, page: Page[Any] | None = None, limit: int = 0) -> Response:
    """A success envelope; with `page`, also the `page` object."""
    page_info = None if page is None else page_out(page, limit)
    return json_response(envelope_bytes(status, data, page=page_info), status=status)


def json_response(body: bytes, *, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=JSON)


def error(status: int, sentence: str, headers: dict[str, str] | None = None) -> Response:
    return Response(envelope_bytes(status, sentence), status_code=status, media_type=JSON, headers=headers)
