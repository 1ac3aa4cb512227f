"""The registrar portal's endpoints: POST /course-imports (the rules of `import-courses`) and GET /dashboard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from course_signup.domain.models import CourseEvent
from course_signup.settings import Settings
from tests.api.helpers import assert_error, new_course, sign_up
from tests.conftest import email, unique

# --- CSV import ----------------------------------------------------------------------------------


async def test_a_good_file_adds_and_changes_courses_in_one_go(client: httpx.AsyncClient, admin_headers):
    existing = await new_course(client, admin_headers, capacity=5)
    fresh = unique()
    text = (
        "\ufeffcourseId,name,lessons,capacity,registrationOpensAt\r\n"
        f'{existing},"Renamed, with a comma",3,10,\r\n'
        f"{fresh.lower()},Brand new,,,2026-11-25T08:00:00Z\r\n"
    )
    answer = await client.post("/course-imports", json={"csv": text}, headers=admin_headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == {"status": "imported", "added": 1, "changed": 1}
    assert answer.headers["cache-control"] == "no-store"
    changed = (await client.get(f"/courses/{existing}")).json()["data"]
    assert (changed["name"], changed["lessons"], changed["capacity"]) == ("Renamed, with a comma", 3, 10)
    added = (await client.get(f"/courses/{fresh}")).json()["data"]
    assert (added["lessons"], added["capacity"], added["registrationOpensAt"]) == (0, None, "2026-11-25T08:00:00Z")


async def test_every_bad_line_is_named_by_its_number_and_nothing_is_imported(client: httpx.AsyncClient, admin_headers):
    good, also_good = unique(), unique()
    text = (
        "courseId,name,capacity,registrationOpensAt,registrationClosesAt\n"
        f"{good},Fine,10,,\n"
        f'{also_good},"A name\nover two lines",,,\n'  # a quoted cell spans lines 3-4, as in the file
        "bad id!,Broken,1,,\n"
        f"{unique()},Negative,-1,,\n"
        f"{unique()},Backwards,,2026-11-25T08:00:00Z,2026-11-24T08:00:00Z\n"
    )
    answer = await client.post("/course-imports", json={"csv": text}, headers=admin_headers)
    assert_error(answer, 400)
    sentence = answer.json()["data"]
    assert sentence.startswith("Nothing was imported: line 5: ")
    assert "; line 6: capacity must be a whole number >= 0, not '-1'; line 7: " in sentence
    assert "line 2" not in sentence and "line 3" not in sentence
    for course_id in (good, also_good):
        assert_error(await client.get(f"/courses/{course_id}"), 404)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "line 1: missing column(s) courseId, name"),
        ("name,capacity\nX,1\n", "line 1: missing column(s) courseId"),
        ("courseId,name\nA1,\n", "line 2: name must be 1-200 characters"),
        ("courseId,name\nA1,One\na1,Again\n", "line 3: courseId A1 appears twice"),
    ],
)
async def test_the_cli_rules_apply(client: httpx.AsyncClient, admin_headers, text: str, problem: str):
    answer = await client.post("/course-imports", json={"csv": text}, headers=admin_headers)
    assert_error(answer, 400, f"Nothing was imported: {problem}.")


async def test_a_line_that_clashes_with_enrollments_is_a_conflict_and_rolls_everything_back(
    client: httpx.AsyncClient, admin_headers, auth
):
    full = await new_course(client, admin_headers, capacity=2)
    student = email()
    assert (await sign_up(client, student, full, auth(student))).status_code == 200
    fresh = unique()
    text = f"courseId,name,capacity\n{fresh},New,4\n{full},Smaller,0\n"
    answer = await client.post("/course-imports", json={"csv": text}, headers=admin_headers)
    assert_error(answer, 409, f"Nothing was imported: line 3: {full}: Capacity is below current enrollment.")
    assert_error(await client.get(f"/courses/{fresh}"), 404)
    assert (await client.get(f"/courses/{full}")).json()["data"]["capacity"] == 2


async def test_import_is_for_registrars_and_takes_json(client: httpx.AsyncClient, auth):
    body = {"csv": "courseId,name\nX1,One\n"}
    assert_error(await client.post("/course-imports", json=body), 401)
    student = email()
    assert_error(await client.post("/course-imports", json=body, headers=auth(student)), 403)
    text_body = await client.post("/course-imports", content=body["csv"], headers={"Content-Type": "text/csv"})
    assert_error(text_body, 415)
    assert_error(await client.get("/course-imports"), 405)


async def test_a_file_above_64_kib_is_refused_whole(client: httpx.AsyncClient, admin_headers):
    text = "courseId,name\n" + "".join(f"L{i:06d},{'x' * 60}\n" for i in range(1200))
    assert_error(await client.post("/course-imports", json={"csv": text}, headers=admin_headers), 413)


# --- dashboard -----------------------------------------------------------------------------------


async def add_events(settings: Settings, course_id: str, *moments: datetime, type: str = "enrolled") -> None:
    """Audit events written straight into the table, at chosen times (the use cases stamp them now)."""
    engine = create_async_engine(settings.sqlalchemy_url)
    async with engine.begin() as connection:
        rows = [{"course_id": course_id, "type": type, "student_id": email(), "at": at} for at in moments]
        await connection.execute(insert(CourseEvent), rows)
    await engine.dispose()


async def test_the_dashboard_counts_sign_ups_per_minute_for_the_busiest_courses(
    client: httpx.AsyncClient, admin_headers, auth, settings: Settings
):
    busy = await new_course(client, admin_headers, capacity=2)
    quiet = await new_course(client, admin_headers)
    idle = await new_course(client, admin_headers)
    now = datetime.now(UTC)
    # Earlier events first, as the service writes them: before the hour (left out), ten minutes ago, and
    # an event that is no sign-up (left out).
    await add_events(
        settings, quiet, now - timedelta(hours=2), now - timedelta(minutes=61), now - timedelta(minutes=10)
    )
    await add_events(settings, quiet, now - timedelta(minutes=9), type="dropped")
    students = [email() for _ in range(3)]
    for student in students:
        await sign_up(client, student, busy, auth(student), waitlist=True)  # two seats, one waitlisted
    await sign_up(client, students[0], quiet, auth(students[0]))
    await client.delete(f"/students/{students[0]}/courses/{busy}", headers=auth(students[0]))  # promotes: not counted

    answer = await client.get("/dashboard", headers=admin_headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    data = answer.json()["data"]
    since = datetime.fromisoformat(data["since"].replace("Z", "+00:00"))
    assert since.second == 0 and timedelta(minutes=59) <= now - since < timedelta(minutes=60)
    assert [course["courseId"] for course in data["courses"]] == [busy, quiet]  # busiest first; idle has none
    first, second = data["courses"]
    assert (first["capacity"], first["enrolled"], first["seatsLeft"], first["waitlisted"]) == (2, 2, 0, 0)
    assert len(first["signUps"]) == 60 and sum(first["signUps"]) == 3
    assert sum(first["signUps"][-2:]) == 3  # this minute, or the one before if it just turned
    assert sum(second["signUps"]) == 2
    assert second["signUps"][49] + second["signUps"][48] == 1  # ten minutes ago (11 if the minute just turned)
    assert sum(data["signUps"]) == 5 and len(data["signUps"]) == 60
    assert data["requestsServed"] > 0
    assert idle not in {course["courseId"] for course in data["courses"]}


async def test_the_dashboard_is_empty_without_recent_sign_ups(
    client: httpx.AsyncClient, admin_headers, settings: Settings
):
    course = await new_course(client, admin_headers)
    await add_events(settings, course, *(datetime.now(UTC) - timedelta(hours=2, minutes=i) for i in range(5)))
    data = (await client.get("/dashboard", headers=admin_headers)).json()["data"]
    assert data["courses"] == [] and sum(data["signUps"]) == 0


async def test_the_dashboard_is_for_registrars(client: httpx.AsyncClient, auth):
    assert_error(await client.get("/dashboard"), 401)
    assert_error(await client.get("/dashboard", headers=auth(email())), 403)
    assert_error(await client.post("/dashboard"), 405)
