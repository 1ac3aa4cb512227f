"""API.md §4: every student and admin endpoint checks the token before any lookup."""

from __future__ import annotations

import base64
import json
import logging
import time

import httpx
import jwt
import pytest

from tests.api.helpers import assert_error, new_course, sign_up
from tests.conftest import JWT_SECRET, email

STUDENT = "owner@example.com"
OTHER = "someone-else@example.com"

# (method, path, body): {s} is the path's student, {c} a course id.
STUDENT_ENDPOINTS = [
    ("POST", "/students/{s}/courses", {"courseId": "{c}"}),
    ("GET", "/students/{s}/courses", None),
    ("DELETE", "/students/{s}/courses/{c}", None),
    ("GET", "/students/{s}/courses/{c}/classmates", None),
]
ADMIN_ENDPOINTS = [
    ("POST", "/courses", {"courseId": "NEW{c}", "name": "x"}),
    ("PATCH", "/courses/{c}", {"name": "renamed"}),
    ("DELETE", "/courses/{c}", None),
    ("GET", "/courses/{c}/students", None),
    ("GET", "/courses/{c}/events", None),
]
PUBLIC_ENDPOINTS = ["/health", "/ready", "/courses", "/openapi.json", "/metrics"]


def _fill(template: str, course: str, student: str = STUDENT) -> str:
    return template.replace("{s}", student).replace("{c}", course)


async def _call(client, method, path, body, course, headers, student=STUDENT):  # type: ignore[no-untyped-def]
    json_body = None if body is None else {k: _fill(v, course) for k, v in body.items()}
    return await client.request(method, _fill(path, course, student), json=json_body, headers=headers)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def bad_tokens() -> dict[str, str | None]:
    now = int(time.time())
    claims = {"sub": STUDENT, "role": "admin", "iat": now, "exp": now + 600}
    return {
        "missing": None,
        "garbage": "Bearer not.a.jwt",
        "not bearer": "Basic " + base64.b64encode(b"a:b").decode(),
        "empty bearer": "Bearer ",
        "expired": "Bearer " + jwt.encode({**claims, "exp": now - 120}, JWT_SECRET, algorithm="HS256"),
        "wrong key": "Bearer " + jwt.encode(claims, "another-secret-" + "y" * 40, algorithm="HS256"),
        "alg none": "Bearer " + _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + ".",
        "no exp": "Bearer " + jwt.encode({"sub": STUDENT, "role": "admin"}, JWT_SECRET, algorithm="HS256"),
        "bad role": "Bearer " + jwt.encode({**claims, "role": "root"}, JWT_SECRET, algorithm="HS256"),
        "HS512": "Bearer " + jwt.encode(claims, JWT_SECRET, algorithm="HS512"),
    }


@pytest.mark.parametrize("endpoint", STUDENT_ENDPOINTS + ADMIN_ENDPOINTS, ids=lambda e: f"{e[0]} {e[1]}")
@pytest.mark.parametrize("kind", list(bad_tokens()))
async def test_bad_or_missing_tokens_are_unauthorized(client: httpx.AsyncClient, admin_headers, endpoint, kind):
    course = await new_course(client, admin_headers)
    token = bad_tokens()[kind]
    headers = {} if token is None else {"Authorization": token}
    response = await _call(client, *endpoint, course=course, headers=headers)
    assert_error(response, 401)
    assert response.json()["message"] == "Unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("endpoint", STUDENT_ENDPOINTS, ids=lambda e: f"{e[0]} {e[1]}")
@pytest.mark.parametrize("course_exists", [True, False])
async def test_another_students_path_is_forbidden(client, admin_headers, auth, endpoint, course_exists):
    course = await new_course(client, admin_headers) if course_exists else "GHOST999"
    response = await _call(client, *endpoint, course=course, headers=auth(OTHER))
    assert_error(response, 403)
    assert response.json()["message"] == "Forbidden"


@pytest.mark.parametrize("endpoint", ADMIN_ENDPOINTS, ids=lambda e: f"{e[0]} {e[1]}")
@pytest.mark.parametrize("course_exists", [True, False])
async def test_students_cannot_use_admin_endpoints(client, admin_headers, auth, endpoint, course_exists):
    course = await new_course(client, admin_headers) if course_exists else "GHOST999"
    assert_error(await _call(client, *endpoint, course=course, headers=auth(STUDENT)), 403)


