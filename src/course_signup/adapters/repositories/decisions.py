"""Queue mode in PostgreSQL: the worker's writes of decided sign-ups and drops, and the state they load from.

Each decision message carries its course's sequence number; `admission_progress` keeps, per course,
the newest one written. A batch is written in one transaction that first locks its courses' rows
(the order every writer of a course follows), so a redelivered message at or below that number
changes nothing, and nothing is written twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from course_signup.adapters.admission_state import CourseConfig, CourseState
from course_signup.domain.events import EventType
from course_signup.domain.models import (
    STATUS_ENROLLED,
    STATUS_WAITLISTED,
    AdmissionProgress,
    Course,
    CourseEvent,
    Enrollment,
)


@dataclass(slots=True)
class _CourseWrites:
    enrolled: int = 0
    waitlisted: int = 0
    ticket: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


def _at(message: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(message["at"])


class DecisionRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def applied_seq(self, course_id: str) -> int:
        query = select(AdmissionProgress.applied_seq).where(AdmissionProgress.course_id == course_id)
        return int((await self.connection.execute(query)).scalar_one_or_none() or 0)

    async def apply(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write the decisions not written yet, in sequence order per course; returns those written."""
        by_course: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for message in messages:
            by_course[message["c"]].append(message)
        ids = sorted(by_course)
        existing = set(
            (
                await self.connection.execute(
                    select(Course.course_id)
                    .where(Course.course_id.in_(ids))
                    .order_by(Course.course_id)
                    .with_for_update()
                )
            ).scalars()
        )
        progress = {
            row.course_id: row.applied_seq
            for row in await self.connection.execute(
                select(AdmissionProgress.course_id, AdmissionProgress.applied_seq).where(
                    AdmissionProgress.course_id.in_(ids)
                )
            )
        }
        written: list[dict[str, Any]] = []
        newest: dict[str, int] = {}
        for course_id in ids:
            fresh = sorted(
                (m for m in by_course[course_id] if m["s"] > progress.get(course_id, 0)), key=lambda m: m["s"]
            )
            if not fresh:
                continue
            newest[course_id] = fresh[-1]["s"]
            if course_id in existing:  # a force-deleted course's late decisions have nothing to change
                await self._apply_course(course_id, fresh)
            written.extend(fresh)
        if newest:
            statement = pg_insert(AdmissionProgress).values(
                [{"course_id": c, "applied_seq": s} for c, s in newest.items()]
            )
            await self.connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[AdmissionProgress.course_id],
                    set_={"applied_seq": func.greatest(AdmissionProgress.applied_seq, statement.excluded.applied_seq)},
                )
            )
        return written

    async def _apply_course(self, course_id: str, messages: list[dict[str, Any]]) -> None:
        writes = _CourseWrites()
        sign_ups: list[dict[str, Any]] = []
        for message in messages:
            if message["t"] == "signup":
                sign_ups.append(message)
                continue
            await self._insert(course_id, sign_ups, writes)  # in order: sign-ups decided before this
            sign_ups = []
            if message["t"] == "drop":
                await self._remove(course_id, message, writes)
            await self._promote(course_id, message, writes)
        await self._insert(course_id, sign_ups, writes)
        if writes.events:
            await self.connection.execute(CourseEvent.__table__.insert(), writes.events)
        if writes.enrolled or writes.waitlisted or writes.ticket:
            await self.connection.execute(
                update(Course)
                .where(Course.course_id == course_id)
                .values(
                    enrolled=Course.enrolled + writes.enrolled,
                    waitlisted=Course.waitlisted + writes.waitlisted,
                    waitlist_seq=func.greatest(Course.waitlist_seq, writes.ticket),
                    updated_at=func.now(),
                )
            )

    async def _insert(self, course_id: str, sign_ups: list[dict[str, Any]], writes: _CourseWrites) -> None:
        """Consecutive sign-ups as one statement; a row that exists already is left alone."""
        if not sign_ups:
            return
        rows = [
            {
                "student_id": m["st"],
                "course_id": course_id,
                "status": m["v"],
                "waitlist_seq": m["tk"] if m["v"] == STATUS_WAITLISTED else None,
                "created_at": _at(m),
            }
            for m in sign_ups
        ]
        inserted = set(
            (
                await self.connection.execute(
                    pg_insert(Enrollment)
                    .values(rows)
                    .on_conflict_do_nothing(index_elements=[Enrollment.course_id, Enrollment.student_id])
                    .returning(Enrollment.student_id)
                )
            ).scalars()
        )
        for m in sign_ups:
            if m["st"] not in inserted:
                continue
            if m["v"] == STATUS_ENROLLED:
                writes.enrolled += 1
            else:
                writes.waitlisted += 1
                writes.ticket = max(writes.ticket, m["tk"])
            writes.events.append(_event(course_id, m["v"], m["st"], m))

    async def _remove(self, course_id: str, message: dict[str, Any], writes: _CourseWrites) -> None:
        status = (
            await self.connection.execute(
                delete(Enrollment)
                .where(Enrollment.course_id == course_id, Enrollment.student_id == message["st"])
                .returning(Enrollment.status)
            )
        ).scalar_one_or_none()
        if status is None:  # written before, or its sign-up was never persisted
            return
        if status == STATUS_ENROLLED:
            writes.enrolled -= 1
            writes.events.append(_event(course_id, EventType.DROPPED, message["st"], message))
        else:
            writes.waitlisted -= 1
            writes.events.append(_event(course_id, EventType.LEFT_WAITLIST, message["st"], message))

    async def _promote(self, course_id: str, message: dict[str, Any], writes: _CourseWrites) -> None:
        students = [p[0] for p in message["pr"]]
        if not students:
            return
        promoted = set(
            (
                await self.connection.execute(
                    update(Enrollment)
                    .where(
                        Enrollment.course_id == course_id,
                        Enrollment.student_id.in_(students),
                        Enrollment.status == STATUS_WAITLISTED,
                    )
                    .values(status=STATUS_ENROLLED, waitlist_seq=None, created_at=_at(message))
                    .returning(Enrollment.student_id)
                )
            ).scalars()
        )
        for student in students:  # in ticket order, as decided
            if student in promoted:
                writes.enrolled += 1
                writes.waitlisted -= 1
                writes.events.append(_event(course_id, EventType.PROMOTED, student, message))

    async def configs_not_being_changed(self) -> list[CourseConfig]:
        """Every course's capacity and window, its row locked until the transaction ends; rows a
        registrar is changing right now (locked) are left out."""
        rows = await self.connection.execute(
            select(
                Course.course_id, Course.capacity, Course.registration_opens_at, Course.registration_closes_at
            ).with_for_update(skip_locked=True)
        )
        return [CourseConfig(*row) for row in rows]

    async def existing(self, course_ids: Sequence[str]) -> set[str]:
        """Those of these courses the catalogue has."""
        query = select(Course.course_id).where(Course.course_id.in_(list(course_ids)))
        return set((await self.connection.execute(query)).scalars())

    async def states(self, course_ids: Iterable[str] | None = None) -> list[CourseState]:
        """Every course's admission state (or these courses'), as the database has it."""
        courses = select(Course)
        if course_ids is not None:
            courses = courses.where(Course.course_id.in_(list(course_ids)))
        rows = (await self.connection.execute(courses)).all()
        members = select(Enrollment.course_id, Enrollment.student_id, Enrollment.status, Enrollment.waitlist_seq)
        progress = select(AdmissionProgress.course_id, AdmissionProgress.applied_seq)
        if course_ids is not None:
            members = members.where(Enrollment.course_id.in_(bindparam("ids", expanding=True)))
            progress = progress.where(AdmissionProgress.course_id.in_(bindparam("ids", expanding=True)))
        params = {} if course_ids is None else {"ids": [row.course_id for row in rows]}
        enrolled: dict[str, list[str]] = defaultdict(list)
        waiting: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for row in await self.connection.execute(members.order_by(Enrollment.waitlist_seq), params):
            if row.status == STATUS_ENROLLED:
                enrolled[row.course_id].append(row.student_id)
            else:
                waiting[row.course_id].append((row.student_id, int(row.waitlist_seq)))
        seqs = {row.course_id: row.applied_seq for row in await self.connection.execute(progress, params)}
        return [
            CourseState(
                CourseConfig(row.course_id, row.capacity, row.registration_opens_at, row.registration_closes_at),
                ticket=int(row.waitlist_seq),
                seq=int(seqs.get(row.course_id, 0)),
                enrolled=enrolled[row.course_id],
                waitlisted=waiting[row.course_id],
            )
            for row in rows
        ]


def _event(course_id: str, type: str, student_id: str, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "course_id": course_id,
        "type": str(type),
        "student_id": student_id,
        "at": _at(message),
        "request_id": message.get("rid") or None,
    }
