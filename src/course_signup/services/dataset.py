"""A realistic catalogue at scale, planned from a seed: courses, enrollments, waitlists and their audit events."""

from __future__ import annotations

import math
import random
from bisect import bisect
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate
from operator import itemgetter
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from course_signup.adapters import bulk
from course_signup.domain.models import STATUS_ENROLLED, STATUS_WAITLISTED, Course, CourseEvent, Enrollment, utcnow

DEPARTMENTS = (
    ("CS", "Computer Science"), ("MATH", "Mathematics"), ("PHYS", "Physics"), ("CHEM", "Chemistry"),
    ("BIO", "Biology"), ("ECON", "Economics"), ("HIST", "History"), ("ENG", "English Literature"),
    ("PSY", "Psychology"), ("PHIL", "Philosophy"), ("ART", "Art History"), ("MUS", "Music"),
    ("LING", "Linguistics"), ("SOC", "Sociology"), ("POL", "Political Science"), ("STAT", "Statistics"),
    ("EE", "Electrical Engineering"), ("ME", "Mechanical Engineering"), ("CE", "Civil Engineering"),
    ("GEO", "Geosciences"), ("ANTH", "Anthropology"), ("FREN", "French"), ("SPAN", "Spanish"),
    ("GER", "German"), ("JPN", "Japanese"), ("LAW", "Law"), ("MED", "Medicine"), ("NURS", "Nursing"),
    ("BUS", "Business"), ("ARCH", "Architecture"),
)  # fmt: skip
TOPICS = (
    "Foundations", "Methods", "Seminar", "Laboratory", "Theory", "Applications", "Workshop",
    "Special Topics", "Research Project", "Survey", "Advanced Topics", "Practicum",
)  # fmt: skip
LESSONS = (6, 8, 10, 12, 12, 14, 15, 20, 24, 24, 30)
DAY = 86_400.0
HISTORY = timedelta(days=90)  # a course open with no opening time has taken sign-ups this long

COURSE_COLUMNS = (
    "course_id", "name", "lessons", "capacity", "enrolled", "waitlisted", "waitlist_seq",
    "registration_opens_at", "registration_closes_at", "created_at", "updated_at",
)  # fmt: skip
ENROLLMENT_COLUMNS = ("student_id", "course_id", "status", "waitlist_seq", "created_at")
EVENT_COLUMNS = ("course_id", "type", "student_id", "at", "request_id")


class DatasetError(ValueError):
    """The sizes asked for cannot make a data set (e.g. more enrollments than students can hold)."""


@dataclass(frozen=True, slots=True)
class DatasetSize:
    courses: int = 10_000
    students: int = 200_000
    enrollments: int = 1_000_000

    def __post_init__(self) -> None:
        if self.courses < 1 or self.students < 1 or self.enrollments < 0:
            raise DatasetError("--courses and --students must be at least 1, --enrollments at least 0")
        if self.enrollments > self.students * self.courses:
            raise DatasetError(
                f"{self.enrollments} enrollments do not fit: {self.students} students"
                f" can take at most {self.students * self.courses} places in {self.courses} courses"
            )


@dataclass(frozen=True, slots=True)
class Dataset:
    """Rows in the column order of COURSE_COLUMNS and ENROLLMENT_COLUMNS; enrollments oldest first."""

    size: DatasetSize
    courses: list[tuple[Any, ...]]
    enrollments: list[tuple[Any, ...]]

    def events(self) -> Iterator[tuple[Any, ...]]:
        """One audit event per enrollment (EVENT_COLUMNS), as the sign-up that made it would have written."""
        for student_id, course_id, status, _seq, at in self.enrollments:
            yield course_id, status, student_id, at, None

    def tables(self) -> list[bulk.TableRows]:
        """What to write, parents first."""
        return [
            bulk.TableRows(Course.__table__, COURSE_COLUMNS, self.courses, len(self.courses)),
            bulk.TableRows(Enrollment.__table__, ENROLLMENT_COLUMNS, self.enrollments, len(self.enrollments)),
            bulk.TableRows(CourseEvent.__table__, EVENT_COLUMNS, self.events(), len(self.enrollments)),
        ]

    def summary(self) -> str:
        capacity, enrolled, waiting = (COURSE_COLUMNS.index(name) for name in ("capacity", "enrolled", "waitlisted"))
        full = sum(1 for c in self.courses if c[capacity] is not None and c[enrolled] == c[capacity])
        with_waitlist = sum(1 for c in self.courses if c[waiting])
        waitlisted = sum(c[waiting] for c in self.courses)
        students = len({row[0] for row in self.enrollments})
        return (
            f"{len(self.courses)} courses ({full} full, {with_waitlist} with a waitlist), {students} students with"
            f" {len(self.enrollments)} enrollments ({waitlisted} waitlisted) and {len(self.enrollments)} audit events"
        )


