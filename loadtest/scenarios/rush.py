"""rush: N students race for the K seats of one new course.

At test start an admin token creates a fresh course RUSH-<time>-<random> of capacity K
(POST /courses). Every Locust user is one student (N = the number of users, -u) and sends exactly
one sign-up; all of them wait at a barrier until the last user has spawned, then fire together.
Each answer must be 200 (enrolled) or 409 "Course is full.".

At test stop it checks, and prints one PASS/FAIL line (exit code 1 on FAIL):
  * every one of the N students got an answer: exactly K times 200, N-K times 409 "Course is full."
    (K = min(capacity, N));
  * GET /courses/{id}: enrolled == K, seatsLeft == capacity-K, waitlisted == 0;
  * the admin roster GET /courses/{id}/students, read page by page with the cursor, lists exactly
    K enrolled students, no one twice, and they are exactly the students who got 200.

Run it in one Locust process (no --processes / workers): the answer tally lives in this process.

Environment: LOADTEST_RUSH_CAPACITY (K, default 50), LOADTEST_RUSH_EXPECT (override the expected
enrolled count, to see the check fail), LOADTEST_RUSH_BARRIER_TIMEOUT (s, default 60),
LOADTEST_RUSH_CLEANUP=1 (delete the course after a passing check), LOADTEST_RUSH_COURSE (course id
to create instead of a generated one), LOADTEST_RUSH_ROSTER_PAGE (roster page size, default 25).
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import gevent
import requests
from gevent.event import Event
from locust import HttpUser, constant, events, tag, task
from locust.exception import StopUser

from scenarios.common import COURSE_FULL, TOKENS, body_of, env_int, judge, log, student_path, write_verdict

SIGN_UP = "POST /students/[rush]/courses"


@dataclass
class RushState:
    """One run's course and answers (reset at every test start)."""

    course_id: str = ""
    run_tag: str = ""
    capacity: int = 0
    setup_error: str | None = None
    students: int | None = None  # N, known once every user has spawned
    go: Event = field(default_factory=Event)
    numbers: Any = field(default_factory=lambda: itertools.count(1))
    answers: Counter[str] = field(default_factory=Counter)
    enrolled_by_answer: set[str] = field(default_factory=set)
    unexpected: list[str] = field(default_factory=list)
    answered: int = 0
    verdict: dict[str, Any] | None = None


STATE = RushState()


def _selected(environment: Any) -> bool:
    return any(getattr(cls, "scenario", None) == "rush" for cls in environment.user_classes)


def _admin(method: str, url: str, **kwargs: Any) -> requests.Response:
    """Set-up and verification calls: outside Locust's statistics, with the admin token."""
    return requests.request(method, url, headers=TOKENS.admin_headers(), timeout=30, **kwargs)


@events.test_start.add_listener
def _create_course(environment: Any, **_: Any) -> None:
    global STATE
    if not _selected(environment):
        return
    STATE = RushState(capacity=env_int("LOADTEST_RUSH_CAPACITY", 50), run_tag=secrets.token_hex(3))
    generated = f"RUSH-{int(time.time())}-{STATE.run_tag.upper()}"
    STATE.course_id = os.environ.get("LOADTEST_RUSH_COURSE", "").strip().upper() or generated
    host = environment.host.rstrip("/")
    try:
        TOKENS.check()
        response = _admin(
            "POST",
            f"{host}/courses",
            json={"courseId": STATE.course_id, "name": "Load test rush", "lessons": 1, "capacity": STATE.capacity},
        )
        body = body_of(response)
        if response.status_code != 201 or body is None or body["data"].get("capacity") != STATE.capacity:
            raise RuntimeError(f"POST /courses answered {response.status_code}: {response.text[:300]}")
    except (RuntimeError, requests.RequestException, SystemExit) as exc:
        STATE.setup_error = f"could not create the rush course {STATE.course_id}: {exc}"
        log.error("rush: %s", STATE.setup_error)
        STATE.go.set()
        environment.process_exit_code = 1
        gevent.spawn_later(0.1, environment.runner.quit)
        return
    log.info("rush: created %s with capacity %d at %s", STATE.course_id, STATE.capacity, host)


