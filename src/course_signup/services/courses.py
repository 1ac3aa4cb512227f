"""Catalogue use cases: browse courses, and the registrar's create, change and delete."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from course_signup.adapters.admission_state import CourseConfig
from course_signup.adapters.cache import Cache
from course_signup.domain import rules
from course_signup.domain.errors import CourseExistsError, CourseHasEnrollmentsError
from course_signup.domain.events import EventType
from course_signup.domain.models import STATUS_ENROLLED, Course, utcnow
from course_signup.domain.pagination import Page, PageRequest, make_page
from course_signup.services.admission import Admitter, promote_waitlisted
from course_signup.services.queue_admission import QueueAdmissions, queued
from course_signup.services.unit_of_work import UnitOfWork

T = TypeVar("T")

ORIGINAL_CATALOGUE = (
    ("CS101", "Intro to Computer Science", 24),
    ("CS102", "Intro to Computer Science 2", 24),
    ("CS103", "Intro to Computer Science 3", 24),
    ("CS104", "Intro to Computer Science 4", 24),
    ("CS105", "Intro to Computer Science 5", 24),
    ("MATH255", "Calculus I", 10),
    ("PHYS150", "General Physics", 15),
)
CATALOGUE_FIELDS = ("name", "lessons", "capacity", "registration_opens_at", "registration_closes_at")


def new_course(course_id: str, *, at: datetime, **fields: Any) -> Course:
    """A course with empty counters, from catalogue fields (missing ones take their defaults)."""
    return Course(
        course_id=course_id,
        name=fields["name"],
        lessons=fields.get("lessons") or 0,
        capacity=fields.get("capacity"),
        enrolled=0,
        waitlisted=0,
        waitlist_seq=0,
        registration_opens_at=fields.get("registration_opens_at"),
        registration_closes_at=fields.get("registration_closes_at"),
        created_at=at,
        updated_at=at,
    )


async def list_courses(
    uow: UnitOfWork,
    cache: Cache,
    *,
    page: PageRequest,
    render: Callable[[Page[Course]], T],
    text: str | None = None,
    available: bool = False,
    admissions: Admitter | None = None,
) -> T:
    """One page of the catalogue, by course id, as `render` shapes it; cached until a write or the TTL.

    `text` keeps the courses whose id or name contains it, in any case; `available` those with a seat
    free whose registration window is open now (so a cached page lags a window by at most the TTL).
    """
    key = f"courses:{page.limit}:{page.after!r}:{available}:{text!r}"
    cached = await cache.get(key)
    if cached is not None:
        return cached
    async with uow.reading() as reads:
        rows = list(await reads.courses.list(page, text=text, available_at=utcnow() if available else None))
    await _live_seats(admissions, rows)
    # The rendered form is what is cached, so a hit costs no encoding at all.
    rendered = render(make_page(rows, page, key=lambda course: (course.course_id,)))
    await cache.put(key, rendered)
    return rendered


async def get_course(
    uow: UnitOfWork, cache: Cache, *, course_id: str, render: Callable[[Course], T], admissions: Admitter | None = None
) -> T:
    """One course as `render` shapes it; CourseNotFoundError if there is none."""
    key = f"course:{course_id}"
    cached = await cache.get(key)
    if cached is not None:
        return cached
    async with uow.reading() as reads:
        course = await reads.courses.get(course_id)
    await _live_seats(admissions, [course])
    rendered = render(course)
    await cache.put(key, rendered)
    return rendered


async def create_course(
    uow: UnitOfWork, cache: Cache, *, course_id: str, admissions: Admitter | None = None, **fields: Any
) -> Course:
    """Add a course to the catalogue; CourseExistsError if the id is taken."""
    rules.ensure_window_valid(fields.get("registration_opens_at"), fields.get("registration_closes_at"))
    course = new_course(course_id, at=utcnow(), **fields)
    async with uow:
        if not await uow.courses.add(course):
            raise CourseExistsError()
        await uow.commit()
    queue = queued(admissions)
    if queue is not None:
        await queue.course_created(uow, course)
    cache.forget_courses()
    return course


async def change_course(
    uow: UnitOfWork, cache: Cache, *, course_id: str, changes: dict[str, Any], admissions: Admitter | None = None
) -> Course:
    """Change catalogue fields; raising capacity promotes waitlisted students in order."""
    queue = queued(admissions)
    configured: list[CourseConfig] = []
    async with uow:
        try:
            course = await apply_changes(
                uow, course_id=course_id, changes=changes, at=utcnow(), queue=queue, configured=configured
            )
            await uow.commit()
        except BaseException:
            await put_back(queue, configured)
            raise
    if queue is not None:
        await queue.promote(course_id)
        await _live_seats(queue, [course])
    cache.forget_courses()
    return course


async def apply_changes(
    uow: UnitOfWork,
    *,
    course_id: str,
    changes: dict[str, Any],
    at: datetime,
    queue: QueueAdmissions | None = None,
    configured: list[CourseConfig] | None = None,
) -> Course:
    """Change a course inside the caller's transaction, promoting from the waitlist if seats opened.

    In queue mode (`queue`) the seats are counted in Redis: the capacity is checked and set there,
    atomically against the live count, while this transaction holds the course's row (the worker's
    writes to it wait). The settings it replaced go into `configured`, for the caller to `put_back`
    if its transaction fails; the caller promotes through the queue after the commit.
    """
    unknown = set(changes) - set(CATALOGUE_FIELDS)
    if unknown:
        raise ValueError(f"not catalogue fields: {sorted(unknown)}")
    course = await uow.courses.get(course_id, for_update=True)
    merged = {field: changes.get(field, getattr(course, field)) for field in CATALOGUE_FIELDS}
    rules.ensure_window_valid(merged["registration_opens_at"], merged["registration_closes_at"])
    if queue is not None:
        before = CourseConfig.of(course)
        await queue.configure(course, merged)
        if configured is not None:
            configured.append(before)
        if changes:
            await uow.courses.change(course_id, {**changes, "updated_at": at})
        return await uow.courses.get(course_id)
    rules.ensure_capacity_allowed(merged["capacity"], enrolled=course.enrolled)
    if changes:
        await uow.courses.change(course_id, {**changes, "updated_at": at})
    await promote_waitlisted(uow, course_id, at=at)
    return await uow.courses.get(course_id)


async def put_back(queue: QueueAdmissions | None, configured: list[CourseConfig]) -> None:
    """Queue mode: the admission state takes back the settings of changes whose transaction failed."""
    if queue is not None:
        for config in reversed(configured):
            await queue.restore_config(config)


async def _live_seats(admissions: Admitter | None, rows: list[Course]) -> None:
    """Queue mode: seat figures from the admission state, which is ahead of the worker's writes."""
    queue = queued(admissions)
    if queue is None or not rows:
        return
    live = await queue.live_counters(course.course_id for course in rows)
    for course in rows:
        if course.course_id in live:
            course.enrolled, course.waitlisted = live[course.course_id]