ProgressBar = Callable[[int], AbstractContextManager[bulk.Progress]]


async def generate(
    engine: AsyncEngine, *, size: DatasetSize, seed: int, progress: ProgressBar, now: datetime | None = None
) -> Dataset:
    """Fill a database that has no courses or enrollments with the planned data set, in one transaction.

    bulk.NotEmptyError if it has any; DatasetError if the sizes cannot make a data set. Both come
    before the progress bar, which counts the rows written (and first says "planning").
    """
    await bulk.ensure_empty(engine)  # at once, not after the planning
    rng = random.Random(seed)
    courses = _courses(rng, size, now or utcnow().replace(microsecond=0))
    with progress(size.courses + 2 * size.enrollments) as bar:
        bar.set_description("planning")
        data = _enroll(rng, size, courses)
        await bulk.load(engine, data.tables(), progress=bar)
    return data


def plan(size: DatasetSize, *, seed: int, now: datetime) -> Dataset:
    """The data set: the same for the same sizes and seed, its times relative to `now`.

    Registration windows vary (most open now, some closed, some not open yet: those have no
    sign-ups). Capacities scale with the demand per course (20-300 seats for most courses at the
    default size; some unlimited), and demand varies per course, so popular ones are full with a
    waitlist behind them. Each course's sign-ups fall inside its window; the first `capacity` of
    them got seats, the rest hold consecutive waitlist tickets. Students take from 1 (when there
    are enough enrollments) to about 3x the mean number of distinct courses.
    """
    rng = random.Random(seed)
    return _enroll(rng, size, _courses(rng, size, now))


def _courses(rng: random.Random, size: DatasetSize, now: datetime) -> list[_PlannedCourse]:
    """The catalogue, sized for the demand; DatasetError if the enrollments cannot fit in it."""
    courses = [_course(rng, course_id, name, now) for course_id, name in _catalogue(rng, size.courses)]
    open_ones = sum(1 for c in courses if c.has_sign_ups)
    if size.enrollments and not open_ones:
        raise DatasetError("no course has had its registration open: ask for more --courses")
    for course in courses:
        course.size_for(rng, size.enrollments / max(1, open_ones))
    if size.enrollments > size.students * _most_per_student(size, open_ones):
        raise DatasetError(
            f"{size.enrollments} enrollments do not fit: {size.students} students"
            f" in the {open_ones} courses open for registration"
        )
    return courses


def _most_per_student(size: DatasetSize, open_ones: int) -> int:
    return min(open_ones, max(1, math.ceil(3 * size.enrollments / size.students)))


def _enroll(rng: random.Random, size: DatasetSize, courses: list[_PlannedCourse]) -> Dataset:
    """Who signed up where and when, in time order (so the ids the database gives ascend with time)."""
    open_ones = [c for c in courses if c.has_sign_ups]
    loads = _student_loads(rng, size.students, size.enrollments, _most_per_student(size, len(open_ones)))
    members = _assign(rng, loads, [c.demand for c in open_ones])
    width = max(6, len(str(size.students)))
    emails = [f"s{n:0{width}d}@example.edu" for n in range(1, size.students + 1)]
    enrollments: list[tuple[Any, ...]] = []
    for course, students in zip(open_ones, members, strict=True):
        enrollments.extend(course.sign_ups(rng, [emails[s] for s in students]))
    enrollments.sort(key=itemgetter(4))
    return Dataset(size, [course.row() for course in courses], enrollments)


def _catalogue(rng: random.Random, count: int) -> Iterator[tuple[str, str]]:
    """Course ids like CS101-01: department, course number, section; sections share the name."""
    made = 0
    number = 100
    while True:
        for code, title in DEPARTMENTS:
            if rng.random() < 0.4:
                continue  # not every department teaches every number
            name = f"{title} {number}: {rng.choice(TOPICS)}"
            for section in range(1, 2 + min(3, int(rng.expovariate(1.2)))):
                yield f"{code}{number}-{section:02d}", name
                made += 1
                if made == count:
                    return
        number += 1