@events.spawning_complete.add_listener
def _release(user_count: int, **_: Any) -> None:
    if STATE.course_id and not STATE.go.is_set():
        STATE.students = user_count
        log.info("rush: %d students spawned, releasing them all at once", user_count)
        STATE.go.set()


class RushUser(HttpUser):
    """One student, one sign-up, fired together with everyone else's."""

    scenario = "rush"
    wait_time = constant(0)

    def on_start(self) -> None:
        self.email = f"rush{next(STATE.numbers):05d}.{STATE.run_tag}@loadtest.example"
        self.auth = TOKENS.headers(self.email)  # minted before the barrier, so the rush is only HTTP

    @tag("rush")
    @task
    def sign_up_once(self) -> None:
        if not STATE.go.wait(timeout=env_int("LOADTEST_RUSH_BARRIER_TIMEOUT", 60)):
            log.warning("rush: barrier timed out before every user spawned; signing up anyway")
        if STATE.setup_error:
            raise StopUser()
        with self.client.post(
            f"/students/{student_path(self.email)}/courses",
            json={"courseId": STATE.course_id},
            headers=self.auth,
            name=SIGN_UP,
            catch_response=True,
        ) as response:
            body = judge(response, ok=(200,), expected_errors={409: (COURSE_FULL,)})
            if body is not None and response.status_code == 200 and body["data"].get("courseId") != STATE.course_id:
                response.failure(f"data.courseId is not {STATE.course_id}: {body['data']!r}")
                body = None
            self._tally(response.status_code, body, response.text)
        if STATE.students is not None and STATE.answered >= STATE.students:
            log.info("rush: all %d students answered; stopping", STATE.answered)
            gevent.spawn_later(0.2, self.environment.runner.quit)
        raise StopUser()  # one request per student

    def _tally(self, status: int, body: dict[str, Any] | None, text: str) -> None:
        STATE.answered += 1
        if body is None:
            STATE.answers["unexpected"] += 1
            STATE.unexpected.append(f"{self.email}: HTTP {status} {text[:160]}")
        elif status == 200:
            STATE.answers["enrolled"] += 1
            STATE.enrolled_by_answer.add(self.email)
        else:
            STATE.answers["full"] += 1


def _roster(host: str, course_id: str) -> tuple[list[dict[str, Any]], int]:
    """Every roster row, following nextCursor; and the number of pages read."""
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    for pages in range(1, 10_001):
        params: dict[str, Any] = {"limit": env_int("LOADTEST_RUSH_ROSTER_PAGE", 25)}
        if cursor:
            params["cursor"] = cursor
        response = _admin("GET", f"{host}/courses/{course_id}/students", params=params)
        body = body_of(response)
        if response.status_code != 200 or body is None:
            status = response.status_code
            raise RuntimeError(f"GET /courses/{course_id}/students answered {status}: {response.text[:200]}")
        rows.extend(body["data"])
        cursor = body.get("page", {}).get("nextCursor")
        if not cursor:
            return rows, pages
    raise RuntimeError("the roster's cursor never ended")


