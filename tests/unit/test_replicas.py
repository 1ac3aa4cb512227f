"""The replica router's decisions: lag from WAL positions, skipping, read-your-own-writes, and the settings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import ValidationError

from course_signup.adapters.redis_link import RedisUnavailableError
from course_signup.adapters.replicas import RecentWrites, Replica, ReplicaRouter
from course_signup.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedRouter(ReplicaRouter):
    """The router with the WAL positions set by the test instead of read from servers."""

    primary_at = 0
    replayed: dict[int, tuple[bool, int, str] | Exception]

    async def _primary_position(self) -> int:
        return self.primary_at

    async def _replay_position(self, replica: Replica) -> tuple[bool, int | None, str]:
        answer = self.replayed[replica.number]
        if isinstance(answer, Exception):
            raise answer
        return answer


def router(clock: Clock, *, replicas: int = 1, max_lag: float = 5.0, window: float = 5.0) -> ScriptedRouter:
    nodes = [Replica(number, f"replica{number}:5432/db", engine=None) for number in range(1, replicas + 1)]  # type: ignore[arg-type]
    scripted = ScriptedRouter(None, nodes, max_lag=max_lag, recent=RecentWrites(window, clock=clock), clock=clock)  # type: ignore[arg-type]
    scripted.replayed = {}
    return scripted


async def measured(
    scripted: ScriptedRouter, *, primary: int, replayed: int, at: float, clock: Clock, server: str = "one"
) -> None:
    clock.now = at
    scripted.primary_at = primary
    scripted.replayed = {replica.number: (True, replayed, server) for replica in scripted.replicas}
    await scripted.check()


def states(scripted: ScriptedRouter) -> list[tuple[str, float | None]]:
    return [(status.state, status.lag_seconds) for status in scripted.report()]


async def test_a_caught_up_replica_of_an_idle_primary_stays_in_use_however_long_since_the_last_write():
    clock = Clock()
    scripted = router(clock)
    for at in (1000.0, 1100.0, 5000.0):  # the primary writes nothing: its position stands at 100
        await measured(scripted, primary=100, replayed=100, at=at, clock=clock)
        assert states(scripted) == [("ok", 0.0)]
        assert await scripted.choose("alice@example.com") is scripted.replicas[0]


async def test_a_replica_is_as_far_behind_as_the_newest_primary_position_it_has_replayed():
    clock = Clock()
    scripted = router(clock, max_lag=5.0)
    await measured(scripted, primary=100, replayed=100, at=1000.0, clock=clock)
    await measured(scripted, primary=200, replayed=100, at=1001.0, clock=clock)
    assert states(scripted) == [("ok", 1.0)]  # holds everything the primary had at 1000
    await measured(scripted, primary=300, replayed=150, at=1006.0, clock=clock)
    assert states(scripted) == [("lagging", 6.0)]  # 150 is short of 200: still only what it had at 1000
    assert await scripted.choose("alice@example.com") is None
    await measured(scripted, primary=300, replayed=300, at=1007.0, clock=clock)
    assert states(scripted) == [("ok", 0.0)]
    assert await scripted.choose("alice@example.com") is scripted.replicas[0]


async def test_a_replica_whose_checks_stop_is_dropped_once_it_could_be_too_far_behind():
    clock = Clock()
    scripted = router(clock, max_lag=5.0)
    await measured(scripted, primary=100, replayed=100, at=1000.0, clock=clock)
    clock.now = 1004.5
    assert await scripted.choose(None) is scripted.replicas[0]
    clock.now = 1005.5
    assert await scripted.choose(None) is None
    assert states(scripted) == [("lagging", 5.5)]


async def test_a_replica_that_does_not_answer_or_is_not_in_recovery_is_not_used():
    clock = Clock()
    scripted = router(clock, replicas=2)
    await measured(scripted, primary=100, replayed=100, at=1000.0, clock=clock)
    scripted.replayed = {1: ConnectionRefusedError("refused"), 2: (False, 100, "one")}
    await scripted.check()
    assert states(scripted) == [("down", None), ("not-in-recovery", None)]
    assert await scripted.choose(None) is None
    await measured(scripted, primary=100, replayed=100, at=1001.0, clock=clock)
    assert states(scripted) == [("ok", 0.0), ("ok", 0.0)]


async def test_a_primary_that_does_not_answer_leaves_the_bounds_growing():
    clock = Clock()
    scripted = router(clock, max_lag=5.0)
    await measured(scripted, primary=100, replayed=100, at=1000.0, clock=clock)

    async def unreachable() -> int:
        raise ConnectionRefusedError("refused")

    scripted._primary_position = unreachable  # type: ignore[method-assign]
    clock.now = 1006.0
    await scripted.check()
    assert states(scripted) == [("lagging", 6.0)]


async def test_reads_take_turns_among_the_replicas_in_time():
    clock = Clock()
    scripted = router(clock, replicas=2)
    await measured(scripted, primary=100, replayed=100, at=1000.0, clock=clock)
    chosen = [await scripted.choose(None) for _ in range(4)]
    assert chosen[0] is not chosen[1] and chosen[:2] == chosen[2:]


async def test_a_reader_who_wrote_reads_from_the_primary_until_the_window_ends():
    clock = Clock()
    scripted = router(clock, window=5.0)
    await measured(scripted, primary=100, replayed=100, at=1000.0, clock=clock)
    await scripted.wrote("alice@example.com", "catalogue")
    assert await scripted.choose("alice@example.com") is None
    assert await scripted.choose("catalogue") is None
    assert await scripted.choose("bob@example.com") is scripted.replicas[0]
    await measured(scripted, primary=100, replayed=100, at=1005.1, clock=clock)
    assert await scripted.choose("alice@example.com") is scripted.replicas[0]


class UnavailableRedis:
    """A RedisLink whose breaker is open: every command fails at once."""

    async def run(self, operation: Callable[[], Awaitable[Any]]) -> Any:
        raise RedisUnavailableError()


async def test_when_redis_cannot_say_whether_a_reader_wrote_the_read_goes_to_the_primary():
    recent = RecentWrites(5.0, UnavailableRedis())  # type: ignore[arg-type]
    await recent.add(["alice@example.com"])  # remembered in this process at least
    assert await recent.contains("alice@example.com")
    assert await recent.contains("bob@example.com")


async def test_without_redis_a_write_is_remembered_by_its_process_alone():
    clock = Clock()
    recent = RecentWrites(5.0, clock=clock)
    await recent.add(["alice@example.com"])
    assert await recent.contains("alice@example.com")
    assert not await recent.contains("bob@example.com")
    clock.now += 5.0
    assert not await recent.contains("alice@example.com")


PRIMARY = "postgresql+asyncpg://u@primary/db"


def test_replicas_are_postgresql_urls_behind_a_postgresql_primary():
    settings = Settings(database_url=PRIMARY, database_replica_urls="postgres://u@r1/db, postgresql://u@r2:5433/db")
    assert settings.database_replica_urls == ["postgresql+asyncpg://u@r1/db", "postgresql+asyncpg://u@r2:5433/db"]
    with pytest.raises(ValidationError, match="PostgreSQL primary"):
        Settings(database_replica_urls="postgres://u@r1/db")  # the embedded SQLite database has no replicas
    with pytest.raises(ValidationError, match="PostgreSQL URLs"):
        Settings(database_url=PRIMARY, database_replica_urls="sqlite+aiosqlite:///x.db")


def test_reads_return_to_replicas_only_after_the_lag_limit():
    with pytest.raises(ValidationError, match="at least COURSE_SIGNUP_REPLICA_MAX_LAG_SECONDS"):
        Settings(
            database_url=PRIMARY,
            database_replica_urls="postgres://u@r1/db",
            replica_max_lag_seconds=10,
            replica_read_your_writes_seconds=5,
        )
    allowed = Settings(database_url=PRIMARY, replica_max_lag_seconds=10, replica_read_your_writes_seconds=5)
    assert allowed.database_replica_urls == []  # without replicas the two do not meet


async def test_a_restarted_replica_is_measured_afresh_not_by_what_it_held_before():
    clock = Clock()
    scripted = router(clock, max_lag=5.0)
    await measured(scripted, primary=100, replayed=100, at=1000.0, clock=clock)
    await measured(scripted, primary=200, replayed=200, at=1001.0, clock=clock)
    assert states(scripted) == [("ok", 0.0)]
    # Restarted between two checks: back at an older position, still replaying from there.
    await measured(scripted, primary=300, replayed=150, at=1010.0, clock=clock, server="one, restarted")
    state, lag = states(scripted)[0]
    assert state == "lagging" and (lag is None or lag > 5.0)  # not the 0 s its old self had earned
    assert await scripted.choose("alice@example.com") is None