@dataclass(slots=True)
class _PlannedCourse:
    course_id: str
    name: str
    lessons: int
    opens: datetime | None
    closes: datetime | None
    window_start: datetime  # sign-ups happened from the opening (or HISTORY ago) ...
    window_end: datetime  # ... to the closing (or now); before window_start: not open yet
    capacity: int | None = None
    demand: float = 0.0
    enrolled: int = 0
    waitlisted: int = 0
    updated: datetime | None = None

    @property
    def created(self) -> datetime:
        return self.window_start - timedelta(days=30)

    @property
    def has_sign_ups(self) -> bool:
        return self.window_end > self.window_start

    def size_for(self, rng: random.Random, mean_demand: float) -> None:
        """Seats in proportion to the mean demand per course; demand around them, wider for lectures."""
        kind = rng.random()
        popularity = rng.lognormvariate(0, 0.5)
        if kind < 0.08:  # a lecture with no seat limit
            self.capacity = None
            self.demand = mean_demand * rng.uniform(2, 6) * popularity
            return
        factor = rng.uniform(0.2, 0.6) if kind < 0.28 else rng.uniform(0.6, 1.5) if kind < 0.85 else rng.uniform(1.5, 3)
        seats = max(5, round(mean_demand * factor))
        self.capacity = seats if seats < 20 else 5 * round(seats / 5)
        self.demand = self.capacity * popularity

    def sign_ups(self, rng: random.Random, students: list[str]) -> list[tuple[Any, ...]]:
        """The course's rows in arrival order: seats while they last, then waitlist tickets 1, 2, ..."""
        draw, start = rng.random, self.window_start
        span = (self.window_end - start).total_seconds()
        # Sorting random arrival moments shuffles the students and orders their times in one go.
        arrivals = sorted([(draw() * span, student) for student in students])
        seats = len(arrivals) if self.capacity is None else min(self.capacity, len(arrivals))
        self.enrolled, self.waitlisted = seats, len(arrivals) - seats
        rows = [(s, self.course_id, STATUS_ENROLLED, None, start + timedelta(seconds=t)) for t, s in arrivals[:seats]]
        rows += [
            (s, self.course_id, STATUS_WAITLISTED, ticket, start + timedelta(seconds=t))
            for ticket, (t, s) in enumerate(arrivals[seats:], 1)
        ]
        if rows:
            self.updated = rows[-1][4]
        return rows

    def row(self) -> tuple[Any, ...]:
        return (
            self.course_id, self.name, self.lessons, self.capacity, self.enrolled, self.waitlisted,
            self.waitlisted, self.opens, self.closes, self.created, self.updated or self.created,
        )  # fmt: skip


def _course(rng: random.Random, course_id: str, name: str, now: datetime) -> _PlannedCourse:
    """Mostly open now (some with no opening or closing time), some closed, some not open yet."""
    kind = rng.random()
    if kind < 0.15:  # closed: sign-ups over, waitlists may remain
        opens = now - timedelta(seconds=rng.uniform(60, 150) * DAY)
        closes: datetime | None = now - timedelta(seconds=rng.uniform(1, 50) * DAY)
    elif kind < 0.30:  # not open yet
        opens = now + timedelta(seconds=rng.uniform(1, 30) * DAY)
        closes = opens + timedelta(seconds=rng.uniform(14, 60) * DAY) if rng.random() < 0.8 else None
    else:
        opens = now - timedelta(seconds=rng.uniform(1, 60) * DAY) if rng.random() < 0.7 else None
        closes = now + timedelta(seconds=rng.uniform(1, 90) * DAY) if rng.random() < 0.7 else None
    window_end = min(closes, now) if closes else now
    return _PlannedCourse(course_id, name, rng.choice(LESSONS), opens, closes, opens or now - HISTORY, window_end)


def _student_loads(rng: random.Random, students: int, enrollments: int, most: int) -> list[int]:
    """How many courses each student takes: around the mean, at most `most`, adding up to `enrollments`."""
    weights = [min(3.0, rng.lognormvariate(0, 0.6)) for _ in range(students)]
    least = 1 if enrollments >= students else 0
    scale = (enrollments - least * students) / sum(weights)
    loads = [min(most, least + int(w * scale)) for w in weights]
    short = enrollments - sum(loads)
    order = list(range(students))
    while short:  # ends: enrollments <= students * most
        rng.shuffle(order)
        for s in order:
            if loads[s] < most:
                loads[s] += 1
                short -= 1
                if not short:
                    break
    return loads


def _assign(rng: random.Random, loads: list[int], demand: list[float]) -> list[list[int]]:
    """Each student's distinct courses, drawn by demand; returns each course's students."""
    draw, cumulative = rng.random, list(accumulate(demand))
    total, last = cumulative[-1], len(demand) - 1
    members: list[list[int]] = [[] for _ in demand]
    for student, load in enumerate(loads):
        chosen: set[int] = set()
        for _ in range(4):  # a course drawn twice is drawn again
            chosen.update(min(last, bisect(cumulative, draw() * total)) for _ in range(load - len(chosen)))
            if len(chosen) == load:
                break
        else:  # a heavy student among few courses: fill up evenly
            chosen.update(rng.sample([c for c in range(last + 1) if c not in chosen], load - len(chosen)))
        for course in sorted(chosen):
            members[course].append(student)
    return members
