"""One pure-ASGI middleware for every request: request id, body limits, headers, the log line, metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from course_signup.adapters import metrics
from course_signup.api.envelope import error
from course_signup.api.errors import internal_error

log = logging.getLogger("course_signup.access")

SIGN_UP_ROUTE = "/students/{studentEmail}/courses"
_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}
_REGISTRAR_VIEW = re.compile(r"^/courses/[^/]+/")  # roster and audit trail


class BodyTooLargeError(Exception):
    pass


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            # 1-128 visible ASCII characters, else we mint our own (no log or header injection).
            if 1 <= len(value) <= 128 and all(0x21 <= byte <= 0x7E for byte in value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status_holder = {"status": 500, "started": False}
        # Student data and registrar views are never stored by caches; the public catalogue may be.
        private = scope["path"].startswith("/students") or bool(_REGISTRAR_VIEW.match(scope["path"]))
        too_large = {"body": False, "answering": False}

        async def send_wrapper(message: Message) -> None:
            if too_large["body"] and not too_large["answering"]:
                return  # the app's answer to a body we cut short is replaced by our 413
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store" if private else "no-cache"
            await send(message)

        try:
            rejection = self._reject_body(scope)
            if rejection is not None:
                await rejection(scope, receive, send_wrapper)
            else:
                await self.app(scope, self._limited(receive, too_large), send_wrapper)
        except BodyTooLargeError:
            pass
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if not status_holder["started"]:
                await internal_error()(scope, receive, send_wrapper)
        if too_large["body"] and not status_holder["started"]:
            too_large["answering"] = True
            await error(413, "The request body is larger than 64 KiB.")(scope, receive, send_wrapper)
        self._record(scope, status_holder["status"], time.perf_counter() - started, request_id)

    def _reject_body(self, scope: Scope) -> Any:
        if scope["method"].encode() not in _BODY_METHODS:
            return None
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return error(413, "The request body is larger than 64 KiB.")
        content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
        has_body = (length is not None and length != b"0") or _header(scope, b"transfer-encoding") is not None
        if has_body and content_type != b"application/json" and not content_type.endswith(b"+json"):
            return error(415, "The request body must be application/json.")
        return None

    def _limited(self, receive: Receive, too_large: dict[str, bool]) -> Receive:
        received = 0
        limit = self.max_body_bytes

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Frameworks may swallow this error (FastAPI turns it into a 400), hence the flag.
                    too_large["body"] = True
                    raise BodyTooLargeError()
            return message

        return receive_limited

    @staticmethod
    def _record(scope: Scope, status: int, seconds: float, request_id: str) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        metrics.observe_request(scope["method"], template, status, seconds)
        state = scope.get("state", {})
        if template == SIGN_UP_ROUTE and scope["method"] == "POST" and status < 500:
            metrics.observe_signup(status, state.get("domain_error"))
        log.info(
            "request",
            extra={
                "method": scope["method"],
                "route": template,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "request_id": request_id,
                "subject": state.get("subject"),
            },
        )
