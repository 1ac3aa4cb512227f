"""The registrar's registration-morning dashboard: the busiest courses of the last hour, minute by minute."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from course_signup.adapters.activity import ActivityRepository
from course_signup.domain import rules
from course_signup.services.unit_of_work import UnitOfWork

MINUTES = 60
BUSIEST = 6


@dataclass(frozen=True, slots=True)
class CourseActivity:
    course_id: str
    name: str
    capacity: int | None
    enrolled: int
    seats_left: int | None
    waitlisted: int
    sign_ups: list[int]  # per minute, oldest first; the last is the minute in progress


@dataclass(frozen=True, slots=True)
class Dashboard:
    since: datetime  # the start of the first minute
    sign_ups: list[int]  # every course's, per minute
    courses: list[CourseActivity]  # the busiest, most sign-ups first


async def registration_morning(uow: UnitOfWork, *, at: datetime, busiest: int = BUSIEST) -> Dashboard:
    """Sign-ups per minute over the last hour, in total and for the busiest courses, with their seats."""
    this_minute = at.replace(second=0, microsecond=0)
    since = this_minute - timedelta(minutes=MINUTES - 1)
    first_minute = int(since.timestamp()) // 60
    per_course: dict[str, list[int]] = defaultdict(lambda: [0] * MINUTES)
    async with uow.reading() as reads:
        activity = ActivityRepository(reads.events.session)  # the reading connection
        for course_id, minute, count in await activity.sign_ups_per_minute(since):
            index = int(minute) - first_minute
            if 0 <= index < MINUTES:
                per_course[course_id][index] += count
        ranked = sorted(per_course, key=lambda course_id: (-sum(per_course[course_id]), course_id))[:busiest]
        rows = {row.course_id: row for row in await activity.courses(ranked)}
    total = [sum(minutes[i] for minutes in per_course.values()) for i in range(MINUTES)]
    courses = [
        CourseActivity(
            course_id=row.course_id,
            name=row.name,
            capacity=row.capacity,
            enrolled=row.enrolled,
            seats_left=rules.seats_left(row.capacity, row.enrolled),
            waitlisted=row.waitlisted,
            sign_ups=per_course[row.course_id],
        )
        for row in (rows[course_id] for course_id in ranked if course_id in rows)  # deleted ones drop out
    ]
    return Dashboard(since=since, sign_ups=total, courses=courses)
