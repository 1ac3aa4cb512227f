"""Idempotency keys: claim, replay, release, expiry and purge, on the in-memory fakes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from course_signup.domain.errors import IdempotencyKeyInFlightError, IdempotencyKeyReusedError
from course_signup.domain.models import utcnow
from course_signup.services import idempotency
from course_signup.services.idempotency import StoredAnswer
from tests.fakes import FakeUnitOfWork
from tests.unit.helpers import ALICE, BOB


async def claim(uow: FakeUnitOfWork, fingerprint: str = "body-1", *, student: str = ALICE) -> StoredAnswer | None:
    return await idempotency.claim(uow, student_id=student, key="key-1", fingerprint=fingerprint)


async def test_first_claim_of_a_key_reserves_it(uow: FakeUnitOfWork) -> None:
    assert await claim(uow) is None
    with pytest.raises(IdempotencyKeyInFlightError):
        await claim(uow)


async def test_claim_replays_the_stored_answer_for_the_same_body(uow: FakeUnitOfWork) -> None:
    await claim(uow)
    await idempotency.remember(uow, student_id=ALICE, key="key-1", answer=StoredAnswer(202, b'{"code":0}'))

    assert await claim(uow) == StoredAnswer(202, b'{"code":0}')
    assert await claim(uow) == StoredAnswer(202, b'{"code":0}')


async def test_claim_with_a_different_body_raises_key_reused(uow: FakeUnitOfWork) -> None:
    await claim(uow)
    await idempotency.remember(uow, student_id=ALICE, key="key-1", answer=StoredAnswer(200, b"{}"))

    with pytest.raises(IdempotencyKeyReusedError):
        await claim(uow, "body-2")


async def test_keys_belong_to_one_student(uow: FakeUnitOfWork) -> None:
    await claim(uow)

    assert await claim(uow, "body-2", student=BOB) is None


async def test_released_key_can_be_claimed_again(uow: FakeUnitOfWork) -> None:
    await claim(uow)
    await idempotency.release(uow, student_id=ALICE, key="key-1")

    assert await claim(uow, "body-2") is None


async def test_key_expires_after_a_day(uow: FakeUnitOfWork, monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    monkeypatch.setattr(idempotency, "utcnow", lambda: now - idempotency.KEEP_FOR - timedelta(seconds=1))
    await claim(uow)
    await idempotency.remember(uow, student_id=ALICE, key="key-1", answer=StoredAnswer(200, b"{}"))
    monkeypatch.setattr(idempotency, "utcnow", lambda: now)

    assert await claim(uow, "body-2") is None
    assert await idempotency.purge_expired(uow) == 0


async def test_abandoned_reservation_can_be_taken_over(uow: FakeUnitOfWork, monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    monkeypatch.setattr(idempotency, "utcnow", lambda: now - timedelta(seconds=30))
    await claim(uow)
    monkeypatch.setattr(idempotency, "utcnow", lambda: now)
    with pytest.raises(IdempotencyKeyInFlightError):
        await claim(uow)  # 30 s: still running

    monkeypatch.setattr(idempotency, "utcnow", lambda: now + idempotency.ABANDONED_AFTER)

    assert await claim(uow) is None


async def test_purge_removes_only_expired_keys(uow: FakeUnitOfWork, monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    monkeypatch.setattr(idempotency, "utcnow", lambda: now - timedelta(days=2))
    await claim(uow, student=ALICE)
    monkeypatch.setattr(idempotency, "utcnow", lambda: now)
    await claim(uow, student=BOB)

    assert await idempotency.purge_expired(uow) == 1
    with pytest.raises(IdempotencyKeyInFlightError):
        await claim(uow, student=BOB)
