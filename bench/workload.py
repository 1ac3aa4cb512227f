"""The bench's data: the hot and spread courses, my-courses' students, and the request files the load reads."""

from __future__ import annotations

import random
from pathlib import Path

import harness
from stack import Stack

HOT = "1000"  # course ids are digits so that pgbench (numeric variables only) can name them too
FIRST_SPREAD = 1001
MY_STUDENTS = 1000
MY_COURSES_EACH = 3
RUSH_STUDENTS = 2000  # the rush scenario: this many distinct students at once ...
RUSH_SEATS = (50, 500)  # ... on a course with this many seats, then on one with that many


class Workload:
    """Courses and enrollments in the database, and `path<TAB>token<TAB>body` files for the load generator."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.spread_ids = [str(FIRST_SPREAD + i) for i in range(stack.args.spread_courses)]
        self.student_serial = 0

    def create_courses(self, rush_targets: list[str]) -> None:
        """The hot and spread courses (unlimited: they never fill), and a rush course per target and size."""
        admin = self.stack.tokens.issue("bench-admin@bench.example", admin=True, ttl_seconds=24 * 3600)
        courses: list[tuple[str, str, int | None]] = [(HOT, "Hot course (bench)", None)]
        courses += [(cid, f"Spread course {cid} (bench)", None) for cid in self.spread_ids]
        courses += [(rush_course(target, seats), f"Rush course, {seats} seats (bench)", seats)
                    for target in rush_targets for seats in RUSH_SEATS]  # fmt: skip
        for course_id, name, capacity in courses:
            status, body = harness.http_request(
                self.stack.args.port, "POST", "/courses",
                {"courseId": course_id, "name": name, "lessons": 12, "capacity": capacity}, token=admin,
            )  # fmt: skip
            if status != 201:
                raise RuntimeError(f"POST /courses {course_id}: {status} {body}")

    def seed_my_courses(self) -> None:
        """1000 students with three enrollments each, written directly (counters kept consistent)."""
        n = len(self.spread_ids)
        self.stack.psql(
            f"""
            INSERT INTO enrollments (student_id, course_id, status, waitlist_seq, created_at)
            SELECT 'm' || s || '@bench.example', ({FIRST_SPREAD} + ((s * 7 + k * 37) % {n}))::text,
                   'enrolled', NULL, now()
            FROM generate_series(0, {MY_STUDENTS - 1}) s, generate_series(0, {MY_COURSES_EACH - 1}) k;
            UPDATE courses c SET enrolled = (SELECT count(*) FROM enrollments e WHERE e.course_id = c.course_id);
            ANALYZE;
            """
        )

    def lines_file(self, name: str, lines: list[tuple[str, str, str]]) -> Path:
        return harness.write_lines(self.stack.tmp / f"{name}.lines", lines)

    def signup_lines(self, case: str, count: int) -> Path:
        """`count` sign-ups, each by a new student with a token of its own."""
        rng = random.Random(self.student_serial)
        lines = []
        for _ in range(count):
            self.student_serial += 1
            email = f"u{self.student_serial}@bench.example"
            course = HOT if case == "hot" else rng.choice(self.spread_ids)
            lines.append((f"/students/{email}/courses", self.stack.tokens.issue(email, ttl_seconds=3 * 3600),
                          f'{{"courseId":"{course}"}}'))  # fmt: skip
        return self.lines_file(f"signup-{case}-{self.student_serial}", lines)

    def rush_requests(self, course_id: str) -> list[tuple[str, str, str]]:
        """RUSH_STUDENTS sign-ups to one course, each by a new student (`r<n>@bench.example`), waitlist false."""
        lines = []
        for _ in range(RUSH_STUDENTS):
            self.student_serial += 1
            email = f"r{self.student_serial}@bench.example"
            lines.append((f"/students/{email}/courses", self.stack.tokens.issue(email, ttl_seconds=3 * 3600),
                          f'{{"courseId":"{course_id}","waitlist":false}}'))  # fmt: skip
        return lines

    def read_lines(self) -> dict[str, Path]:
        my = []
        for s in range(MY_STUDENTS):
            email = f"m{s}@bench.example"
            my.append((f"/students/{email}/courses", self.stack.tokens.issue(email, ttl_seconds=3 * 3600), "-"))
        return {
            "courses": self.lines_file("courses", [("/courses", "-", "-")]),
            "my-courses": self.lines_file("my-courses", my),
            "hello": self.lines_file("hello", [("/", "-", "-")]),
        }


def rush_course(target: str, seats: int) -> str:
    """The course a target's rush of `seats` seats signs up for, e.g. RUSH50-SERVICE."""
    return f"RUSH{seats}-{target.upper()}"