@pytest.mark.parametrize("endpoint", STUDENT_ENDPOINTS + ADMIN_ENDPOINTS, ids=lambda e: f"{e[0]} {e[1]}")
async def test_admin_is_allowed_everywhere(client: httpx.AsyncClient, admin_headers, auth, endpoint):
    course = await new_course(client, admin_headers)
    await sign_up(client, STUDENT, course, auth(STUDENT))
    await sign_up(client, "mate@example.com", course, auth("mate@example.com"))
    response = await _call(client, *endpoint, course=course, headers=admin_headers)
    if endpoint[0] == "POST" and endpoint[1].startswith("/students"):
        assert_error(response, 409, "Student has already signed up for this course.")
    elif endpoint[0] == "DELETE" and endpoint[1] == "/courses/{c}":
        assert_error(response, 409, "Course has enrollments.")
    else:
        assert response.status_code in (200, 201), response.text


async def test_the_student_may_act_on_their_own_path(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers)
    shouting = {"Authorization": auth(STUDENT.upper())["Authorization"]}
    assert (await sign_up(client, STUDENT, course, shouting)).status_code == 200


@pytest.mark.parametrize("path", PUBLIC_ENDPOINTS)
async def test_public_endpoints_need_no_token(client: httpx.AsyncClient, path: str):
    assert (await client.get(path)).status_code == 200


async def test_tokens_never_reach_the_logs(client: httpx.AsyncClient, admin_headers, auth, caplog):
    from course_signup.logs import JsonFormatter

    caplog.set_level(logging.DEBUG)
    course = await new_course(client, admin_headers)
    student = email()
    token_headers = auth(student)
    await sign_up(client, student, course, token_headers)
    await client.get(f"/students/{OTHER}/courses", headers=token_headers)
    await client.get("/courses", headers={"Authorization": "Bearer leaked.secret.value"})
    text = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert "request" in text and student in text  # the subject is logged, the credential is not
    assert token_headers["Authorization"].split()[1] not in text
    assert admin_headers["Authorization"].split()[1] not in text
    assert "leaked.secret.value" not in text


