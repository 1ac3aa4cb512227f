"""The Student table of API.md over HTTP, on both databases."""

from __future__ import annotations

import httpx

from tests.api.helpers import assert_error, new_course, sign_up
from tests.conftest import email


async def test_sign_up_returns_the_enrollment_and_counts_the_seat(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers, capacity=2)
    student = email()
    response = await sign_up(client, student, course.lower(), auth(student))
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 0 and body["message"] == "ok"
    assert body["data"]["studentId"] == student
    assert body["data"]["courseId"] == course
    assert body["data"]["status"] == "enrolled"
    assert body["data"]["enrolledAt"].endswith("Z")
    course_now = (await client.get(f"/courses/{course}")).json()["data"]
    assert (course_now["enrolled"], course_now["seatsLeft"]) == (1, 1)


async def test_email_is_trimmed_and_lower_cased(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers)
    student = email("mixed")
    shouted = "%20" + student.upper()
    response = await sign_up(client, shouted, course, auth(student))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["studentId"] == student


async def test_second_sign_up_is_a_conflict(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers)
    student = email()
    assert (await sign_up(client, student, course, auth(student))).status_code == 200
    again = await sign_up(client, student, course, auth(student))
    assert_error(again, 409, "Student has already signed up for this course.")
    assert again.json()["message"] == "Status Conflict"


async def test_unknown_course_is_not_found(client: httpx.AsyncClient, auth):
    student = email()
    assert_error(await sign_up(client, student, "NOPE404", auth(student)), 404, "Course not found.")


async def test_full_course_refuses_or_waitlists_on_request(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers, capacity=1)
    first, second, third = email("a"), email("b"), email("c")
    assert (await sign_up(client, first, course, auth(first))).status_code == 200
    assert_error(await sign_up(client, second, course, auth(second)), 409, "Course is full.")
    waiting = await sign_up(client, second, course, auth(second), waitlist=True)
    assert waiting.status_code == 202
    assert waiting.json()["data"]["status"] == "waitlisted"
    assert waiting.json()["data"]["position"] == 1
    third_answer = await sign_up(client, third, course, auth(third), waitlist=True)
    assert third_answer.json()["data"]["position"] == 2
    assert_error(
        await sign_up(client, second, course, auth(second), waitlist=True),
        409,
        "Student is already on the waitlist for this course.",
    )
    assert_error(
        await sign_up(client, first, course, auth(first), waitlist=True),
        409,
        "Student has already signed up for this course.",
    )


async def test_drop_promotes_first_waitlisted_student(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers, capacity=1)
    first, second, third = email("a"), email("b"), email("c")
    await sign_up(client, first, course, auth(first))
    await sign_up(client, second, course, auth(second), waitlist=True)
    await sign_up(client, third, course, auth(third), waitlist=True)
    dropped = await client.delete(f"/students/{first}/courses/{course}", headers=auth(first))
    assert dropped.status_code == 200
    assert dropped.json()["data"] == {"studentId": first, "courseId": course, "status": "dropped", "promoted": second}
    mine = (await client.get(f"/students/{second}/courses", headers=auth(second))).json()["data"]
    assert [(c["courseId"], c["status"]) for c in mine] == [(course, "enrolled")]
    theirs = (await client.get(f"/students/{third}/courses", headers=auth(third))).json()["data"]
    assert theirs[0]["status"] == "waitlisted" and theirs[0]["position"] == 1
    course_now = (await client.get(f"/courses/{course}")).json()["data"]
    assert (course_now["enrolled"], course_now["waitlisted"]) == (1, 1)


async def test_leaving_the_waitlist_keeps_positions_contiguous(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers, capacity=0)
    students = [email(f"w{i}") for i in range(4)]
    for student in students:
        await sign_up(client, student, course, auth(student), waitlist=True)
    left = await client.delete(f"/students/{students[1]}/courses/{course}", headers=auth(students[1]))
    assert left.json()["data"]["promoted"] is None
    roster = (await client.get(f"/courses/{course}/students", headers=admin_headers)).json()["data"]
    assert [(r["studentId"], r["position"]) for r in roster] == [(students[0], 1), (students[2], 2), (students[3], 3)]


async def test_dropping_what_you_do_not_have_is_not_found(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers)
    student = email()
    assert_error(
        await client.delete(f"/students/{student}/courses/{course}", headers=auth(student)),
        404,
        "Enrollment not found.",
    )
    assert_error(
        await client.delete(f"/students/{student}/courses/GHOST", headers=auth(student)), 404, "Enrollment not found."
    )


async def test_my_courses_lists_and_filters(client: httpx.AsyncClient, admin_headers, auth):
    open_course = await new_course(client, admin_headers, name="Open", lessons=3)
    full_course = await new_course(client, admin_headers, name="Full", capacity=0)
    student = email()
    assert (await client.get(f"/students/{student}/courses", headers=auth(student))).json()["data"] == []
    await sign_up(client, student, open_course, auth(student))
    await sign_up(client, student, full_course, auth(student), waitlist=True)
    everything = (await client.get(f"/students/{student}/courses", headers=auth(student))).json()
    assert {c["courseId"]: c["status"] for c in everything["data"]} == {
        open_course: "enrolled",
        full_course: "waitlisted",
    }
    assert everything["page"] == {"limit": 100, "nextCursor": None}
    only = await client.get(f"/students/{student}/courses?status=waitlisted", headers=auth(student))
    assert [c["courseId"] for c in only.json()["data"]] == [full_course]
    first = next(c for c in everything["data"] if c["courseId"] == open_course)
    assert (first["name"], first["lessons"]) == ("Open", 3) and "position" not in first
    assert_error(await client.get(f"/students/{student}/courses?status=maybe", headers=auth(student)), 400)


async def test_classmates_are_the_other_enrolled_students(client: httpx.AsyncClient, admin_headers, auth):
    course = await new_course(client, admin_headers, capacity=2)
    me, other, waiting = email("me"), email("other"), email("wait")
    for student in (me, other):
        await sign_up(client, student, course, auth(student))
    await sign_up(client, waiting, course, auth(waiting), waitlist=True)
    mates = await client.get(f"/students/{me}/courses/{course}/classmates", headers=auth(me))
    assert mates.json()["data"] == [{"studentId": other, "courseId": course}]
    assert_error(
        await client.get(f"/students/{waiting}/courses/{course}/classmates", headers=auth(waiting)),
        404,
        "Student is not signed up for this course.",
    )
