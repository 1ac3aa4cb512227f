"""Sign-up activity for the registrar's dashboard: sign-ups per course and minute, and requests served."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import BigInteger, ColumnElement, Integer, Row, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from course_signup.adapters import metrics
from course_signup.domain.models import Course, CourseEvent

SIGN_UP_EVENTS = ("enrolled", "waitlisted")  # what a student asked for; promotions are not sign-ups


class ActivityRepository:
    """Read-only statements on one pooled connection (UnitOfWork.reading)."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def sign_ups_per_minute(self, since: datetime) -> Sequence[Row[Any]]:
        """(course_id, minute, count) for sign-up events at or after `since`; minute counts from the Unix epoch."""
        first = await self._first_event_id(since)
        if first is None:
            return []
        minute = self._minute(CourseEvent.at)
        query = (
            select(CourseEvent.course_id, minute.label("minute"), func.count().label("count"))
            .where(CourseEvent.event_id >= first, CourseEvent.at >= since, CourseEvent.type.in_(SIGN_UP_EVENTS))
            .group_by(CourseEvent.course_id, minute)
        )
        return (await self.connection.execute(query)).all()

    async def courses(self, course_ids: Sequence[str]) -> Sequence[Row[Any]]:
        if not course_ids:
            return []
        query = select(*Course.__table__.columns).where(Course.course_id.in_(course_ids))
        return (await self.connection.execute(query)).all()

    async def _first_event_id(self, since: datetime) -> int | None:
        """The first event at or after `since`, by binary search over the primary key.

        course_events has no index on `at`, and a dashboard polled every few seconds must not scan
        the whole audit trail. Event ids grow with time (one sequence, stamped at commit), so about
        twenty primary-key lookups find where the last hour begins; the aggregate then reads only
        that range. An event committed out of order across the boundary may be missed: a dashboard
        can afford that, an audit cannot (the audit trail itself is read by course, in id order).
        """
        span = select(func.min(CourseEvent.event_id), func.max(CourseEvent.event_id))
        low, high = (await self.connection.execute(span)).one()
        if high is None or await self._at_or_after(high) < since:
            return None
        while low < high:
            middle = (low + high) // 2
            if await self._at_or_after(middle) >= since:
                high = middle
            else:
                low = middle + 1
        return low

    async def _at_or_after(self, event_id: int) -> datetime:
        """The time of the first event with this id or a later one (ids may have gaps)."""
        query = select(CourseEvent.at).where(CourseEvent.event_id >= event_id).order_by(CourseEvent.event_id).limit(1)
        return (await self.connection.execute(query)).scalar_one()

    def _minute(self, at: Any) -> ColumnElement[int]:
        if self.connection.dialect.name == "postgresql":
            return cast(func.floor(func.extract("epoch", at) / 60), BigInteger)
        return cast(func.strftime("%s", at), Integer) / 60  # SQLite stores UTC text; integer division


def requests_served() -> int:
    """Every HTTP request counted so far (all workers'), from the same figures /metrics shows."""
    text, _ = metrics.render()
    total = 0.0
    for family in text_string_to_metric_families(text.decode()):
        if family.name == "http_requests":
            total += sum(sample.value for sample in family.samples if sample.name == "http_requests_total")
    return int(total)
