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
    ]


# Shared by the scripts: KEYS = _keys(course). `promote` seats waitlisted students in ticket order
# while seats are free; `pend` records a decision message under a new sequence number.
_LIB = """
local function promote()
  local cap = tonumber(redis.call('HGET', KEYS[2], 'cap'))
  local enrolled = tonumber(redis.call('HGET', KEYS[2], 'enrolled'))
  local promoted = {}
  while (cap < 0 or enrolled < cap) and redis.call('ZCARD', KEYS[4]) > 0 do
    local head = redis.call('ZPOPMIN', KEYS[4])
    redis.call('HSET', KEYS[3], head[1], 'e')
    enrolled = redis.call('HINCRBY', KEYS[2], 'enrolled', 1)
    redis.call('HINCRBY', KEYS[2], 'waitlisted', -1)
    promoted[#promoted + 1] = {head[1], tonumber(head[2])}
  end
  return promoted
end

local function pend(message, course, deadline)
  local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
  message['s'] = seq
  local body = cjson.encode(message)
  redis.call('HSET', KEYS[5], seq, body)
  redis.call('ZADD', KEYS[6], deadline, course .. '|' .. seq)
  return seq, body
end

local function promote_decision(course, deadline, at)
  local promoted = promote()
  if #promoted == 0 then return '' end
  local _, body = pend({t = 'promote', c = course, pr = promoted, at = at, rid = ''}, course, deadline)
  return body
end
"""

