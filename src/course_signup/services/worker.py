"""`course-signup worker`: writes queue mode's decisions to PostgreSQL, reconciles, reloads, relays events.

- **Writer.** Messages from the shard queues are taken in batches (as many as have arrived, up to
  `worker_batch_size`), claimed in Redis in sequence order per course, written in one transaction
  (adapters/repositories/decisions.py), and acknowledged only after the commit. A redelivered
  message changes nothing. A message whose course has an earlier decision still pending waits (it
  stays unacknowledged) until that decision arrives or is settled.
- **Reconciler.** A pending decision past its deadline (`queue_pending_seconds`) whose API process
  never confirmed it is settled: a sign-up is released (its seat freed, the waitlist's head promoted),
  unless later decisions built on it; a drop is undone if that cannot oversell. What cannot be undone
  is published, and from then on stands: a decision waiting for it is claimed together with it, in
  order, so one that never comes through the queue cannot stall its shard. A seat is therefore held
  by a lost decision for at most the deadline plus one reconciler pass.
- **Loader.** When the admission state is missing (first start, or Redis came back empty), the
  worker takes the loading lock, waits one publish timeout for hand-offs still in flight, sends a
  barrier message through every shard queue and waits until each is consumed (everything decided
  before is then written), loads the state from PostgreSQL and marks it loaded. API processes answer
  503 with Retry-After meanwhile, and resume by themselves.
- **Catalogue sync.** Every `queue_pending_seconds` it aligns the state's courses (capacity, window,
  which exist) with the catalogue, for a registrar's change whose API process stopped between its
  database commit and the state.
- **Relay.** The event relay publishes the audit trail (adapters/relay.py), in both modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from course_signup.adapters.admission_queue import AdmissionQueue, BrokerUnavailableError, queue_name
from course_signup.adapters.admission_state import PREFIX, AdmissionState, decode, settings_of
from course_signup.adapters.repositories.decisions import DecisionRepository
from course_signup.settings import Settings

log = logging.getLogger("course_signup.worker")

RECONCILE_EVERY_SECONDS = 0.5
RETRY_SECONDS = 0.5
BARRIER_TIMEOUT_SECONDS = 30.0
LOAD_LOCK_MS = 30_000
LAG_SAMPLES = 100_000


@dataclass(eq=False)
class _Delivery:
    message: AbstractIncomingMessage
    body: dict[str, Any]


@dataclass
class Lag:
    """Time from a decision to its commit, over the most recent decisions written."""

    samples: deque[float] = field(default_factory=lambda: deque(maxlen=LAG_SAMPLES))

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {"count": 0}
        ordered = sorted(self.samples)
        return {
            "count": len(ordered),
            "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1),
        }


class Worker:
    def __init__(self, settings: Settings, engine: AsyncEngine, redis: Redis, queue: AdmissionQueue) -> None:
        self.settings = settings
        self.engine = engine
        self.state = AdmissionState(redis)
        self.redis = redis
        self.queue = queue
        self.batch_size = settings.worker_batch_size
        self.pending_ms = int(settings.queue_pending_seconds * 1000)
        self.inbox: asyncio.Queue[_Delivery] = asyncio.Queue()
        self.parked: list[_Delivery] = []
        self.lag = Lag()
        self.written = 0
        self._next_sync = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        await self.queue.open(wait=True)
        await self.queue.consume(self._receive)
        tasks = [
            asyncio.create_task(self._write_loop(stop), name="writer"),
            asyncio.create_task(self._reconcile_loop(stop), name="reconciler"),
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            lag = self.lag.summary()
            log.info(
                "worker stopped: %d decisions written; from decision to commit p50 %s ms, p99 %s ms",
                self.written,
                lag.get("p50_ms", "-"),
                lag.get("p99_ms", "-"),
            )

    async def _receive(self, message: AbstractIncomingMessage) -> None:
        try:
            body = json.loads(message.body)
            valid = _valid(body)
        except ValueError:
            valid = False
        if not valid:
            # Nothing this service publishes: one that cannot be written must not block the shard.
            log.error("discarding a message that is not an admission decision: %r", message.body[:200])
            await message.reject(requeue=False)
            return
        await self.inbox.put(_Delivery(message, body))

    # --- writer -----------------------------------------------------------------------------------

    async def _write_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await self._next_batch()
            if not batch:
                continue
            try:
                await self._write(batch)
            except (RedisError, OSError, DBAPIError, OperationalError, InterfaceError) as exc:
                log.warning("could not write a batch (%s); retrying", type(exc).__name__)
                self.parked = batch + self.parked
                await asyncio.sleep(RETRY_SECONDS)
            except Exception:
                # Not a passing outage: say so loudly, keep the messages, and keep trying.
                log.exception("could not write a batch; retrying")
                self.parked = batch + self.parked
                await asyncio.sleep(RETRY_SECONDS)

    async def _next_batch(self) -> list[_Delivery]:
        """Parked messages plus whatever has arrived (waiting briefly for something new)."""
        timeout = 0.05 if self.parked else 0.5
        batch, self.parked = self.parked, []
        with contextlib.suppress(TimeoutError):
            batch.append(await asyncio.wait_for(self.inbox.get(), timeout))
        while len(batch) < self.batch_size and not self.inbox.empty():
            batch.append(self.inbox.get_nowait())
        return batch

    async def _write(self, batch: list[_Delivery]) -> None:
        decisions = [d for d in batch if d.body.get("t") != "barrier"]
        barriers = [d for d in batch if d.body.get("t") == "barrier"]
        # One decision may arrive twice (the reconciler republished it): claimed and written once.
        unique: dict[tuple[str, int], _Delivery] = {}
        for delivery in decisions:
            unique.setdefault((delivery.body["c"], delivery.body["s"]), delivery)
        by_course: dict[str, list[int]] = {}
        for course_id, seq in sorted(unique, key=lambda key: key[1]):
            by_course.setdefault(course_id, []).append(seq)
        claims = await self.state.claim(by_course) if by_course else {}
        verdicts = {(c, s): o for c, seqs in by_course.items() for s, o in zip(seqs, claims[c][0], strict=True)}
        # Earlier decisions that stand (published, or kept by the reconciler) but whose own message
        # has not come through yet: claimed with these, written first.
        pulled = [_normalised(decode(body)) for _, bodies in claims.values() for body in bodies]
        to_write, waiting, done = [], [], []
        for delivery in decisions:
            outcome = verdicts[(delivery.body["c"], delivery.body["s"])]
            if outcome == "wait":
                waiting.append(delivery)
            elif outcome == "void" or unique[(delivery.body["c"], delivery.body["s"])] is not delivery:
                done.append(delivery)
            else:  # ok, or gone: written unless the database has it already
                to_write.append(delivery)
        if to_write or pulled:
            messages = pulled + [_normalised(d.body) for d in to_write]
            async with self.engine.begin() as connection:
                written = await DecisionRepository(connection).apply(messages)
            now = time.time()
            for message in written:
                self.lag.add(max(0.0, now - datetime.fromisoformat(message["at"]).timestamp()))
            self.written += len(written)
        await _ack(to_write + done)
        self.parked = waiting
        for barrier in barriers:
            if self.parked:  # everything before the barrier must be written first
                self.parked.append(barrier)
                continue
            await self.redis.set(_barrier_key(barrier.body["id"], barrier.body["shard"]), 1, ex=300)
            await _ack([barrier])

    # --- reconciler and loader --------------------------------------------------------------------

    async def _reconcile_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if await self.state.generation() is None:
                    await self.reload()
                await self.reconcile()
                if time.monotonic() >= self._next_sync:
                    await self.sync_catalogue()
                    self._next_sync = time.monotonic() + self.settings.queue_pending_seconds
            except (RedisError, OSError, BrokerUnavailableError, DBAPIError, OperationalError) as exc:
                log.warning("reconciler: %s; retrying", type(exc).__name__)
            except Exception:
                log.exception("reconciler failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RECONCILE_EVERY_SECONDS)

    async def reconcile(self) -> int:
        """Settle pending decisions past their deadline; returns how many were settled.

        A sign-up (or a drop that can be undone) is undone. One that must stand (a promotion, a
        drop whose seat was resold, a decision later ones built on) is published, and only then
        loses its deadline: from then on it stands, and the worker writes it in order.
        """
        settled = 0
        for course_id, seq in await self.state.overdue():
            at = datetime.now(UTC)
            outcome, follow = await self.state.void(
                course_id, seq, at=at, pending_ms=self.pending_ms, overdue_only=True
            )
            if follow is not None:
                await self._publish_pending(course_id, follow)
            if outcome == "kept":
                message = await self.state.pending_message(course_id, seq)
                if message is not None:
                    await self.queue.publish(course_id, message, timeout=self.settings.queue_publish_timeout_seconds)
                await self.state.published(course_id, seq)
            elif outcome == "claimed":
                await self.state.published(course_id, seq)
            if outcome in ("voided", "kept"):
                log.warning("settled an unconfirmed decision", extra={"course": course_id, "seq": seq, "as": outcome})
                settled += 1
        return settled

    async def sync_catalogue(self) -> int:
        """Align the state's courses with the catalogue; returns how many courses it changed.

        The registrar's changes reach the state as they happen (services/queue_admission.py); this
        catches what an API process failed to finish (it died, or Redis failed, between its database
        commit and the state). Rows a registrar is changing right now are locked, and skipped.
        """
        if await self.state.generation() is None:
            return 0
        changed = 0
        async with self.engine.begin() as connection:
            repository = DecisionRepository(connection)
            configs = await repository.configs_not_being_changed()
            held = await self.state.configs([config.course_id for config in configs])
            missing = []
            for config in configs:
                state = held[config.course_id]
                if state is None:
                    missing.append(config.course_id)
                    continue
                settings, deleting = state
                if deleting:  # not locked, so no delete is running: the one that marked it failed
                    await self.state.keep(config.course_id)
                    changed += 1
                if settings != settings_of(config):
                    if await self.state.configure(config) == "below":
                        log.error("course %s: capacity under the seats taken; left as it was", config.course_id)
                    changed += 1
            for course in await repository.states(missing) if missing else []:
                await self.state.create(course.config, ticket=course.ticket, seq=course.seq)
                changed += 1
        known = {config.course_id for config in configs}
        orphans = [course_id for course_id in await self.state.course_ids() if course_id not in known]
        if orphans:
            async with self.engine.connect() as connection:
                existing = await DecisionRepository(connection).existing(orphans)
            for course_id in orphans:
                if course_id not in existing:  # deleted from the catalogue, not taken out of the state
                    await self.state.removed(course_id)
                    changed += 1
        if changed:
            log.warning("aligned the admission state with the catalogue", extra={"courses": changed})
        return changed

    async def _publish_pending(self, course_id: str, message: bytes) -> None:
        seq = int(decode(message)["s"])
        with contextlib.suppress(BrokerUnavailableError):
            await self.queue.publish(course_id, message, timeout=self.settings.queue_publish_timeout_seconds)
            await self.state.published(course_id, seq)

    async def reload(self) -> bool:
        """Load the admission state from PostgreSQL once everything handed off before is written."""
        token = await self.state.lock_loading(LOAD_LOCK_MS)
        if token is None:
            return False  # another worker is loading it
        keeper = asyncio.create_task(self._hold_loading_lock(token))
        try:
            if await self.state.generation() is not None:
                return False
            log.warning("admission state missing: pausing admission, draining the queues, reloading")
            # A decision taken on the lost state may still be being handed off: wait for it.
            await asyncio.sleep(self.settings.queue_publish_timeout_seconds)
            await self._drain()
            async with self.engine.connect() as connection:
                states = await DecisionRepository(connection).states()
            generation = await self.state.load(states)
            log.warning("admission state loaded", extra={"courses": len(states), "generation": generation})
            return True
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            await self.state.unlock_loading(token)

    async def _hold_loading_lock(self, token: str) -> None:
        """Renew the loading lock while loading (it lapses only if this worker stalls LOAD_LOCK_MS)."""
        while True:
            await asyncio.sleep(LOAD_LOCK_MS / 3000)
            with contextlib.suppress(RedisError, OSError):
                if not await self.state.renew_loading(token, LOAD_LOCK_MS):
                    log.error("lost the admission state's loading lock while loading")
                    return

    async def _drain(self) -> None:
        """Send a barrier through each shard queue and wait until every one has been consumed."""
        barrier = uuid.uuid4().hex
        for shard in range(self.queue.shards):
            body = json.dumps({"t": "barrier", "id": barrier, "shard": shard}).encode()
            await self.queue.publish_to(queue_name(shard), body, timeout=self.settings.queue_publish_timeout_seconds)
        keys = [_barrier_key(barrier, shard) for shard in range(self.queue.shards)]
        deadline = time.monotonic() + BARRIER_TIMEOUT_SECONDS
        while await self.redis.exists(*keys) < len(keys):
            if time.monotonic() > deadline:
                raise BrokerUnavailableError("the shard queues were not drained in time")
            await asyncio.sleep(0.05)


def _valid(body: object) -> bool:
    """A decision (signup, drop, promote) or a barrier, with what writing it needs."""
    if not isinstance(body, dict):
        return False
    if body.get("t") == "barrier":
        return isinstance(body.get("id"), str) and isinstance(body.get("shard"), int)
    needed = {"signup": ("c", "s", "st", "v", "at"), "drop": ("c", "s", "st", "at"), "promote": ("c", "s", "at")}
    keys = needed.get(body.get("t"))  # type: ignore[arg-type]
    return keys is not None and all(k in body for k in keys) and isinstance(body["s"], int)


def _barrier_key(barrier: str, shard: int) -> str:
    return f"{PREFIX}barrier:{barrier}:{shard}"


def _normalised(body: dict[str, Any]) -> dict[str, Any]:
    if not body.get("pr"):
        body["pr"] = []
    return body


async def _ack(deliveries: list[_Delivery]) -> None:
    for delivery in deliveries:
        # A channel lost since delivery: the broker redelivers, and the write is idempotent.
        with contextlib.suppress(Exception):
            await delivery.message.ack()
