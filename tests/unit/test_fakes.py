"""The fake unit of work itself: what the service-layer tests rely on it to do."""

from __future__ import annotations

from course_signup.domain.models import utcnow
from tests.fakes import FakeCache, FakeUnitOfWork
from tests.unit.helpers import counters, new_course


async def test_unit_of_work_discards_what_was_not_committed(uow: FakeUnitOfWork, cache: FakeCache) -> None:
    await new_course(uow, cache, capacity=1)

    async with uow:
        await uow.courses.adjust_counters("CS101", enrolled=1, at=utcnow())
    async with uow:
        await uow.courses.adjust_counters("CS101", enrolled=1, at=utcnow())
        await uow.rollback()
        assert (await uow.courses.get("CS101")).enrolled == 0

    assert await counters(uow) == (0, 0)
