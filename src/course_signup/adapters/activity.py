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
        minute = self._minute(CourseEvent.at)
        query = (
            # An index range scan of course_events.at (migration 0003): only the last hour is read.
            select(CourseEvent.course_id, minute.label("minute"), func.count().label("count"))
            .where(CourseEvent.at >= since, CourseEvent.type.in_(SIGN_UP_EVENTS))
            .group_by(CourseEvent.course_id, minute)
        )
        return (await self.connection.execute(query)).all()

    async def courses(self, course_ids: Sequence[str]) -> Sequence[Row[Any]]:
        if not course_ids:
            return []
        query = select(*Course.__table__.columns).where(Course.course_id.in_(course_ids))
        return (await self.connection.execute(query)).all()

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
