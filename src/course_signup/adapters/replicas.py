"""Read replicas: which database a read goes to, how far behind each replica is, and who wrote lately.

A read goes to a streaming replica unless its reader wrote in the last READ_YOUR_WRITES_SECONDS
(then the primary, so they see their own write), or no replica is known to be within
REPLICA_MAX_LAG_SECONDS of the primary (then the primary too).

How far behind. Every `check_every` seconds the router reads the primary's WAL position, then each
replica's replay position, and keeps the primary's recent positions with the time (this process's
monotonic clock) at which each was asked for. A transaction acknowledged before that time ends at
or before that position, so a replica that has replayed it holds every such transaction: its lag
is at most `now - t` for the newest such time `t`. This is an upper bound, from one clock (no skew
between hosts), and right on an idle primary: with no new WAL the replica's position equals the
primary's and its lag is 0, where `now() - pg_last_xact_replay_timestamp()` would grow for ever.
The bound keeps growing between checks, so a replica whose checks stop answering is dropped by
the time it could be too far behind, even before a check fails. A replica that does not answer,
or is not in recovery (promoted, or the primary itself), is not used until a check says otherwise.

Read your own writes. After a write, `wrote(reader, ...)` remembers its writer (and the student it
changed) for READ_YOUR_WRITES_SECONDS, in this process and, when REDIS_URL is set, in Redis (a key
per reader that expires), so that the reader's next request may land on any process. Their reads
go to the primary meanwhile; afterwards a replica serves them only while it holds everything
committed more than REPLICA_MAX_LAG_SECONDS ago, which includes the write because Settings
requires READ_YOUR_WRITES_SECONDS >= REPLICA_MAX_LAG_SECONDS. Where Redis cannot answer a read's
question, the read goes to the primary. Where it fails to take the mark, only the writing process
remembers it: on another process the reader may then be answered from a replica that is at most
REPLICA_MAX_LAG_SECONDS behind. Without REDIS_URL the memory is the writing process's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from course_signup.adapters import database
from course_signup.adapters.redis_link import RedisLink, RedisUnavailableError
from course_signup.settings import Settings

log = logging.getLogger("course_signup.replicas")

CATALOGUE = "catalogue"  # the public catalogue's reader (no e-mail has no @): registrar changes mark it
OK, LAGGING, DOWN, NOT_A_REPLICA = "ok", "lagging", "down", "not-in-recovery"
CHECK_TIMEOUT_SECONDS = 2.0
CONNECT_TIMEOUT_SECONDS = 2.0  # asyncpg waits 60 s by default for a host that does not answer
# What opening a connection to a stopped or unreachable server raises.
CONNECT_FAILURES = (DBAPIError, OSError, TimeoutError)
_PRIMARY_POSITION = text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
# Also which server answered, and since when: a bound is about one server's replay, and a restarted
# standby (or another server behind the same address) may replay from further back.
_REPLICA_POSITION = text(
    "SELECT pg_is_in_recovery(), pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint, "
    "(SELECT system_identifier FROM pg_control_system())::text || '/' || pg_postmaster_start_time()::text"
)


@dataclass(eq=False)
class Replica:
    number: int  # its place in DATABASE_REPLICA_URLS, from 1: /ready names it so (the URL stays private)
    where: str  # host:port/database, for the log
    engine: AsyncEngine
    checks: AsyncEngine | None = None  # one connection of its own for the lag checks (None: `engine`'s)
    holds_until: float | None = None  # it holds every transaction acknowledged before this monotonic time
    incarnation: str | None = None  # the server (and its start) that `holds_until` was measured on
    problem: str | None = None  # DOWN or NOT_A_REPLICA: not used whatever its position
    reason: str = ""  # why it is DOWN, for the log

    def lag(self, now: float) -> float | None:
        """At most this far behind the primary, in seconds; None when not known."""
        if self.problem is not None or self.holds_until is None:
            return None
        return max(0.0, now - self.holds_until)


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    number: int
    state: str  # OK, LAGGING, DOWN or NOT_A_REPLICA
    lag_seconds: float | None


class RecentWrites:
    """Readers who wrote in the last `seconds`: kept in this process, and in Redis when there is a link."""

    def __init__(
        self,
        seconds: float,
        link: RedisLink | None = None,
        *,
        namespace: str = "course-signup:wrote",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self._link = link
        self._clock = clock
        self._prefix = f"{namespace}:"
        self._local: OrderedDict[str, float] = OrderedDict()  # reader -> expiry, soonest first

    async def add(self, readers: Iterable[str]) -> None:
        """Remember these readers for `seconds` from now (in Redis too, within its deadline)."""
        if self.seconds <= 0:
            return
        now = self._clock()
        keys = []
        for reader in readers:
            self._local[reader] = now + self.seconds
            self._local.move_to_end(reader)
            keys.append(self._prefix + reader)
        while self._local and next(iter(self._local.values())) <= now:
            self._local.popitem(last=False)
        if self._link is None or not keys:
            return
        link, expiry_ms = self._link, math.ceil(self.seconds * 1000)

        async def mark() -> None:
            pipe = link.client.pipeline(transaction=False)
            for key in keys:
                pipe.set(key, b"1", px=expiry_ms)
            await pipe.execute()

        with contextlib.suppress(RedisUnavailableError):  # this process still knows: see the module docstring
            await link.run(mark)

    async def contains(self, reader: str) -> bool:
        """Whether `reader` wrote in the last `seconds`; True when Redis cannot tell (the primary is always right)."""
        if self.seconds <= 0:
            return False
        expiry = self._local.get(reader)
        if expiry is not None and expiry > self._clock():
            return True
        if self._link is None:
            return False
        link, key = self._link, self._prefix + reader
        try:
            return bool(await link.run(lambda: link.client.exists(key)))
        except RedisUnavailableError:
            return True


class ReplicaRouter:
    """Chooses the database of each read; after start(), keeps measuring how far behind each replica is."""

    def __init__(
        self,
        primary: AsyncEngine,
        replicas: Sequence[Replica],
        *,
        max_lag: float,
        recent: RecentWrites,
        clock: Callable[[], float] = time.monotonic,
        primary_checks: AsyncEngine | None = None,
    ) -> None:
        self.primary = primary
        # The checks have a connection of their own: a rush that fills the request pools must not
        # fail them (every replica would look ever further behind exactly when the primary is busiest).
        self.primary_checks = primary_checks or primary
        self._clock = clock
        self.replicas = list(replicas)
        self.max_lag = max_lag
        self.recent = recent
        # A few checks per allowed lag: the bound a check yields is at most one interval too high.
        self.check_every = min(0.5, max(0.05, max_lag / 4))
        self._positions: deque[tuple[float, int]] = deque()  # (asked at, the primary's WAL position)
        self._turn = 0
        self._said: dict[int, str] = {}
        self._checks: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, primary: AsyncEngine, link: RedisLink | None) -> ReplicaRouter | None:
        """The router for DATABASE_REPLICA_URLS, or None when there are none."""
        if not settings.database_replica_urls:
            return None
        if link is None:
            log.warning(
                "DATABASE_REPLICA_URLS without REDIS_URL: a student's reads see their own writes only on the "
                "process that answered the write; behind a load balancer, set REDIS_URL"
            )
        replicas = [
            Replica(number, _where(url), _replica_engine(settings, url), checks=_check_engine(url))
            for number, url in enumerate(settings.database_replica_urls, start=1)
        ]
        recent = RecentWrites(settings.replica_read_your_writes_seconds, link)
        return cls(
            primary,
            replicas,
            max_lag=settings.replica_max_lag_seconds,
            recent=recent,
            primary_checks=_check_engine(settings.sqlalchemy_url),
        )

    async def start(self) -> None:
        """Measure the replicas once, then keep measuring them in the background."""
        await self.check()
        self._checks = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._checks is not None:
            self._checks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checks
        for replica in self.replicas:
            await replica.engine.dispose()
            if replica.checks is not None:
                await replica.checks.dispose()
        if self.primary_checks is not self.primary:
            await self.primary_checks.dispose()

    async def wrote(self, *readers: str) -> None:
        """These readers' reads go to the primary for READ_YOUR_WRITES_SECONDS: call after a write commits."""
        await self.recent.add(readers)

    async def choose(self, reader: str | None) -> Replica | None:
        """The replica for a read by `reader`, or None for the primary."""
        now = self._clock()
        in_time = [r for r in self.replicas if (lag := r.lag(now)) is not None and lag <= self.max_lag]
        if not in_time or (reader is not None and await self.recent.contains(reader)):
            return None
        self._turn += 1
        return in_time[self._turn % len(in_time)]

    @contextlib.asynccontextmanager
    async def connect(self, reader: str | None) -> AsyncIterator[AsyncConnection]:
        """A connection for a read by `reader`: a replica's, or the primary's (also if the replica's will not open)."""
        async with contextlib.AsyncExitStack() as stack:
            connection = None
            replica = await self.choose(reader)
            if replica is not None:
                try:
                    connection = await stack.enter_async_context(replica.engine.connect())
                except CONNECT_FAILURES as exc:
                    self._lost(replica, exc)
            if connection is None:
                connection = await stack.enter_async_context(self.primary.connect())
            yield connection

    def report(self) -> list[ReplicaStatus]:
        """Each replica's state and lag bound now, for /ready."""
        now = self._clock()
        return [ReplicaStatus(r.number, self._state(r, now), r.lag(now)) for r in self.replicas]

    async def check(self) -> None:
        """Measure every replica once against the primary's WAL position (see the module docstring)."""
        asked = self._clock()
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                position = await self._primary_position()
        except Exception:
            return  # nothing to compare with; the replicas' bounds keep growing meanwhile
        self._positions.append((asked, position))
        # Keep the positions of the last max_lag seconds, and the one just before: older ones cannot
        # make a replica usable.
        while len(self._positions) > 1 and self._positions[1][0] <= asked - self.max_lag:
            self._positions.popleft()
        await asyncio.gather(*(self._check(replica) for replica in self.replicas))
        now = self._clock()
        for replica in self.replicas:
            self._say(replica, now)

    async def _check(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                in_recovery, replayed, incarnation = await self._replay_position(replica)
        except Exception as exc:
            self._lost(replica, exc, say=False)
            return
        if not in_recovery or replayed is None:
            replica.problem, replica.holds_until = NOT_A_REPLICA, None
            return
        replica.problem = None
        if incarnation != replica.incarnation:  # restarted, or another server: what it held says nothing now
            replica.incarnation, replica.holds_until = incarnation, None
        # Replay never goes back, so an earlier bound stays true when the positions it came from are gone.
        found = next((asked for asked, position in reversed(self._positions) if position <= replayed), None)
        candidates = [t for t in (replica.holds_until, found) if t is not None]
        replica.holds_until = max(candidates) if candidates else None

    def _lost(self, replica: Replica, exc: BaseException, *, say: bool = True) -> None:
        if replica.problem != DOWN:
            replica.reason = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
        replica.problem, replica.holds_until = DOWN, None
        if say:
            self._say(replica, self._clock())

    def _state(self, replica: Replica, now: float) -> str:
        if replica.problem is not None:
            return replica.problem
        lag = replica.lag(now)
        return OK if lag is not None and lag <= self.max_lag else LAGGING

    def _say(self, replica: Replica, now: float) -> None:
        """One log line when a replica's state changes, never one per check."""
        state = self._state(replica, now)
        if self._said.get(replica.number) == state:
            return
        first = replica.number not in self._said
        self._said[replica.number] = state
        name = f"replica {replica.number} ({replica.where})"
        if state == OK:
            log.log(logging.INFO if first else logging.WARNING, "%s in use for reads", name)
        elif state == DOWN:
            log.warning("%s unavailable (%s); its reads go to the primary", name, replica.reason)
        elif state == NOT_A_REPLICA:
            log.warning("%s is not in recovery (promoted, or not a replica); its reads go to the primary", name)
        else:
            log.warning("%s is more than %g s behind the primary; its reads go to the primary", name, self.max_lag)

    async def _primary_position(self) -> int:
        """The primary's WAL position now, in bytes."""
        return int((await _row(self.primary_checks, _PRIMARY_POSITION))[0])

    async def _replay_position(self, replica: Replica) -> tuple[bool, int | None, str]:
        """Whether the replica is in recovery, the WAL position it has replayed (bytes), and which
        server answered since when."""
        in_recovery, replayed, incarnation = await _row(replica.checks or replica.engine, _REPLICA_POSITION)
        return bool(in_recovery), None if replayed is None else int(replayed), str(incarnation)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.check_every)
            await self.check()


