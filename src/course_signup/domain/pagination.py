"""Keyset pagination: a page request, and the opaque cursor that names the last row seen."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from course_signup.domain.errors import InvalidInputError

T = TypeVar("T")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class PageRequest:
    """`after` is the decoded cursor (the sort key of the last row of the previous page)."""

    limit: int = DEFAULT_LIMIT
    after: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_after: tuple[Any, ...] | None

    @property
    def next_cursor(self) -> str | None:
        return None if self.next_after is None else encode_cursor(self.next_after)


# What every cursor looks like (unpadded base64url), for the OpenAPI schema and a first check.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"
MAX_CURSOR_LENGTH = 512


def encode_cursor(key: tuple[Any, ...]) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


KeyShape = tuple[type | tuple[type, ...], ...]


def decode_cursor(cursor: str, *, shape: KeyShape) -> tuple[Any, ...]:
    """Decode a cursor made by encode_cursor whose key parts have the types in `shape`.

    Anything else (not base64, not JSON, wrong length or types) is InvalidInputError, so a
    forged cursor can never reach a query with a value of the wrong type.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidInputError("cursor is not valid.") from None
    if (
        not isinstance(key, list)
        or len(key) != len(shape)
        or any(isinstance(part, bool) or not isinstance(part, kind) for part, kind in zip(key, shape, strict=True))
        or any(isinstance(part, str) and len(part) > 256 for part in key)
        or any(isinstance(part, int) and not -(2**63) <= part < 2**63 for part in key)  # BIGINT range
    ):
        raise InvalidInputError("cursor is not valid.")
    return tuple(key)


def make_page(rows: list[T], request: PageRequest, key: Any) -> Page[T]:
    """Cut the limit+1 rows a repository fetched into a page; `key(row)` gives a row's cursor key."""
    if len(rows) > request.limit:
        rows = rows[: request.limit]
        return Page(rows, tuple(key(rows[-1])))
    return Page(rows, None)
