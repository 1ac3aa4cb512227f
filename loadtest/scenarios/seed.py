"""seed: the original service's k6 load test, with its checks fixed.

10 users; each iteration picks one of ten student e-mails and one of CS101-CS104 (the seeded
catalogue), signs up, and pauses 0-3 s. A 200 must name the course under `data.courseId` (the old
test read it at the top level); a 409 "Student has already signed up for this course." is the
expected answer to a repeat (the old test counted it as a failure). Anything else fails.

Environment: LOADTEST_SEED_STUDENTS (default 10), LOADTEST_SEED_COURSES (default CS101,CS102,CS103,CS104),
LOADTEST_SEED_DOMAIN (default loadtest.example).
"""

from __future__ import annotations

import os
import random

from locust import HttpUser, between, tag, task

from scenarios.common import ENROLLED_ALREADY, TOKENS, env_int, env_list, judge, student_path

STUDENTS = [
    f"student{n}@{os.environ.get('LOADTEST_SEED_DOMAIN', 'loadtest.example')}"
    for n in range(1, env_int("LOADTEST_SEED_STUDENTS", 10) + 1)
]
COURSES = env_list("LOADTEST_SEED_COURSES", "CS101,CS102,CS103,CS104")


class SeedUser(HttpUser):
    """One virtual user of the original test (run it with -u 10)."""

    scenario = "seed"
    wait_time = between(0, 3)

    @tag("seed")
    @task
    def sign_up(self) -> None:
        email, course = random.choice(STUDENTS), random.choice(COURSES)
        with self.client.post(
            f"/students/{student_path(email)}/courses",
            json={"courseId": course},
            headers=TOKENS.headers(email),
            name="POST /students/[email]/courses",
            catch_response=True,
        ) as response:
            body = judge(response, ok=(200,), expected_errors={409: (ENROLLED_ALREADY,)})
            if body is None or response.status_code != 200:
                return
            data = body["data"]
            if not isinstance(data, dict) or data.get("courseId") != course.upper():
                response.failure(f"data.courseId is not {course.upper()}: {data!r}")
            elif data.get("studentId") != email.lower() or data.get("status") != "enrolled":
                response.failure(f"unexpected enrollment for {email}: {data!r}")
