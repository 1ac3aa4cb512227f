"""Sign-ups and drops of one course from two engines at once (as two processes): counters stay true.

A drop that committed while a sign-up statement waited for the course's lock once made that
statement add its seats to the course's counters as of its snapshot, from before the drop: one seat
too many, which the database's CHECK refused, answering the sign-up 500.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import text

from course_signup.adapters import database
from course_signup.domain.errors import DomainError
from course_signup.services import courses, enrollments
from course_signup.services.admission import Admissions
from course_signup.services.unit_of_work import SqlAlchemyUnitOfWork
from course_signup.settings import Settings
from tests.conftest import unique
from tests.fakes import FakeCache

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.parametrize("waitlist_share", [0.0, 0.7], ids=["no waitlist", "with waitlist"])
async def test_concurrent_sign_ups_and_drops_never_oversell_nor_fail(postgres_url: str, waitlist_share: float):
    settings = Settings(database_url=postgres_url, db_pool_size=40)
    engines = [database.create_engine(settings) for _ in range(2)]
    sessions = [database.create_sessions(engine) for engine in engines]
    admissions = [Admissions(batching=True) for _ in engines]
    cache = FakeCache()
    failures: list[BaseException] = []
    try:
        for round_ in range(5):
            course = unique("RACE")
            await courses.create_course(
                SqlAlchemyUnitOfWork(sessions[0]), cache, course_id=course, name="R", capacity=15
            )
            rng = random.Random(round_)

            async def life(i: int, course: str = course, rng: random.Random = rng) -> None:
                student = f"race{i}@example.com"
                for _ in range(4):
                    side = rng.randrange(2)
                    uow = SqlAlchemyUnitOfWork(sessions[side])
                    try:
                        if rng.random() < 0.6:
                            await enrollments.sign_up(
                                uow, cache, student_id=student, course_id=course,
                                waitlist=rng.random() < waitlist_share, admissions=admissions[side],
                            )  # fmt: skip
                        else:
                            await enrollments.drop(
                                uow, cache, student_id=student, course_id=course, admissions=admissions[side]
                            )
                    except DomainError:
                        pass  # full, already signed up, not enrolled: answers, not failures
                    except Exception as exc:
                        failures.append(exc)

            await asyncio.gather(*(life(i) for i in range(60)))
            async with engines[0].connect() as connection:
                counters = (
                    await connection.execute(
                        text(
                            "SELECT capacity, enrolled, waitlisted, "
                            "(SELECT count(*) FROM enrollments WHERE course_id = :c AND status = 'enrolled'), "
                            "(SELECT count(*) FROM enrollments WHERE course_id = :c AND status = 'waitlisted') "
                            "FROM courses WHERE course_id = :c"
                        ),
                        {"c": course},
                    )
                ).one()
            capacity, enrolled, waitlisted, enrolled_rows, waitlisted_rows = counters
            assert (enrolled, waitlisted) == (enrolled_rows, waitlisted_rows)
            assert enrolled <= capacity
            assert waitlisted == 0 or enrolled == capacity  # nobody waits while a seat is free
    finally:
        for engine in engines:
            await engine.dispose()
    assert failures == []