def _replica_engine(settings: Settings, url: str) -> AsyncEngine:
    """An engine like the primary's (pool size, timeouts, metrics) on a replica, quick to give up on it."""
    engine = database.create_engine(settings.model_copy(update={"database_url": url}))

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect_timeout(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        params.setdefault("timeout", CONNECT_TIMEOUT_SECONDS)

    # A pooled connection the server closed (replica stopped or restarted) is noticed here at no
    # cost, so the pool opens a new one, and a replica that is gone fails to open, which sends
    # the read to the primary instead of failing it.
    # insert=True: before the pool-in-use gauge counts the checkout, which a retry would count twice.
    @event.listens_for(engine.sync_engine.pool, "checkout", insert=True)
    def _closed_is_gone(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise InvalidatePoolError("the replica closed this connection")

    return engine


def _check_engine(url: str) -> AsyncEngine:
    """One connection, kept, for the lag checks; a server that does not answer fails them quickly."""
    return create_async_engine(
        url,
        pool_size=1,
        max_overflow=0,
        pool_timeout=CHECK_TIMEOUT_SECONDS,
        pool_pre_ping=True,
        connect_args={"timeout": CONNECT_TIMEOUT_SECONDS},
    )


def _where(url: str) -> str:
    parsed = make_url(url)
    return f"{parsed.host}:{parsed.port or 5432}/{parsed.database}"


async def _row(engine: AsyncEngine, statement: Any) -> Any:
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        return (await connection.execute(statement)).one()