# ARGV: now (ms), deadline (ms), at (ISO), course id, then per request: student, waitlist (1/0), request id.
# The requests are decided one after the other, in order, as if each came alone. Per request:
# {verdict} for a refusal, {verdict, seq, ticket, position, message} for a decision.
_SIGN_UP = (
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {{'paused'}} end
local out = {}
local now, deadline, at, course = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', KEYS[2]) == 0 then
  for i = 5, #ARGV, 3 do out[#out + 1] = {'not found'} end
  return out
end
local f = redis.call('HMGET', KEYS[2], 'cap', 'opens', 'closes')
if (f[2] ~= '' and now < tonumber(f[2])) or (f[3] ~= '' and now >= tonumber(f[3])) then
  for i = 5, #ARGV, 3 do out[#out + 1] = {'closed'} end
  return out
end
local cap = tonumber(f[1])
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
      local seq, body = pend({t = 'signup', c = course, st = student, v = verdict, tk = ticket,
                              at = at, rid = request}, course, deadline)
      out[#out + 1] = {verdict, seq, ticket, position, body}
    else
      out[#out + 1] = {'full'}
    end
  end
end
return out
"""
)

# ARGV: student, deadline (ms), at (ISO), request id, course id
_DROP = (
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'paused'} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'not found'} end
local member = redis.call('HGET', KEYS[3], ARGV[1])
if not member then return {'not found'} end
redis.call('HDEL', KEYS[3], ARGV[1])
local kind, ticket, promoted = 'dropped', 0, {}
if member == 'e' then
  redis.call('HINCRBY', KEYS[2], 'enrolled', -1)
  promoted = promote()
else
  kind, ticket = 'left_waitlist', tonumber(member)
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('HINCRBY', KEYS[2], 'waitlisted', -1)
end
local seq, body = pend({t = 'drop', c = ARGV[5], st = ARGV[1], k = kind, tk = ticket, pr = promoted,
                        at = ARGV[3], rid = ARGV[4]}, ARGV[5], ARGV[2])
local first = ''
if #promoted > 0 then first = promoted[1][1] end
return {kind, seq, first, body}
"""
)

# ARGV: sequence, deadline for a resulting promotion (ms), at (ISO), course id
_VOID = (
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'lost', ''} end
local raw = redis.call('HGET', KEYS[5], ARGV[1])
if not raw then
  if redis.call('SISMEMBER', KEYS[7], ARGV[1]) == 1 then return {'voided', ''} end
  return {'claimed', ''}
end
local m = cjson.decode(raw)
local follow = ''
local course_exists = redis.call('EXISTS', KEYS[2]) == 1
if m.t == 'signup' then
  local mark = 'e'
  if m.v == 'waitlisted' then mark = tostring(m.tk) end
  if course_exists and redis.call('HGET', KEYS[3], m.st) == mark then
    redis.call('HDEL', KEYS[3], m.st)
    if m.v == 'enrolled' then
      redis.call('HINCRBY', KEYS[2], 'enrolled', -1)
      follow = promote_decision(ARGV[4], ARGV[2], ARGV[3])
    else
      redis.call('ZREM', KEYS[4], m.st)
      redis.call('HINCRBY', KEYS[2], 'waitlisted', -1)
    end
  end
elseif m.t == 'drop' then
  if not course_exists or redis.call('HEXISTS', KEYS[3], m.st) == 1 then return {'kept', ''} end
  if m.k == 'dropped' then
    local cap = tonumber(redis.call('HGET', KEYS[2], 'cap'))
    local enrolled = tonumber(redis.call('HGET', KEYS[2], 'enrolled'))
    for _, p in ipairs(m.pr) do
      if redis.call('HGET', KEYS[3], p[1]) ~= 'e' then return {'kept', ''} end
    end
    if #m.pr == 0 and not (cap < 0 or enrolled < cap) then return {'kept', ''} end
    for _, p in ipairs(m.pr) do
      redis.call('HSET', KEYS[3], p[1], tostring(p[2]))
      redis.call('ZADD', KEYS[4], p[2], p[1])
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

# ARGV: course id, then sequences in ascending order. For each: ok (claimed now), wait (an earlier
# decision of the course is still pending: try again later), void (undone: skip), gone (not pending:
# claimed before, or the state was lost; the worker writes it if the database has not).
_CLAIM = """
local nums = {}
for _, k in ipairs(redis.call('HKEYS', KEYS[5])) do nums[#nums + 1] = tonumber(k) end
table.sort(nums)
local taken, next_index = {}, 1
local function lowest()
  while next_index <= #nums and taken[nums[next_index]] do next_index = next_index + 1 end
  return nums[next_index]
end
local out, blocked = {}, false
for i = 2, #ARGV do
  local s = ARGV[i]
  local n = tonumber(s)
  if blocked then
    out[#out + 1] = 'wait'
  elseif redis.call('HEXISTS', KEYS[5], s) == 1 then
    local low = lowest()
    if low ~= nil and low < n then
      blocked = true
      out[#out + 1] = 'wait'
    else
      redis.call('HDEL', KEYS[5], s)
      redis.call('ZREM', KEYS[6], ARGV[1] .. '|' .. s)
      taken[n] = true
      out[#out + 1] = 'ok'
    end
  elseif redis.call('SISMEMBER', KEYS[7], s) == 1 then
    out[#out + 1] = 'void'
  else
    out[#out + 1] = 'gone'
  end
end
return out
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

# ARGV: deadline (ms), at (ISO), course id
_PROMOTE = (
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'paused' end
if redis.call('EXISTS', KEYS[2]) == 0 then return '' end
return promote_decision(ARGV[3], ARGV[1], ARGV[2])
"""
)

# ARGV: capacity, opens, closes, waitlist ticket, decision sequence (the database's, for a new course)
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'paused' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'exists' end
redis.call('HSET', KEYS[2], 'cap', ARGV[1], 'opens', ARGV[2], 'closes', ARGV[3], 'enrolled', 0,
           'waitlisted', 0, 'ticket', ARGV[4], 'seq', ARGV[5])
return 'ok'
"""

# ARGV: force (1/0)
_REMOVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'paused' end
if redis.call('EXISTS', KEYS[2]) == 0 then return 'not found' end
if ARGV[1] ~= '1' and redis.call('HLEN', KEYS[3]) > 0 then return 'has enrollments' end
local removed = redis.call('HGETALL', KEYS[3])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return removed
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
    """The scripts above on one Redis client (decode_responses off: messages stay bytes)."""

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

    # --- the API's decisions -------------------------------------------------------------------

    async def sign_up(
        self, course_id: str, student_id: str, *, waitlist: bool, at: datetime, deadline_ms: int, request_id: str | None
    ) -> Decision:
        requests = [(student_id, waitlist, request_id)]
        return (await self.sign_up_many(course_id, requests, at=at, deadline_ms=deadline_ms))[0]

    async def sign_up_many(
        self, course_id: str, requests: Sequence[tuple[str, bool, str | None]], *, at: datetime, deadline_ms: int
    ) -> list[Decision]:
        """Decide (student, waitlist, request id) sign-ups in order, in one script: as if one by one."""
        arguments: list[Any] = [_ms(at), deadline_ms, at.isoformat(), course_id]
        for student_id, waitlist, request_id in requests:
            arguments += [student_id, "1" if waitlist else "0", request_id or ""]
        answers = await self._sign_up(_keys(course_id), arguments)
        if answers and _text(answers[0][0]) == "paused":
            raise AdmissionPausedError()
        decisions = []
        for answer in answers:
            verdict = _text(answer[0])
            if len(answer) == 1:
                decisions.append(Decision(verdict))
            else:
                decisions.append(
                    Decision(verdict, int(answer[1]), int(answer[2]), int(answer[3]), message=bytes(answer[4]))
                )
        return decisions

    async def drop(
        self, course_id: str, student_id: str, *, at: datetime, deadline_ms: int, request_id: str | None
    ) -> Decision:
        answer = await self._drop(
            _keys(course_id), [student_id, deadline_ms, at.isoformat(), request_id or "", course_id]
        )
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

    async def void(self, course_id: str, seq: int, *, at: datetime, deadline_ms: int) -> tuple[str, bytes | None]:
        """Undo a pending decision: ('voided', promotion message or None), 'kept', 'claimed' or 'lost'.

        kept: a drop that cannot be undone without overselling (it must be published); claimed: the
        worker has it (it stands); lost: the state itself is gone (Redis came back empty).
        """
        outcome, follow = await self._void(_keys(course_id), [seq, deadline_ms, at.isoformat(), course_id])
        return _text(outcome), (bytes(follow) or None)

    async def overdue(self, now_ms: int, limit: int = 200) -> list[tuple[str, int]]:
        """Pending decisions past their deadline, as (course, sequence)."""
        members = await self.redis.zrangebyscore(DEADLINES, "-inf", now_ms, start=0, num=limit)
        found = []
        for member in members:
            course_id, _, seq = _text(member).rpartition("|")
            found.append((course_id, int(seq)))
        return found

    async def pending_message(self, course_id: str, seq: int) -> bytes | None:
        return await self.redis.hget(f"{PREFIX}p:{course_id}", str(seq))

    async def postpone(self, course_id: str, seq: int, deadline_ms: int) -> None:
        await self.redis.zadd(DEADLINES, {f"{course_id}|{seq}": deadline_ms}, xx=True)

    # --- the worker's claims -------------------------------------------------------------------

    async def claim(self, batches: dict[str, list[int]]) -> dict[str, list[str]]:
        """For each course, its sequences' outcomes (ok, wait, void, gone), in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for course_id, seqs in batches.items():
                await self._claim(_keys(course_id), [course_id, *seqs], client=pipe)
            results = await pipe.execute()
        return {
            course_id: [_text(outcome) for outcome in result]
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

    async def promote(self, course_id: str, *, at: datetime, deadline_ms: int) -> bytes | None:
        """Seat waitlisted students while seats are free; the promotion's message, or None."""
        answer = _text(await self._promote(_keys(course_id), [deadline_ms, at.isoformat(), course_id]))
        if answer == "paused":
            raise AdmissionPausedError()
        return answer.encode() or None

    async def remove(self, course_id: str, *, force: bool) -> str | dict[str, str]:
        """The removed course's members (student -> mark), or has enrollments / not found / paused."""
        answer = await self._remove(_keys(course_id), ["1" if force else "0"])
        if isinstance(answer, list):
            pairs = [_text(item) for item in answer]
            return dict(zip(pairs[::2], pairs[1::2], strict=True))
        return _text(answer)

    # --- reads ---------------------------------------------------------------------------------

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
        """Mark the state not loaded: admission pauses until the worker has reloaded it from the database."""
        await self.redis.delete(GENERATION)

    async def generation(self) -> str | None:
        value = await self.redis.get(GENERATION)
        return None if value is None else _text(value)

    # --- loading -------------------------------------------------------------------------------

    async def lock_loading(self, ttl_ms: int) -> str | None:
        token = uuid.uuid4().hex
        return token if await self.redis.set(LOADING, token, nx=True, px=ttl_ms) else None

    async def unlock_loading(self, token: str) -> None:
        if _text(await self.redis.get(LOADING) or b"") == token:
            await self.redis.delete(LOADING)

    async def load(self, courses: Iterable[CourseState], *, chunk: int = 500) -> str:
        """Replace the whole state with these courses, then mark it loaded; returns the generation."""
        await self.redis.delete(GENERATION)
        async for key in self.redis.scan_iter(match=PREFIX + "*", count=1000):
            if _text(key) != LOADING:
                await self.redis.delete(key)
        pipe = self.redis.pipeline(transaction=False)
        for queued, course in enumerate(courses, start=1):
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
                    "seq": course.seq,
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


def _capacity(capacity: int | None) -> int:
    return UNLIMITED if capacity is None else capacity


def decode(message: bytes) -> dict[str, Any]:
    """A decision message as a dict; a promotion list may arrive as {} from Lua's empty table."""
    body = json.loads(message)
    if not body.get("pr"):
        body["pr"] = []
    return body
