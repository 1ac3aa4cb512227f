"""What every scenario shares: settings from the environment, tokens, and the envelope checks.

Environment:
    LOADTEST_AUTH        jwt (default) or none. With jwt, tokens are minted in-process with the
                         course_signup package, from COURSE_SIGNUP_JWT_SECRET or the secret file in
                         COURSE_SIGNUP_DATA_DIR (the same lookup as `course-signup token`).
    LOADTEST_TOKEN_TTL   lifetime of minted tokens in seconds (default 7200).
    LOADTEST_ADMIN_EMAIL subject of the admin token (default loadtest-admin@loadtest.example).
    LOADTEST_REPORT_DIR  where a scenario may write its verdict file (run.sh sets it).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from locust import events

log = logging.getLogger("loadtest")

# Answers by request name, HTTP status and (for errors) the envelope's sentence, printed at the end,
# so a run shows how many sign-ups were 200 and how many were the expected 409s.
ANSWERS: Counter[tuple[str, int, str]] = Counter()

ENROLLED_ALREADY = "Student has already signed up for this course."
WAITLISTED_ALREADY = "Student is already on the waitlist for this course."
COURSE_FULL = "Course is full."
REGISTRATION_CLOSED = "Registration is closed for this course."
ENROLLMENT_NOT_FOUND = "Enrollment not found."
NOT_SIGNED_UP = "Student is not signed up for this course."


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"loadtest: {name} must be an integer, not {raw!r}") from None


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def auth_mode() -> str:
    mode = os.environ.get("LOADTEST_AUTH", "jwt").strip().lower()
    if mode not in ("jwt", "none"):
        raise SystemExit(f"loadtest: LOADTEST_AUTH must be jwt or none, not {mode!r}")
    return mode


def student_path(email: str) -> str:
    """The e-mail as a path segment (the API accepts it URL-encoded or not)."""
    return quote(email, safe="@")


class Tokens:
    """Bearer tokens for the load users, minted like `course-signup token` does; nothing when auth is off."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._service: Any = None
        self._cache: dict[tuple[str, bool], str] = {}
        self.ttl = env_int("LOADTEST_TOKEN_TTL", 7200)
        self.admin_email = os.environ.get("LOADTEST_ADMIN_EMAIL", "loadtest-admin@loadtest.example")

    @property
    def enabled(self) -> bool:
        return auth_mode() == "jwt"

    def _token_service(self) -> Any:
        if self._service is None:
            try:
                from course_signup.adapters.tokens import SECRET_FILE, TokenService, load_or_create_secret
                from course_signup.settings import Settings
            except ImportError as exc:
                raise SystemExit(
                    "loadtest: LOADTEST_AUTH=jwt needs the course_signup package importable "
                    f"(run Locust from the project's virtualenv): {exc}"
                ) from None
            settings = Settings()
            if settings.jwt_secret is None:
                if settings.jwt_jwks_url:
                    raise SystemExit(
                        "loadtest: the server takes tokens from an identity provider (JWT_JWKS_URL); "
                        "they cannot be minted here. Use LOADTEST_AUTH=none against a test server."
                    )
                secret_file = Path(settings.data_dir) / SECRET_FILE
                if not secret_file.is_file():
                    # Never create one: a new secret would not be the server's, every request would get 401.
                    raise SystemExit(
                        f"loadtest: no JWT secret at {secret_file.resolve()}; set COURSE_SIGNUP_DATA_DIR to the "
                        "server's data directory or COURSE_SIGNUP_JWT_SECRET to its secret (or LOADTEST_AUTH=none)"
                    )
            self._service = TokenService(settings, secret=load_or_create_secret(settings))
        return self._service

    def token(self, email: str, *, admin: bool = False) -> str:
        key = (email, admin)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._token_service().issue(email, admin=admin, ttl_seconds=self.ttl)
            return self._cache[key]

    def headers(self, email: str, *, admin: bool = False) -> dict[str, str]:
        if not self.enabled:
            return {}
        return {"Authorization": f"Bearer {self.token(email, admin=admin)}"}

    def admin_headers(self) -> dict[str, str]:
        return self.headers(self.admin_email, admin=True)

    def check(self) -> None:
        """Fail fast (before any traffic) when tokens cannot be minted."""
        if self.enabled:
            self.token(self.admin_email, admin=True)


TOKENS = Tokens()


def body_of(response: Any) -> dict[str, Any] | None:
    """The JSON envelope, or None when the body is not one."""
    try:
        body = response.json()
    except (ValueError, AttributeError):
        return None
    if not isinstance(body, dict) or not {"code", "message", "data"} <= body.keys():
        return None
    return body


def judge(
    response: Any,
    *,
    ok: tuple[int, ...] = (200,),
    expected_errors: dict[int, tuple[str, ...]] | None = None,
) -> dict[str, Any] | None:
    """Mark a catch_response response: success for an `ok` status with a success envelope, or for an
    expected error (status and exact `data` sentence) in an error envelope; failure for anything else.
    Returns the envelope on success, None on failure."""
    status = response.status_code
    body = body_of(response)
    sentence = body["data"] if body is not None and status >= 400 and isinstance(body["data"], str) else ""
    ANSWERS[(getattr(response, "request_meta", {}).get("name", "?"), status, sentence)] += 1
    if body is None:
        response.failure(f"HTTP {status}: not an envelope: {response.text[:200]!r}")
        return None
    if status in ok:
        if body["code"] != 0 or body["message"] != "ok":
            response.failure(f"HTTP {status} with an error envelope: {body}")
            return None
        response.success()
        return body
    expected = (expected_errors or {}).get(status, ())
    if body["data"] in expected and body["code"] == status:
        response.success()  # an expected answer, not a failure
        return body
    response.failure(f"HTTP {status}: {body['data']!r}")
    return None


def write_verdict(name: str, verdict: dict[str, Any]) -> None:
    """Keep a scenario's verdict next to the CSV/HTML reports when run.sh gave a report directory."""
    directory = os.environ.get("LOADTEST_REPORT_DIR")
    if not directory:
        return
    path = Path(directory) / f"{name}-verdict.json"
    try:
        path.write_text(json.dumps(verdict, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        log.warning("could not write %s: %s", path, exc)


@events.test_start.add_listener
def _reset_answers(**_: Any) -> None:
    ANSWERS.clear()


@events.quit.add_listener
def _print_answers(**_: Any) -> None:
    if not ANSWERS:
        return
    print("Answers (request, HTTP status, sentence):", flush=True)
    for (name, status, sentence), count in sorted(ANSWERS.items()):
        print(f"  {count:7d}  {name}  {status}  {sentence}".rstrip(), flush=True)
