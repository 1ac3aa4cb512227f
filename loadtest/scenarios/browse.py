"""browse: the realistic mix of a sign-up week.

Every user is one student (its own token). Mostly reads: the catalogue (GET /courses, now and
then page by page with a small limit and the cursor), one course, and the student's own courses;
now and then a sign-up, a drop, or a look at the classmates of a course the student is in.
Expected conflicts (already signed up, full, registration closed, already waitlisted) and stale
404s (dropping, or asking for the classmates of, a course another request already dropped) are
answers, not failures; 401/403/429/5xx and anything off-contract are failures.

Environment: LOADTEST_BROWSE_COURSES (default: the seven seeded courses),
LOADTEST_BROWSE_WAITLIST_PERCENT (share of sign-ups that ask for the waitlist, default 20).
"""

from __future__ import annotations

import itertools
import os
import random
import secrets

from locust import HttpUser, between, tag, task

from scenarios.common import (
    COURSE_FULL,
    ENROLLED_ALREADY,
    ENROLLMENT_NOT_FOUND,
    NOT_SIGNED_UP,
    REGISTRATION_CLOSED,
    TOKENS,
    WAITLISTED_ALREADY,
    env_int,
    env_list,
    judge,
    student_path,
)

COURSES = env_list("LOADTEST_BROWSE_COURSES", "CS101,CS102,CS103,CS104,CS105,MATH255,PHYS150")
WAITLIST_PERCENT = env_int("LOADTEST_BROWSE_WAITLIST_PERCENT", 20)
RUN_TAG = os.environ.get("LOADTEST_RUN_TAG") or secrets.token_hex(3)
_numbers = itertools.count(1)


class BrowseUser(HttpUser):
    """A student browsing the catalogue and managing their own courses."""

    scenario = "browse"
    wait_time = between(0.5, 2.5)

    def on_start(self) -> None:
        self.email = f"browse{next(_numbers):04d}.{RUN_TAG}@loadtest.example"
        self.me = f"/students/{student_path(self.email)}/courses"
        self.auth = TOKENS.headers(self.email)
        self.mine: dict[str, str] = {}  # courseId -> enrolled | waitlisted, as last seen

    @tag("browse")
    @task(30)
    def list_courses(self) -> None:
        if random.random() < 0.8:
            with self.client.get("/courses", name="GET /courses", catch_response=True) as response:
                judge(response)
            return
        # A paging client: small pages, following nextCursor to the end of the catalogue.
        params: dict[str, str | int] = {"limit": 3}
        for _ in range(50):
            with self.client.get(
                "/courses", params=params, name="GET /courses?limit=3&cursor", catch_response=True
            ) as response:
                body = judge(response)
            cursor = (body or {}).get("page", {}).get("nextCursor")
            if not cursor:
                return
            params = {"limit": 3, "cursor": cursor}

    @tag("browse")
    @task(8)
    def one_course(self) -> None:
        course = random.choice(COURSES)
        with self.client.get(f"/courses/{course}", name="GET /courses/[id]", catch_response=True) as response:
            body = judge(response)
            if body is not None and body["data"].get("courseId") != course.upper():
                response.failure(f"asked for {course}, got {body['data'].get('courseId')}")

    @tag("browse")
    @task(25)
    def my_courses(self) -> None:
        with self.client.get(
            self.me, headers=self.auth, name="GET /students/[me]/courses", catch_response=True
        ) as response:
            body = judge(response)
        if body is not None:
            self.mine = {row["courseId"]: row["status"] for row in body["data"]}

    @tag("browse")
    @task(6)
    def sign_up(self) -> None:
        choices = [c for c in COURSES if c.upper() not in self.mine] or COURSES
        course = random.choice(choices)
        waitlist = random.randrange(100) < WAITLIST_PERCENT
        with self.client.post(
            self.me,
            json={"courseId": course, "waitlist": waitlist},
            headers=self.auth,
            name="POST /students/[me]/courses",
            catch_response=True,
        ) as response:
            body = judge(
                response,
                ok=(200, 202),
                expected_errors={409: (ENROLLED_ALREADY, WAITLISTED_ALREADY, COURSE_FULL, REGISTRATION_CLOSED)},
            )
            if body is None:
                return
            if response.status_code in (200, 202):
                data = body["data"]
                if data.get("courseId") != course.upper():
                    response.failure(f"data.courseId is not {course.upper()}: {data!r}")
                    return
                self.mine[course.upper()] = data.get("status", "enrolled")
            elif body["data"] in (ENROLLED_ALREADY, WAITLISTED_ALREADY):
                self.mine.setdefault(course.upper(), "enrolled" if body["data"] == ENROLLED_ALREADY else "waitlisted")

    @tag("browse")
    @task(4)
    def drop(self) -> None:
        if not self.mine:
            return
        course = random.choice(sorted(self.mine))
        with self.client.delete(
            f"{self.me}/{course}",
            headers=self.auth,
            name="DELETE /students/[me]/courses/[id]",
            catch_response=True,
        ) as response:
            body = judge(response, expected_errors={404: (ENROLLMENT_NOT_FOUND,)})
        if body is not None:
            self.mine.pop(course, None)

    @tag("browse")
    @task(3)
    def classmates(self) -> None:
        enrolled = sorted(c for c, status in self.mine.items() if status == "enrolled")
        if not enrolled:
            return
        course = random.choice(enrolled)
        with self.client.get(
            f"{self.me}/{course}/classmates",
            headers=self.auth,
            name="GET /students/[me]/courses/[id]/classmates",
            catch_response=True,
        ) as response:
            body = judge(response, expected_errors={404: (NOT_SIGNED_UP,)})
            if body is not None and response.status_code == 200:
                others = [row.get("studentId") for row in body["data"]]
                if self.email in others:
                    response.failure("the student is listed among their own classmates")