async def seed_catalogue(uow: UnitOfWork) -> list[str]:
    """Add the original service's seven courses where missing; returns the ids added."""
    now = utcnow()
    added = []
    async with uow:
        for course_id, name, lessons in ORIGINAL_CATALOGUE:
            if await uow.courses.add(new_course(course_id, name=name, lessons=lessons, at=now)):
                added.append(course_id)
        await uow.commit()
    return added


async def delete_course(
    uow: UnitOfWork, cache: Cache, *, course_id: str, force: bool, admissions: Admitter | None = None
) -> None:
    """Remove a course; with enrollments only when forced, recording each removal in the audit trail.

    In queue mode the admission state stops taking sign-ups for it first (refused there if it has
    students, counted live), and forgets it once the delete committed; its decisions still queued
    are skipped, or find no course and change nothing.
    """
    now = utcnow()
    queue = queued(admissions)
    if queue is not None:
        await queue.remove(course_id, force=force)
        force = True  # the live count said yes; the database's rows may only lag behind it
    try:
        await _delete_rows(uow, course_id=course_id, force=force, at=now)
    except BaseException:
        if queue is not None:
            await queue.keep(course_id)
        raise
    if queue is not None:
        await queue.removed(course_id)
    cache.forget_courses()


async def _delete_rows(uow: UnitOfWork, *, course_id: str, force: bool, at: datetime) -> None:
    now = at
    async with uow:
        course = await uow.courses.get(course_id, for_update=True)
        if (course.enrolled or course.waitlisted) and not force:
            raise CourseHasEnrollmentsError()
        removed = await uow.enrollments.remove_all(course_id)
        enrolled = [e.student_id for e in removed if e.status == STATUS_ENROLLED]
        waiting = [e.student_id for e in removed if e.status != STATUS_ENROLLED]
        await uow.events.add(course_id=course_id, type=EventType.DROPPED, student_ids=enrolled, at=now)
        await uow.events.add(course_id=course_id, type=EventType.LEFT_WAITLIST, student_ids=waiting, at=now)
        await uow.courses.remove(course_id)
        await uow.commit()