def _verify(host: str) -> tuple[bool, list[str], dict[str, Any]]:
    problems: list[str] = []
    n = STATE.students
    k = min(STATE.capacity, n if n is not None else STATE.capacity)
    expected = env_int("LOADTEST_RUSH_EXPECT", k)
    figures: dict[str, Any] = {
        "course": STATE.course_id,
        "capacity": STATE.capacity,
        "students": n,
        "expected_enrolled": expected,
        "answered": STATE.answered,
        "answered_200": STATE.answers["enrolled"],
        "answered_409_full": STATE.answers["full"],
        "answered_other": STATE.answers["unexpected"],
    }
    if n is None:
        problems.append("the run stopped before every student had spawned (raise --run-time)")
    elif STATE.answered != n:
        problems.append(f"{STATE.answered} of {n} students got an answer (raise --run-time)")
    if STATE.answers["enrolled"] != expected:
        problems.append(f"{STATE.answers['enrolled']} answers were 200, expected {expected}")
    if n is not None and STATE.answers["full"] != n - expected:
        problems.append(f"{STATE.answers['full']} answers were 409 {COURSE_FULL!r}, expected {n - expected}")
    if STATE.unexpected:
        problems.append(f"{len(STATE.unexpected)} other answers, e.g. {STATE.unexpected[:3]}")

    response = _admin("GET", f"{host}/courses/{STATE.course_id}")
    body = body_of(response)
    if response.status_code != 200 or body is None:
        problems.append(f"GET /courses/{STATE.course_id} answered {response.status_code}")
    else:
        course = body["data"]
        figures.update(enrolled=course.get("enrolled"), seats_left=course.get("seatsLeft"))
        if course.get("enrolled") != expected:
            problems.append(f"GET /courses/{STATE.course_id}: enrolled={course.get('enrolled')}, expected {expected}")
        if course.get("seatsLeft") != STATE.capacity - expected:
            problems.append(f"seatsLeft={course.get('seatsLeft')}, expected {STATE.capacity - expected}")
        if course.get("waitlisted") != 0:
            problems.append(f"waitlisted={course.get('waitlisted')}, expected 0")

    rows, pages = _roster(host, STATE.course_id)
    roster = [row["studentId"] for row in rows if row.get("status") == "enrolled"]
    figures.update(roster_enrolled=len(roster), roster_pages=pages)
    if len(roster) != expected:
        problems.append(f"the roster lists {len(roster)} enrolled students, expected {expected}")
    if len(set(roster)) != len(roster):
        problems.append("the roster lists a student twice")
    if len(rows) != len(roster):
        problems.append(f"the roster has {len(rows) - len(roster)} rows that are not enrolled")
    if set(roster) != STATE.enrolled_by_answer:
        missing = STATE.enrolled_by_answer - set(roster)
        extra = set(roster) - STATE.enrolled_by_answer
        problems.append(f"roster vs 200 answers: {len(missing)} answered 200 but missing, {len(extra)} never told")
    return not problems, problems, figures


@events.test_stop.add_listener
def _check(environment: Any, **_: Any) -> None:
    if not _selected(environment) or not STATE.course_id or STATE.verdict is not None:
        return
    host = environment.host.rstrip("/")
    if STATE.setup_error:
        passed, problems, figures = False, [STATE.setup_error], {"course": STATE.course_id}
    else:
        try:
            passed, problems, figures = _verify(host)
        except (RuntimeError, requests.RequestException) as exc:
            passed, problems, figures = False, [f"could not verify: {exc}"], {"course": STATE.course_id}
    STATE.verdict = {"scenario": "rush", "passed": passed, "problems": problems, **figures}
    write_verdict("rush", STATE.verdict)
    if not passed:
        environment.process_exit_code = 1
    elif os.environ.get("LOADTEST_RUSH_CLEANUP") == "1":
        _admin("DELETE", f"{host}/courses/{STATE.course_id}", params={"force": "true"})
    _announce()


@events.quit.add_listener
def _repeat_verdict(**_: Any) -> None:
    if STATE.verdict is not None:
        _announce()  # again, after Locust's summary tables


def _announce() -> None:
    v = STATE.verdict or {}
    if v.get("passed"):
        line = (
            f"RUSH PASS: {v['course']}: {v['students']} students, capacity {v['capacity']}: "
            f"{v['answered_200']} x 200, {v['answered_409_full']} x 409 {COURSE_FULL!r}; "
            f"course enrolled={v['enrolled']}, roster={v['roster_enrolled']} in {v['roster_pages']} page(s) "
            f"(expected {v['expected_enrolled']})"
        )
    else:
        line = f"RUSH FAIL: {v.get('course')}: " + "; ".join(v.get("problems", []))
    print(line, flush=True)