@pytest.mark.parametrize("origins", [[], ["https://portal.example.edu"]])
async def test_cors_is_off_unless_origins_are_configured(tmp_path, origins: list[str]):
    import asyncio

    from course_signup.adapters import migrations
    from course_signup.settings import Settings
    from tests.conftest import running_app

    settings = Settings(data_dir=tmp_path, jwt_secret=JWT_SECRET, cors_origins=origins)
    await asyncio.to_thread(migrations.upgrade, settings)
    async with running_app(settings) as client:
        preflight = await client.options(
            "/courses",
            headers={"Origin": "https://portal.example.edu", "Access-Control-Request-Method": "GET"},
        )
        simple = await client.get("/courses", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers
    if origins:
        assert preflight.headers["access-control-allow-origin"] == "https://portal.example.edu"
    else:
        assert "access-control-allow-origin" not in preflight.headers


# --- holes found from outside -------------------------------------------------------------------

GROWING_EMAIL = "İ" * 200 + "@x.com"  # 206 characters as sent, 406 once lower-cased


@pytest.mark.parametrize("endpoint", STUDENT_ENDPOINTS, ids=lambda e: f"{e[0]} {e[1]}")
async def test_an_email_that_grows_past_254_characters_when_lower_cased_is_a_bad_request(
    client: httpx.AsyncClient, admin_headers, endpoint
):
    course = await new_course(client, admin_headers)
    response = await _call(client, *endpoint, course=course, headers=admin_headers, student=GROWING_EMAIL)
    assert_error(response, 400)


async def test_a_token_whose_subject_grows_past_254_characters_when_lower_cased_is_unauthorized(
    client: httpx.AsyncClient,
):
    now = int(time.time())
    token = jwt.encode({"sub": GROWING_EMAIL, "exp": now + 600}, JWT_SECRET, algorithm="HS256")
    response = await client.get("/students/x@example.com/courses", headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 401)


def _signed(payload: str) -> str:
    """An HS256 token, correctly signed with the service's secret, whose claims are this JSON text as is."""
    return jwt.api_jws.encode(payload.encode(), JWT_SECRET, algorithm="HS256")


HUGE = "1" + "0" * 400  # 1e400 as a JSON integer: no float can hold it
SOON = "SOON"  # stands for a valid exp, ten minutes ahead


@pytest.mark.parametrize(
    "times",
    [
        f'"exp": {HUGE}',
        '"exp": 1e400',
        '"exp": NaN',
        '"exp": 253402300800',  # one second after 9999-12-31T23:59:59Z
        f'"exp": SOON, "iat": {HUGE}',
        f'"exp": SOON, "iat": -{HUGE}',
        '"exp": SOON, "iat": 1e400',
        f'"exp": SOON, "nbf": {HUGE}',
        f'"exp": SOON, "nbf": -{HUGE}',
        '"exp": SOON, "nbf": -1e400',
    ],
    ids=lambda times: times.replace(HUGE, "1e400 as an integer"),
)
async def test_a_validly_signed_token_with_an_absurd_time_claim_is_unauthorized(client: httpx.AsyncClient, times):
    claims = f'{{"sub": "{STUDENT}", "role": "student", {times.replace(SOON, str(int(time.time()) + 600))}}}'
    response = await client.get(f"/students/{STUDENT}/courses", headers={"Authorization": f"Bearer {_signed(claims)}"})
    assert_error(response, 401)


async def test_a_token_signed_the_same_way_with_sensible_times_is_accepted(client: httpx.AsyncClient):
    now = int(time.time())
    claims = f'{{"sub": "{STUDENT}", "role": "student", "iat": {now}, "nbf": {now}, "exp": {now + 600}}}'
    response = await client.get(f"/students/{STUDENT}/courses", headers={"Authorization": f"Bearer {_signed(claims)}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("secret", ["x" * 31, "é" * 15], ids=["31 characters", "30 bytes in 15 characters"])
async def test_a_configured_secret_under_32_bytes_stops_the_app_at_start(tmp_path, secret: str):
    import asyncio

    from course_signup.adapters import migrations
    from course_signup.adapters.tokens import SecretError
    from course_signup.app import create_app
    from course_signup.settings import Settings

    settings = Settings(data_dir=tmp_path, jwt_secret=secret)
    await asyncio.to_thread(migrations.upgrade, settings)
    application = create_app(settings)
    with pytest.raises(SecretError) as refused:
        async with application.router.lifespan_context(application):
            pass
    message = str(refused.value)
    assert "COURSE_SIGNUP_JWT_SECRET" in message and "32" in message and "\n" not in message
    assert secret not in message


@pytest.mark.parametrize("secret", ["", "   ", "x" * 31])
def test_an_empty_or_short_secret_is_refused_with_one_line(secret: str):
    from course_signup.adapters.tokens import SecretError, validate_secret

    with pytest.raises(SecretError) as refused:
        validate_secret(secret, "COURSE_SIGNUP_JWT_SECRET")
    assert "COURSE_SIGNUP_JWT_SECRET" in str(refused.value) and "\n" not in str(refused.value)
    assert validate_secret("x" * 32, "COURSE_SIGNUP_JWT_SECRET") == "x" * 32


@pytest.mark.parametrize("data_dir_before", ["missing", "left open (0755)"])
def test_the_generated_secret_is_0600_in_a_0700_data_directory(tmp_path, data_dir_before: str):
    import stat

    from course_signup.adapters.tokens import SECRET_FILE, load_or_create_secret
    from course_signup.settings import Settings

    data_dir = tmp_path / "new" / "data"
    if data_dir_before != "missing":
        data_dir.mkdir(parents=True)
        data_dir.chmod(0o755)
    secret = load_or_create_secret(Settings(data_dir=data_dir))
    assert secret is not None and len(secret) >= 32
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / SECRET_FILE).stat().st_mode) == 0o600
    assert load_or_create_secret(Settings(data_dir=data_dir)) == secret
