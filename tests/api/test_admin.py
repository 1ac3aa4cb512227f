"""The registrar's endpoints: create, change, delete, roster, audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.api.helpers import assert_error, new_course, sign_up
from tests.conftest import email, unique


def _at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat(timespec="seconds").replace("+00:00", "Z")


async def test_create_course_returns_201_and_normalises_the_id(client: httpx.AsyncClient, admin_headers):
    course_id = unique().lower()
    response = await client.post(
        "/courses",
        json={"courseId": course_id, "name": "Graph Theory", "lessons": 12, "capacity": 30},
        headers=admin_headers,
    )
    assert response.status_code == 201
    assert response.json()["data"] == {
        "courseId": course_id.upper(),
        "name": "Graph Theory",
        "lessons": 12,
        "capacity": 30,
        "enrolled": 0,
        "seatsLeft": 30,
        "waitlisted": 0,
        "registrationOpensAt": None,
        "registrationClosesAt": None,
    }
    again = await client.post("/courses", json={"courseId": course_id, "name": "x"}, headers=admin_headers)
    assert_error(again, 409, "Course already exists.")


async def test_create_course_validates_fields(client: httpx.AsyncClient, admin_headers):
    for body in (
        {"name": "no id"},
        {"courseId": unique()},
        {"courseId": unique(), "name": ""},
        {"courseId": unique(), "name": "x", "lessons": -1},
        {"courseId": unique(), "name": "x", "capacity": -5},
        {"courseId": unique(), "name": "x", "capacity": "10"},
        {"courseId": unique(), "name": "x", "registrationOpensAt": "tomorrow"},
        {"courseId": unique(), "name": "x", "registrationOpensAt": "2026-01-01T00:00:00"},
        {
            "courseId": unique(),
            "name": "x",
            "registrationOpensAt": _at(timedelta(days=2)),
            "registrationClosesAt": _at(timedelta(days=1)),
        },
    ):
        assert_error(await client.post("/courses", json=body, headers=admin_headers), 400)


async def test_registration_window_closes_sign_ups(client: httpx.AsyncClient, admin_headers, auth):
    later = await new_course(client, admin_headers, registrationOpensAt=_at(timedelta(hours=1)))
    over = await new_course(client, admin_headers, registrationClosesAt=_at(timedelta(seconds=-1)))
    student = email()
    for course in (later, over):
        assert_error(
            await sign_up(client, student, course, auth(student)), 409, "Registration is closed for this course."
        )
    opened = await client.patch(f"/courses/{later}", json={"registrationOpensAt": None}, headers=admin_headers)
    assert opened.status_code == 200 and opened.json()["data"]["registrationOpensAt"] is None
    assert (await sign_up(client, student, later, auth(student))).status_code == 200


async def test_raising_capacity_promotes_waitlisted_students_in_order(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers, capacity=1)
    students = [email(f"s{i}") for i in range(4)]
    for student in students:
        await sign_up(client, student, course, auth(student), waitlist=True)
    changed = await client.patch(f"/courses/{course}", json={"capacity": 3}, headers=admin_headers)
    assert changed.status_code == 200
    assert (changed.json()["data"]["enrolled"], changed.json()["data"]["waitlisted"]) == (3, 1)
    roster = (await client.get(f"/courses/{course}/students", headers=admin_headers)).json()["data"]
    enrolled = sorted(r["studentId"] for r in roster if r["status"] == "enrolled")
    assert enrolled == sorted(students[:3])
    assert [(r["studentId"], r["position"]) for r in roster if r["status"] == "waitlisted"] == [(students[3], 1)]
    events = (await client.get(f"/courses/{course}/events", headers=admin_headers)).json()["data"]
    assert [(e["type"], e["studentId"]) for e in events if e["type"] == "promoted"] == [
        ("promoted", students[1]),
        ("promoted", students[2]),
    ]


async def test_capacity_below_enrollment_is_refused(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers, capacity=5)
    for student in (email("a"), email("b")):
        await sign_up(client, student, course, auth(student))
    assert_error(
        await client.patch(f"/courses/{course}", json={"capacity": 1}, headers=admin_headers),
        409,
        "Capacity is below current enrollment.",
    )
    assert (await client.patch(f"/courses/{course}", json={"capacity": 2}, headers=admin_headers)).status_code == 200


async def test_patch_rejects_bad_fields_and_unknown_course(client: httpx.AsyncClient, admin_headers):
    course = await new_course(client, admin_headers)
    assert_error(await client.patch(f"/courses/{course}", json={"name": None}, headers=admin_headers), 400)
    assert_error(await client.patch(f"/courses/{course}", json={"lessons": "3"}, headers=admin_headers), 400)
    assert_error(
        await client.patch("/courses/GHOST", json={"name": "x"}, headers=admin_headers), 404, "Course not found."
    )


async def test_delete_needs_force_when_students_are_in(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers, capacity=1)
    first, second = email("a"), email("b")
    await sign_up(client, first, course, auth(first))
    await sign_up(client, second, course, auth(second), waitlist=True)
    assert_error(await client.delete(f"/courses/{course}", headers=admin_headers), 409, "Course has enrollments.")
    forced = await client.delete(f"/courses/{course}?force=true", headers=admin_headers)
    assert forced.status_code == 200
    assert_error(await client.get(f"/courses/{course}"), 404, "Course not found.")
    assert (await client.get(f"/students/{first}/courses", headers=auth(first))).json()["data"] == []
    events = (await client.get(f"/courses/{course}/events", headers=admin_headers)).json()["data"]
    assert [e["type"] for e in events][-2:] == ["dropped", "left_waitlist"]
    empty = await new_course(client, admin_headers)
    assert (await client.delete(f"/courses/{empty}", headers=admin_headers)).status_code == 200
    assert_error(await client.delete("/courses/GHOST", headers=admin_headers), 404)


async def test_roster_pages_run_through_enrolled_then_waitlist(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers, capacity=3)
    students = [email(f"r{i}") for i in range(7)]
    for student in students:
        await sign_up(client, student, course, auth(student), waitlist=True)
    seen, cursor = [], None
    while True:
        url = f"/courses/{course}/students?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = (await client.get(url, headers=admin_headers)).json()
        seen += body["data"]
        cursor = body["page"]["nextCursor"]
        if cursor is None:
            break
    assert [r["status"] for r in seen] == ["enrolled"] * 3 + ["waitlisted"] * 4
    assert [r["studentId"] for r in seen[:3]] == sorted(students[:3])
    assert [(r["studentId"], r["position"]) for r in seen[3:]] == [(s, i + 1) for i, s in enumerate(students[3:])]
    assert_error(await client.get("/courses/GHOST/students", headers=admin_headers), 404)


async def test_events_record_request_ids(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers)
    student = email()
    await client.post(
        f"/students/{student}/courses", json={"courseId": course}, headers={**auth(student), "X-Request-ID": "req-42"}
    )
    events = (await client.get(f"/courses/{course}/events", headers=admin_headers)).json()["data"]
    assert events[0]["type"] == "enrolled" and events[0]["requestId"] == "req-42"
    assert events[0]["studentId"] == student and events[0]["at"].endswith("Z")


async def test_idempotency_key_replays_the_first_answer(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers, capacity=1)
    student = email()
    headers = {**auth(student), "Idempotency-Key": "key-1"}
    first = await sign_up(client, student, course, headers)
    again = await sign_up(client, student, course, headers)
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    other = await sign_up(client, student, course, headers, waitlist=True)
    assert_error(other, 409, "Idempotency-Key reused with a different request.")
    late = email("late")
    refused = await sign_up(client, late, course, {**auth(late), "Idempotency-Key": "key-1"})
    assert_error(refused, 409, "Course is full.")
    replayed = await sign_up(client, late, course, {**auth(late), "Idempotency-Key": "key-1"})
    assert replayed.status_code == 409 and replayed.content == refused.content
    assert_error(await sign_up(client, late, course, {**auth(late), "Idempotency-Key": "bad key"}), 400)
