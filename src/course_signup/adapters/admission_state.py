"""Queue mode's admission state in Redis: each course's seats, members, waitlist and pending decisions.

Every decision is one Lua script, so it is atomic however many API processes run:

- `sign_up` and `drop` decide with the same rules and answers as the database (domain/admission.py),
  and record the decision as *pending*: its message is kept under the course with a sequence number,
  and a deadline is set. The API process publishes the message, then clears the deadline.
- `void` undoes a pending decision whose message never reached the broker (the publish failed, or
  the API process died and the reconciler found the deadline passed). A sign-up is released (a freed
  seat goes to the head of the waitlist, itself a new decision). A drop is restored only when that
  cannot oversell (its seat was not resold); otherwise it is kept and the reconciler publishes it.
- `claim` is the worker's: before writing decisions it takes them out of *pending*, in sequence order
  per course; a decision voided first is skipped, and one voided after its claim is refused.

Keys: `csq:gen` (present while the state is loaded: an emptied Redis is noticed and pauses admission
instead of passing for empty courses), and per course `csq:c:<id>` (capacity, window, counters, the
waitlist ticket and decision sequence), `csq:m:<id>` (student -> "e", or their waitlist ticket),
`csq:w:<id>` (waitlist, ticket order), `csq:p:<id>` (pending decisions by sequence), `csq:v:<id>`
(voided sequences), and `csq:deadlines` (pending decisions by deadline, for the reconciler).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from course_signup.domain.models import Course

PREFIX = "csq:"
GENERATION = PREFIX + "gen"
LOADING = PREFIX + "loading"
DEADLINES = PREFIX + "deadlines"
VOID_KEEP_SECONDS = 7 * 24 * 3600
UNLIMITED = -1


def _keys(course_id: str) -> list[str]:
    return [
        GENERATION,
        f"{PREFIX}c:{course_id}",
        f"{PREFIX}m:{course_id}",
        f"{PREFIX}w:{course_id}",
        f"{PREFIX}p:{course_id}",
        DEADLINES,
        f"{PREFIX}v:{course_id}",
        f"{PREFIX}ms:{course_id}",
        f"{PREFIX}t:{course_id}",
    ]


# Shared by the scripts: KEYS = _keys(course). Times are Redis's own clock (TIME), so deadlines set by
# any API process and checked by any worker agree. `csq:ms:<id>` holds, per member, the sequence of the
# decision that gave them their current place: an undo touches a member only while that is unchanged.
_LIB = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function live()
  return redis.call('EXISTS', KEYS[2]) == 1 and redis.call('HEXISTS', KEYS[2], 'deleting') == 0
end

local function seat_for_waiter()
  local f = redis.call('HMGET', KEYS[2], 'cap', 'enrolled')
  local cap, enrolled = tonumber(f[1]), tonumber(f[2])
  return (cap < 0 or enrolled < cap) and redis.call('ZCARD', KEYS[4]) > 0
end

local function next_seq()
  return redis.call('HINCRBY', KEYS[2], 'seq', 1)
end

-- Seat waitlisted students in ticket order while seats are free, as part of decision `seq`.
local function promote(seq)
  local promoted = {}
  while seat_for_waiter() do
    local head = redis.call('ZPOPMIN', KEYS[4])
    local before = redis.call('HGET', KEYS[8], head[1]) or ''
    redis.call('HSET', KEYS[3], head[1], 'e')
    redis.call('HSET', KEYS[8], head[1], seq)
    redis.call('HINCRBY', KEYS[2], 'enrolled', 1)
    redis.call('HINCRBY', KEYS[2], 'waitlisted', -1)
    promoted[#promoted + 1] = {head[1], tonumber(head[2]), before}
  end
  return promoted
end

local function pend(seq, message, course, pending_ms)
  message['s'] = seq
  local body = cjson.encode(message)
  redis.call('HSET', KEYS[5], seq, body)
  redis.call('ZADD', KEYS[6], now_ms() + tonumber(pending_ms), course .. '|' .. seq)
  return body
end

-- A promotion of its own, when a seat is free and someone waits (after a capacity rise).
local function promote_decision(course, pending_ms, at)
  if not seat_for_waiter() then return '' end
  local seq = next_seq()
  local promoted = promote(seq)
  return pend(seq, {t = 'promote', c = course, pr = promoted, at = at, rid = ''}, course, pending_ms)
end
"""

