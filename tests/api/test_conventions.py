"""API.md §1 conventions: the envelope, 400 (never 422), 404/405/413/415 in the envelope, X-Request-ID; and the
Idempotency-Key replay marker of §3."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import assert_error, new_course, sign_up
from tests.conftest import email


async def test_health_and_ready(client: httpx.AsyncClient):
    health = await client.get("/health")
    assert health.json() == {"code": 0, "message": "ok", "data": {"health": "Okay"}}
    ready = await client.get("/ready")
    assert ready.status_code == 200 and ready.json()["data"]["database"] == "ok"


async def test_unknown_path_and_wrong_method_answer_in_the_envelope(client: httpx.AsyncClient):
    assert_error(await client.get("/nowhere"), 404)
    assert (await client.get("/nowhere")).json()["message"] == "Not Found"
    wrong = await client.put("/courses")
    assert_error(wrong, 405)
    assert wrong.json()["message"] == "Method Not Allowed"


async def test_request_id_is_echoed_or_minted(client: httpx.AsyncClient):
    echoed = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    minted = await client.get("/health", headers={"X-Request-ID": "has space"})
    assert minted.headers["X-Request-ID"] not in ("", "has space")
    too_long = await client.get("/health", headers={"X-Request-ID": "a" * 129})
    assert too_long.headers["X-Request-ID"] != "a" * 129
    assert (await client.get("/nowhere")).headers["X-Request-ID"]


@pytest.mark.parametrize(
    "path_email",
    ["no-at-sign", "@example.com", "alice@", "a b@example.com", "x" * 250 + "@example.com", "a@b@c", "%00a@b.c"],
)
async def test_malformed_email_is_a_bad_request(client: httpx.AsyncClient, admin_headers, path_email: str):
    response = await client.get(f"/students/{path_email}/courses", headers=admin_headers)
    assert_error(response, 400)


@pytest.mark.parametrize(
    "course_id", ["has space", "x" * 33, "semi;colon", "' OR 1=1 --", "ünïcode", "CS101%00", "a.b"]
)
async def test_malformed_course_id_is_a_bad_request(client: httpx.AsyncClient, admin_headers, course_id: str):
    assert_error(await client.get(f"/courses/{course_id}"), 400)
    assert_error(await sign_up(client, "a@example.com", course_id, admin_headers), 400)


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b'"CS101"',
        b"{}",
        b'{"courseId": 5}',
        b'{"courseId": null}',
        b'{"courseId": ["CS101"]}',
        b'{"courseId": "CS101", "waitlist": "yes"}',
        b"\xff\xfe",
    ],
)
async def test_bad_sign_up_bodies_are_bad_requests(client: httpx.AsyncClient, admin_headers, body: bytes):
    response = await client.post(
        "/students/a@example.com/courses",
        content=body,
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert_error(response, 400)


@pytest.mark.parametrize(
    "moment",
    ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2026-11-25T23:59:60Z", "0000-01-01T00:00:00Z"],
)
async def test_times_that_cannot_be_stored_in_utc_are_bad_requests(client: httpx.AsyncClient, admin_headers, moment):
    body = {"courseId": "TIMES1", "name": "Times", "registrationClosesAt": moment}
    assert_error(await client.post("/courses", json=body, headers=admin_headers), 400)
    course = await new_course(client, admin_headers)
    changed = await client.patch(f"/courses/{course}", json={"registrationOpensAt": moment}, headers=admin_headers)
    assert_error(changed, 400)


async def test_unknown_fields_are_ignored(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers)
    student = email()
    response = await sign_up(client, student, course, auth(student), extra="ignored")
    assert response.status_code == 200


async def test_body_over_64_kib_is_payload_too_large(client: httpx.AsyncClient, admin_headers):
    body = b'{"courseId": "CS101", "pad": "' + b"x" * (65 * 1024) + b'"}'
    response = await client.post(
        "/students/a@example.com/courses",
        content=body,
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert_error(response, 413)
    assert response.json()["message"] == "Payload Too Large"


async def test_streamed_body_over_64_kib_is_payload_too_large(client: httpx.AsyncClient, admin_headers):
    async def chunks():
        for _ in range(80):
            yield b"x" * 1024

    response = await client.post(
        "/courses", content=chunks(), headers={**admin_headers, "Content-Type": "application/json"}
    )
    assert_error(response, 413)


async def test_non_json_body_is_unsupported_media_type(client: httpx.AsyncClient, admin_headers):
    response = await client.post(
        "/students/a@example.com/courses",
        content=b"courseId=CS101",
        headers={**admin_headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(response, 415)
    assert response.json()["message"] == "Unsupported Media Type"


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=abc", "cursor=!!!", "cursor=WyJhIiwiYiJd"])
async def test_bad_pagination_is_a_bad_request(client: httpx.AsyncClient, query: str):
    assert_error(await client.get(f"/courses?{query}"), 400)


def _forged(key: list[object]) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


async def test_forged_cursors_with_wrong_types_are_bad_requests(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers)
    student = email()
    for path, key in (
        ("/courses", [5]),
        ("/courses", [True]),
        (f"/students/{student}/courses", [["nested"]]),
        (f"/courses/{course}/events", ["CS101"]),
        (f"/courses/{course}/students", [1, "someone@example.com"]),
        (f"/courses/{course}/students", [0, 7]),
        (f"/courses/{course}/students", [2, 7]),
        ("/courses", ["x" * 300]),
        (f"/courses/{course}/events", [2**70]),
        (f"/courses/{course}/students", [1, -(2**64)]),
    ):
        response = await client.get(f"{path}?cursor={_forged(key)}", headers=admin_headers)
        assert_error(response, 400, "cursor is not valid.")


async def test_pages_walk_the_catalogue_without_gaps_or_repeats(client: httpx.AsyncClient, admin_headers):
    created = sorted([await new_course(client, admin_headers) for _ in range(7)])
    seen: list[str] = []
    cursor = None
    while True:
        url = "/courses?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = (await client.get(url)).json()
        assert body["page"]["limit"] == 3 and len(body["data"]) <= 3
        seen += [c["courseId"] for c in body["data"]]
        cursor = body["page"]["nextCursor"]
        if cursor is None:
            break
        # a row inserted behind the cursor meanwhile is neither skipped nor repeated later on
    assert [c for c in seen if c in created] == created
    assert len(seen) == len(set(seen))


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient):
    schema = (await client.get("/openapi.json")).json()
    assert schema["openapi"].startswith("3.")
    assert "/students/{studentEmail}/courses" in schema["paths"]
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/redoc")).status_code == 200


async def test_a_replayed_answer_is_marked_idempotent_replayed(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers, capacity=1)
    student, late = email(), email("late")
    first = await sign_up(client, student, course, {**auth(student), "Idempotency-Key": "replay-1"})
    again = await sign_up(client, student, course, {**auth(student), "Idempotency-Key": "replay-1"})
    assert first.status_code == again.status_code == 200 and first.content == again.content
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    refused = await sign_up(client, late, course, {**auth(late), "Idempotency-Key": "replay-2"})
    refused_again = await sign_up(client, late, course, {**auth(late), "Idempotency-Key": "replay-2"})
    assert refused.status_code == refused_again.status_code == 409
    assert "Idempotent-Replayed" not in refused.headers
    assert refused_again.headers["Idempotent-Replayed"] == "true"
    reused = await sign_up(client, student, course, {**auth(student), "Idempotency-Key": "replay-1"}, waitlist=True)
    assert_error(reused, 409, "Idempotency-Key reused with a different request.")
    assert "Idempotent-Replayed" not in reused.headers  # a refusal of its own, not the stored answer
    unkeyed = await sign_up(client, student, course, auth(student))
    assert "Idempotent-Replayed" not in unkeyed.headers


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient, admin_headers, auth):
    await client.get("/health")
    course = await new_course(client, admin_headers, capacity=1)
    first, second = email("m1"), email("m2")
    await sign_up(client, first, course, auth(first))
    await sign_up(client, second, course, auth(second))
    await sign_up(client, second, course, auth(second), waitlist=True)
    text = (await client.get("/metrics")).text
    assert "http_requests_total" in text and 'route="/health"' in text
    assert 'http_request_duration_seconds_bucket{le="0.005",method="GET",route="/health"}' in text
    for outcome in ("enrolled", "full", "waitlisted"):
        assert f'signups_total{{outcome="{outcome}"}}' in text
    assert "db_pool_wait_seconds_count" in text and "db_pool_connections_in_use" in text


async def test_student_data_is_not_cached_and_headers_are_hardened(client: httpx.AsyncClient, admin_headers, auth):
    student = email()
    response = await client.get(f"/students/{student}/courses", headers=auth(student))
    assert response.headers["Cache-Control"] == "no-store"
    course = await new_course(client, admin_headers)
    roster = await client.get(f"/courses/{course}/students", headers=admin_headers)
    assert roster.headers["Cache-Control"] == "no-store"
    assert (await client.get(f"/courses/{course}")).headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "server" not in response.headers