# ARGV: now (ms, the decision's time), pending (ms), at (ISO), course id, then per request: student,
# waitlist (1/0), request id. Decided one after the other, in order, as if each came alone. Returns
# {status, promotion, per request: {verdict} or {verdict, seq, ticket, position, message}}; status is
# ok, paused, not found or closed (then nothing is listed per request). A seat left free while
# someone waits (a capacity just raised) goes to the waitlist first, as the promotion.
_SIGN_UP = (
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'paused', ''} end
if not live() then return {'not found', ''} end
local now, pending_ms, at, course = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local f = redis.call('HMGET', KEYS[2], 'cap', 'opens', 'closes')
if (f[2] ~= '' and now < tonumber(f[2])) or (f[3] ~= '' and now >= tonumber(f[3])) then return {'closed', ''} end
local cap = tonumber(f[1])
local out = {'ok', promote_decision(course, pending_ms, at)}
for i = 5, #ARGV, 3 do
  local student, waitlist, request = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local member = redis.call('HGET', KEYS[3], student)
  if member == 'e' then
    out[#out + 1] = {'already enrolled'}
  elseif member then
    out[#out + 1] = {'already waitlisted'}
  else
    local enrolled = tonumber(redis.call('HGET', KEYS[2], 'enrolled'))
    local verdict, ticket, position = nil, 0, 0
    if cap < 0 or enrolled < cap then
      verdict = 'enrolled'
      redis.call('HINCRBY', KEYS[2], 'enrolled', 1)
      redis.call('HSET', KEYS[3], student, 'e')
    elseif waitlist == '1' then
      verdict = 'waitlisted'
      ticket = redis.call('HINCRBY', KEYS[2], 'ticket', 1)
      position = redis.call('HINCRBY', KEYS[2], 'waitlisted', 1)
      redis.call('HSET', KEYS[3], student, tostring(ticket))
      redis.call('ZADD', KEYS[4], ticket, student)
    end
    if verdict then
      local seq = next_seq()
      redis.call('HSET', KEYS[8], student, seq)
      local body = pend(seq, {t = 'signup', c = course, st = student, v = verdict, tk = ticket,
                              at = at, rid = request}, course, pending_ms)
      out[#out + 1] = {verdict, seq, ticket, position, body}
    else
      out[#out + 1] = {'full'}
    end
  end
end
return out
"""
)

# ARGV: student, pending (ms), at (ISO), request id, course id
_DROP = (
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'paused'} end
if not live() then return {'not found'} end
local member = redis.call('HGET', KEYS[3], ARGV[1])
if not member then return {'not found'} end
local seq = next_seq()
local before = redis.call('HGET', KEYS[8], ARGV[1]) or ''
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[8], ARGV[1])
local kind, ticket, promoted = 'dropped', 0, {}
if member == 'e' then
  redis.call('HINCRBY', KEYS[2], 'enrolled', -1)
  promoted = promote(seq)
else
  kind, ticket = 'left_waitlist', tonumber(member)
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('HINCRBY', KEYS[2], 'waitlisted', -1)
end
local body = pend(seq, {t = 'drop', c = ARGV[5], st = ARGV[1], k = kind, tk = ticket, pr = promoted, ps = before,
                        at = ARGV[3], rid = ARGV[4]}, ARGV[5], ARGV[2])
local first = ''
if #promoted > 0 then first = promoted[1][1] end
return {kind, seq, first, body}
"""
)

# ARGV: sequence, pending (ms) for a resulting promotion, at (ISO), course id, overdue only (1/0).
# "Overdue only" is the reconciler's: the decision is left alone unless its deadline is still set
# and has passed (its process may have confirmed it a moment ago).
_VOID = (
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'lost', ''} end
local raw = redis.call('HGET', KEYS[5], ARGV[1])
if not raw then
  if redis.call('SISMEMBER', KEYS[7], ARGV[1]) == 1 then return {'voided', ''} end
  return {'claimed', ''}
end
if ARGV[5] == '1' then
  local deadline = redis.call('ZSCORE', KEYS[6], ARGV[4] .. '|' .. ARGV[1])
  if not deadline or tonumber(deadline) > now_ms() then return {'standing', ''} end
end
local m = cjson.decode(raw)
local follow = ''
local course_exists = redis.call('EXISTS', KEYS[2]) == 1
if m.t == 'signup' then
  if course_exists and redis.call('HGET', KEYS[8], m.st) == ARGV[1] then
    redis.call('HDEL', KEYS[3], m.st)
    redis.call('HDEL', KEYS[8], m.st)
    if m.v == 'enrolled' then
      redis.call('HINCRBY', KEYS[2], 'enrolled', -1)
      follow = promote_decision(ARGV[4], ARGV[2], ARGV[3])
    else
      redis.call('ZREM', KEYS[4], m.st)
      redis.call('HINCRBY', KEYS[2], 'waitlisted', -1)
    end
  elseif course_exists and redis.call('HEXISTS', KEYS[3], m.st) == 1 then
    return {'kept', ''}  -- later decisions moved the student on from this one: it must stand
  end
elseif m.t == 'drop' then
  if not course_exists or redis.call('HEXISTS', KEYS[3], m.st) == 1 then return {'kept', ''} end
  if m.k == 'dropped' then
    local f = redis.call('HMGET', KEYS[2], 'cap', 'enrolled')
    local cap, enrolled = tonumber(f[1]), tonumber(f[2])
    for _, p in ipairs(m.pr) do
      if redis.call('HGET', KEYS[8], p[1]) ~= ARGV[1] then return {'kept', ''} end
    end
    if #m.pr == 0 and not (cap < 0 or enrolled < cap) then return {'kept', ''} end
    for _, p in ipairs(m.pr) do
      redis.call('HSET', KEYS[3], p[1], tostring(p[2]))
      redis.call('ZADD', KEYS[4], p[2], p[1])
      if p[3] ~= '' then redis.call('HSET', KEYS[8], p[1], p[3]) else redis.call('HDEL', KEYS[8], p[1]) end
      redis.call('HINCRBY', KEYS[2], 'enrolled', -1)
      redis.call('HINCRBY', KEYS[2], 'waitlisted', 1)
    end
    redis.call('HSET', KEYS[3], m.st, 'e')
    redis.call('HINCRBY', KEYS[2], 'enrolled', 1)
  else
    redis.call('HSET', KEYS[3], m.st, tostring(m.tk))
    redis.call('ZADD', KEYS[4], m.tk, m.st)
    redis.call('HINCRBY', KEYS[2], 'waitlisted', 1)
  end
  if m.ps ~= nil and m.ps ~= '' then redis.call('HSET', KEYS[8], m.st, m.ps) end
else
  return {'kept', ''}
end
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[4] .. '|' .. ARGV[1])
redis.call('SADD', KEYS[7], ARGV[1])
redis.call('EXPIRE', KEYS[7], VOID_KEEP_SECONDS)
return {'voided', follow}
""".replace("VOID_KEEP_SECONDS", str(VOID_KEEP_SECONDS))
)

# ARGV: course id, then sequences in ascending order. Returns {outcomes, pulled}: per sequence ok
# (claimed now), wait (an earlier decision of the course is pending and unconfirmed: try again
# later), void (undone: skip), gone (not pending: claimed before, or the state was lost; written
# unless the database has it). An earlier decision that is pending but *standing* (confirmed
# published, or kept by the reconciler) is claimed here too and its message returned in `pulled`,
# so the worker writes it first without waiting for its own copy to come through the queue.
_CLAIM = """
local out, pulled = {}, {}
if redis.call('EXISTS', KEYS[1]) == 0 then
  for i = 2, #ARGV do out[#out + 1] = 'gone' end
  return {out, pulled}
end
local nums = {}
for _, k in ipairs(redis.call('HKEYS', KEYS[5])) do nums[#nums + 1] = tonumber(k) end
table.sort(nums)
local taken, next_index = {}, 1
local function lowest()
  while next_index <= #nums and taken[nums[next_index]] do next_index = next_index + 1 end
  return nums[next_index]
end
local function take(n)
  redis.call('HDEL', KEYS[5], n)
  redis.call('ZREM', KEYS[6], ARGV[1] .. '|' .. n)
  taken[n] = true
end
local blocked = false
for i = 2, #ARGV do
  local s = ARGV[i]
  local n = tonumber(s)
  if blocked then
    out[#out + 1] = 'wait'
  elseif redis.call('HEXISTS', KEYS[5], s) == 1 then
    local low = lowest()
    while low ~= nil and low < n do
      if redis.call('ZSCORE', KEYS[6], ARGV[1] .. '|' .. low) then
        blocked = true
        break
      end
      pulled[#pulled + 1] = redis.call('HGET', KEYS[5], low)
      take(low)
      low = lowest()
    end
    if blocked then
      out[#out + 1] = 'wait'
    else
      take(n)
      out[#out + 1] = 'ok'
    end
  elseif redis.call('SISMEMBER', KEYS[7], s) == 1 then
    out[#out + 1] = 'void'
  else
    out[#out + 1] = 'gone'
  end
end
return {out, pulled}
"""

# ARGV: capacity (-1: unlimited), opens (ms or ''), closes (ms or '')
_CONFIGURE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'paused' end
if redis.call('EXISTS', KEYS[2]) == 0 then return 'not found' end
local cap = tonumber(ARGV[1])
if cap >= 0 and cap < tonumber(redis.call('HGET', KEYS[2], 'enrolled')) then return 'below' end
redis.call('HSET', KEYS[2], 'cap', ARGV[1], 'opens', ARGV[2], 'closes', ARGV[3])
return 'ok'
"""

# ARGV: pending (ms), at (ISO), course id
_PROMOTE = (
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'paused' end
if not live() then return '' end
return promote_decision(ARGV[3], ARGV[1], ARGV[2])
"""
)

# ARGV: capacity, opens, closes, waitlist ticket, decision sequence (the database's). A course's
# numbering never goes back: a removed course's last number is kept (KEYS[9]) for a new namesake.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'paused' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'exists' end
local seq = math.max(tonumber(ARGV[5]), tonumber(redis.call('GET', KEYS[9]) or '0'))
redis.call('HSET', KEYS[2], 'cap', ARGV[1], 'opens', ARGV[2], 'closes', ARGV[3], 'enrolled', 0,
           'waitlisted', 0, 'ticket', ARGV[4], 'seq', seq)
return 'ok'
"""

# Removing a course is two steps around the database's delete. ARGV: force (1/0). Marks the course
# deleting (sign-ups and drops then answer "not found"), refused while it has students unless forced.
_REMOVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'paused' end
if redis.call('EXISTS', KEYS[2]) == 0 then return 'not found' end
if ARGV[1] ~= '1' and redis.call('HLEN', KEYS[3]) > 0 then return 'has enrollments' end
redis.call('HSET', KEYS[2], 'deleting', 1)
return 'ok'
"""

# After the database's delete: the course's state goes; decisions of it still pending are voided
# (the worker skips them), and its numbering is kept for a namesake.
_REMOVED = """
local seq = redis.call('HGET', KEYS[2], 'seq')
if seq then redis.call('SET', KEYS[9], seq) end
for _, s in ipairs(redis.call('HKEYS', KEYS[5])) do
  redis.call('SADD', KEYS[7], s)
  redis.call('ZREM', KEYS[6], ARGV[1] .. '|' .. s)
end
redis.call('EXPIRE', KEYS[7], VOID_KEEP_SECONDS)
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[8])
return 'ok'
""".replace("VOID_KEEP_SECONDS", str(VOID_KEEP_SECONDS))

# The database's delete failed: the course takes sign-ups again.
_KEEP = """
redis.call('HDEL', KEYS[2], 'deleting')
return 'ok'
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class AdmissionPausedError(RuntimeError):
    """The admission state is not loaded (first start, or Redis came back empty): nothing is decided."""


@dataclass(frozen=True, slots=True)
class Decision:
    """A decision taken in Redis; `message` is what goes to the queue (None for a refusal)."""

    verdict: str
    seq: int = 0
    ticket: int = 0
    position: int = 0
    promoted: str | None = None
    message: bytes | None = None


@dataclass(frozen=True, slots=True)
class CourseConfig:
    """What the state needs of a course from the catalogue."""

    course_id: str
    capacity: int | None
    opens_at: datetime | None
    closes_at: datetime | None

    @classmethod
    def of(cls, course: Course) -> CourseConfig:
        """A course's (a copy: the row may change under its session)."""
        return cls(course.course_id, course.capacity, course.registration_opens_at, course.registration_closes_at)


@dataclass(frozen=True, slots=True)
class CourseState:
    """A course's full admission state, as loaded from the database."""

    config: CourseConfig
    ticket: int
    seq: int
    enrolled: Sequence[str]
    waitlisted: Sequence[tuple[str, int]]  # (student, ticket)


def _ms(at: datetime | None) -> str:
    return "" if at is None else str(int(at.timestamp() * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AdmissionState:
    """The scripts above on one Redis client (decode_responses off: messages stay bytes).

    `pending_ms` everywhere is how long a new decision may stay unconfirmed before the reconciler
    settles it; deadlines are kept on Redis's clock.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._sign_up = redis.register_script(_SIGN_UP)
        self._drop = redis.register_script(_DROP)
        self._void = redis.register_script(_VOID)
        self._claim = redis.register_script(_CLAIM)
        self._configure = redis.register_script(_CONFIGURE)
        self._promote = redis.register_script(_PROMOTE)
        self._create = redis.register_script(_CREATE)
        self._remove = redis.register_script(_REMOVE)
        self._removed = redis.register_script(_REMOVED)
        self._keep = redis.register_script(_KEEP)
        self._unlock = redis.register_script(_UNLOCK)
        self._renew = redis.register_script(_RENEW)

    # --- the API's decisions -------------------------------------------------------------------

    async def sign_up(
        self, course_id: str, student_id: str, *, waitlist: bool, at: datetime, pending_ms: int, request_id: str | None
    ) -> Decision:
        decisions, _ = await self.sign_up_many(
            course_id, [(student_id, waitlist, request_id)], at=at, pending_ms=pending_ms
        )
        return decisions[0]

    async def sign_up_many(
        self, course_id: str, requests: Sequence[tuple[str, bool, str | None]], *, at: datetime, pending_ms: int
    ) -> tuple[list[Decision], bytes | None]:
        """Decide (student, waitlist, request id) sign-ups in order, in one script, as if one by one.

        Returns a decision per request, and the message of a promotion taken first (a seat was free
        while someone waited) or None.
        """
        arguments: list[Any] = [_ms(at), pending_ms, at.isoformat(), course_id]
        for student_id, waitlist, request_id in requests:
            arguments += [student_id, "1" if waitlist else "0", request_id or ""]
        answer = await self._sign_up(_keys(course_id), arguments)
        status, promotion = _text(answer[0]), bytes(answer[1]) or None
        if status == "paused":
            raise AdmissionPausedError()
        if status != "ok":
            return [Decision(status) for _ in requests], None
        decisions = []
        for item in answer[2:]:
            verdict = _text(item[0])
            if len(item) == 1:
                decisions.append(Decision(verdict))
            else:
                decisions.append(Decision(verdict, int(item[1]), int(item[2]), int(item[3]), message=bytes(item[4])))
        return decisions, promotion

    async def drop(
        self, course_id: str, student_id: str, *, at: datetime, pending_ms: int, request_id: str | None
    ) -> Decision:
        arguments = [student_id, pending_ms, at.isoformat(), request_id or "", course_id]
        answer = await self._drop(_keys(course_id), arguments)
        verdict = _text(answer[0])
        if verdict == "paused":
            raise AdmissionPausedError()
        if len(answer) == 1:
            return Decision(verdict)
        promoted = _text(answer[2]) or None
        return Decision(verdict, int(answer[1]), promoted=promoted, message=bytes(answer[3]))

    async def published(self, course_id: str, seq: int) -> None:
        """The decision's message is on the queue: the reconciler must leave it alone."""
        await self.redis.zrem(DEADLINES, f"{course_id}|{seq}")

    async def published_many(self, members: list[str]) -> None:
        """`published` for many decisions ("course|seq" each) in one command."""
        await self.redis.zrem(DEADLINES, *members)

    async def void(
        self, course_id: str, seq: int, *, at: datetime, pending_ms: int, overdue_only: bool = False
    ) -> tuple[str, bytes | None]:
        """Undo a pending decision. Returns the outcome and a resulting promotion's message, if any.

        voided: undone; kept: later decisions depend on it, or undoing a drop would oversell (it must
        be published); claimed: the worker has it (it stands); standing (with `overdue_only`): it was
        confirmed meanwhile, or its deadline has not passed; lost: the state itself is gone.
        """
        arguments = [seq, pending_ms, at.isoformat(), course_id, "1" if overdue_only else "0"]
        outcome, follow = await self._void(_keys(course_id), arguments)
        return _text(outcome), (bytes(follow) or None)

    async def overdue(self, limit: int = 200) -> list[tuple[str, int]]:
        """Pending decisions past their deadline (by Redis's clock), as (course, sequence)."""
        seconds, micros = await self.redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        members = await self.redis.zrangebyscore(DEADLINES, "-inf", now_ms, start=0, num=limit)
        found = []
        for member in members:
            course_id, _, seq = _text(member).rpartition("|")
            found.append((course_id, int(seq)))
        return found

    async def pending_message(self, course_id: str, seq: int) -> bytes | None:
        return await self.redis.hget(f"{PREFIX}p:{course_id}", str(seq))

    # --- the worker's claims -------------------------------------------------------------------

    async def claim(self, batches: dict[str, list[int]]) -> dict[str, tuple[list[str], list[bytes]]]:
        """Per course: its sequences' outcomes (ok, wait, void, gone), and the messages of earlier
        standing decisions claimed with them (to be written first); one round trip for all."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for course_id, seqs in batches.items():
                await self._claim(_keys(course_id), [course_id, *seqs], client=pipe)
            results = await pipe.execute()
        return {
            course_id: ([_text(o) for o in result[0]], [bytes(body) for body in result[1]])
            for course_id, result in zip(batches, results, strict=True)
        }

    # --- the catalogue's changes ---------------------------------------------------------------

    async def create(self, config: CourseConfig, *, ticket: int, seq: int) -> str:
        return _text(
            await self._create(
                _keys(config.course_id),
                [_capacity(config.capacity), _ms(config.opens_at), _ms(config.closes_at), ticket, seq],
            )
        )

    async def configure(self, config: CourseConfig) -> str:
        """ok, below (capacity under the seats taken), not found or paused."""
        return _text(
            await self._configure(
                _keys(config.course_id), [_capacity(config.capacity), _ms(config.opens_at), _ms(config.closes_at)]
            )
        )

    async def promote(self, course_id: str, *, at: datetime, pending_ms: int) -> bytes | None:
        """Seat waitlisted students while seats are free; the promotion's message, or None."""
        answer = _text(await self._promote(_keys(course_id), [pending_ms, at.isoformat(), course_id]))
        if answer == "paused":
            raise AdmissionPausedError()
        return answer.encode() or None

    async def remove(self, course_id: str, *, force: bool) -> str:
        """First step of a delete: ok (now answering "not found"), has enrollments, not found or paused."""
        return _text(await self._remove(_keys(course_id), ["1" if force else "0"]))

    async def removed(self, course_id: str) -> None:
        """Second step, once the database's delete committed: the state goes, its pending decisions void."""
        await self._removed(_keys(course_id), [course_id])

    async def keep(self, course_id: str) -> None:
        """The database's delete failed: the course takes sign-ups again."""
        await self._keep(_keys(course_id), [])

    # --- reads ---------------------------------------------------------------------------------

    async def configs(self, course_ids: Sequence[str]) -> dict[str, tuple[str, bool] | None]:
        """Per course: its settings as the state holds them (comparable with `settings_of`) and
        whether it is being deleted; None for a course the state does not have."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for course_id in course_ids:
                pipe.hmget(_keys(course_id)[1], "cap", "opens", "closes", "deleting")
            results = await pipe.execute()
        found: dict[str, tuple[str, bool] | None] = {}
        for course_id, (cap, opens, closes, deleting) in zip(course_ids, results, strict=True):
            found[course_id] = None if cap is None else (f"{_text(cap)}|{_text(opens)}|{_text(closes)}", bool(deleting))
        return found

    async def course_ids(self) -> list[str]:
        """Every course the state holds."""
        prefix = _keys("")[1]
        return [_text(key)[len(prefix) :] async for key in self.redis.scan_iter(match=prefix + "*", count=1000)]

    async def counters(self, course_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
        """(enrolled, waitlisted) of each course known to the state; {} when it is not loaded."""
        ids = list(course_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(GENERATION)
            for course_id in ids:
                pipe.hmget(f"{PREFIX}c:{course_id}", "enrolled", "waitlisted")
            results = await pipe.execute()
        if not results[0]:
            return {}
        return {
            course_id: (int(values[0]), int(values[1]))
            for course_id, values in zip(ids, results[1:], strict=True)
            if values[0] is not None
        }

    async def forget(self) -> None:
        """Drop the whole state: admission pauses until the worker has reloaded it from the database."""
        await self.redis.delete(GENERATION)
        await self._wipe()

    async def generation(self) -> str | None:
        value = await self.redis.get(GENERATION)
        return None if value is None else _text(value)

    # --- loading -------------------------------------------------------------------------------

    async def lock_loading(self, ttl_ms: int) -> str | None:
        token = uuid.uuid4().hex
        return token if await self.redis.set(LOADING, token, nx=True, px=ttl_ms) else None

    async def renew_loading(self, token: str, ttl_ms: int) -> bool:
        """Extend the loading lock while this loader holds it; False if it no longer does."""
        return bool(await self._renew([LOADING], [token, ttl_ms]))

    async def unlock_loading(self, token: str) -> None:
        await self._unlock([LOADING], [token])

    async def _wipe(self) -> None:
        async for key in self.redis.scan_iter(match=PREFIX + "*", count=1000):
            if not _kept_on_wipe(_text(key)):
                await self.redis.delete(key)

    async def load(self, courses: Iterable[CourseState], *, chunk: int = 500) -> str:
        """Replace the whole state with these courses, then mark it loaded; returns the generation."""
        await self.redis.delete(GENERATION)
        await self._wipe()
        courses = list(courses)
        ids = [course.config.course_id for course in courses]
        removed_numbers = await self.redis.mget([_keys(course_id)[8] for course_id in ids]) if ids else []
        pipe = self.redis.pipeline(transaction=False)
        for queued, (course, removed_number) in enumerate(zip(courses, removed_numbers, strict=True), start=1):
            c = course.config
            keys = _keys(c.course_id)
            pipe.hset(
                keys[1],
                mapping={
                    "cap": _capacity(c.capacity),
                    "opens": _ms(c.opens_at),
                    "closes": _ms(c.closes_at),
                    "enrolled": len(course.enrolled),
                    "waitlisted": len(course.waitlisted),
                    "ticket": course.ticket,
                    "seq": max(course.seq, int(removed_number or 0)),
                },
            )
            members = {student: "e" for student in course.enrolled}
            members.update({student: str(ticket) for student, ticket in course.waitlisted})
            if members:
                pipe.hset(keys[2], mapping=members)
            if course.waitlisted:
                pipe.zadd(keys[3], {student: ticket for student, ticket in course.waitlisted})
            if queued % chunk == 0:
                await pipe.execute()
        await pipe.execute()
        generation = uuid.uuid4().hex
        await self.redis.set(GENERATION, generation)
        return generation


def settings_of(config: CourseConfig) -> str:
    """A course's capacity and window as the state stores them, for comparing with `configs`."""
    return f"{_capacity(config.capacity)}|{_ms(config.opens_at)}|{_ms(config.closes_at)}"


def _kept_on_wipe(key: str) -> bool:
    """The loading lock, and removed courses' last numbers (a namesake's numbering goes on from them)."""
    return key == LOADING or key.startswith(PREFIX + "t:")


def _capacity(capacity: int | None) -> int:
    return UNLIMITED if capacity is None else capacity


def decode(message: bytes) -> dict[str, Any]:
    """A decision message as a dict; a promotion list may arrive as {} from Lua's empty table."""
    body = json.loads(message)
    if not body.get("pr"):
        body["pr"] = []
    return body
