"""The rush: RUSH_STUDENTS distinct students sign up at once for a course with few seats.

Each student sends one sign-up (waitlist false) over RUSH_CONNECTIONS keep-alive connections that
are all open before the clock starts; connection k sends requests k, k+C, k+2C, ... one after the
other. Exactly `capacity` answers must be 200 and all the others 409 "Course is full.", and the
database must then hold `enrolled == capacity == rows` for the course (and one event per row).
A fixed set of requests rather than a duration, so an asyncio client does it (no wrk).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import harness
from stack import Stack, log
from workload import RUSH_SEATS, RUSH_STUDENTS, Workload, rush_course

RUSH_CONNECTIONS = 256
FULL = "Course is full."


@dataclass(slots=True)
class Answer:
    sent: float  # seconds since the rush began
    answered: float
    status: int
    sentence: str | None  # the envelope's data for an error answer


async def _send_all(port: int, requests: list[bytes], connections: int) -> list[Answer]:
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    began = time.perf_counter()

    async def one_connection(k: int) -> list[Answer]:
        reader, writer = streams[k]
        answers = []
        for request in requests[k::connections]:
            sent = time.perf_counter() - began
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:"), 0
            )
            body = await reader.readexactly(length)
            status = int(head[9:12])
            sentence = None
            if status >= 400:
                try:
                    sentence = json.loads(body).get("data")
                except ValueError:
                    sentence = body[:80].decode(errors="replace")
            answers.append(Answer(sent, time.perf_counter() - began, status, sentence))
        writer.close()
        return answers

    try:
        results = await asyncio.gather(*(one_connection(k) for k in range(connections)))
    finally:
        for _, writer in streams:
            writer.close()
    return [answer for answers in results for answer in answers]


def _request_bytes(port: int, path: str, token: str, body: str) -> bytes:
    payload = body.encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")  # fmt: skip
    return head.encode() + payload


def run(stack: Stack, workload: Workload, target: str, port: int, server: harness.Server) -> list[dict[str, Any]]:
    """The rush on each of RUSH_SEATS against `server` on `port` (its own courses: rush_course(target, …))."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        uvloop = None
    out = []
    for seats in RUSH_SEATS:
        course = rush_course(target, seats)
        requests = [_request_bytes(port, *line) for line in workload.rush_requests(course)]
        time.sleep(0.3)  # the previous run's connections close
        harness.wait_idle(server.pid)
        send = _send_all(port, requests, RUSH_CONNECTIONS)
        answers = uvloop.run(send) if uvloop else asyncio.run(send)
        result = summarise(answers, seats)
        result.update(target=target, course=course, database=_database_check(stack, course))
        result["ok"] = result["answers_ok"] and result["database"]["ok"]
        out.append(result)
        log(f"rush {target:<9} {seats:>4} seats: full after {result['full_ms']:.0f} ms, all answered after "
            f"{result['all_answered_ms']:.0f} ms, refusals {result['refusals_per_s']:.0f}/s, "
            f"p50 {result['p50_ms']:.1f} p99 {result['p99_ms']:.1f} ms, {result['statuses']} "
            f"-> {'ok' if result['ok'] else 'MISMATCH'}")  # fmt: skip
    return out


def summarise(answers: list[Answer], seats: int) -> dict[str, Any]:
    """Time until the course was full, the refusal rate after that, latencies, and the answers' check."""
    latencies = sorted(a.answered - a.sent for a in answers)
    statuses: dict[str, int] = {}
    for a in answers:
        statuses[str(a.status)] = statuses.get(str(a.status), 0) + 1
    seated = [a for a in answers if a.status == 200]
    full = [a for a in answers if a.status == 409 and a.sentence == FULL]
    full_at = max((a.answered for a in seated), default=0.0)  # the last seat's answer
    end = max(a.answered for a in answers)
    after = [a for a in full if a.answered > full_at]

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    return {
        "seats": seats, "students": len(answers), "connections": RUSH_CONNECTIONS, "statuses": statuses,
        "full_ms": round(full_at * 1000, 1), "all_answered_ms": round(end * 1000, 1),
        "answers_per_s": round(len(answers) / end, 1),
        # Refusals answered after the last seat was given, per second of that stretch.
        "refusals_per_s": round(len(after) / (end - full_at), 1) if end > full_at and after else 0.0,
        "p50_ms": round(pct(50), 2), "p99_ms": round(pct(99), 2), "max_ms": round(latencies[-1] * 1000, 2),
        "answers_ok": len(answers) == RUSH_STUDENTS and len(seated) == seats and len(full) == RUSH_STUDENTS - seats,
    }  # fmt: skip


def _database_check(stack: Stack, course: str) -> dict[str, Any]:
    capacity, enrolled, rows, seated_rows, events = (
        int(v)
        for v in stack.psql(
            "SELECT capacity, enrolled, (SELECT count(*) FROM enrollments e WHERE e.course_id = c.course_id), "
            "(SELECT count(*) FROM enrollments e WHERE e.course_id = c.course_id AND e.status = 'enrolled'), "
            "(SELECT count(*) FROM course_events v WHERE v.course_id = c.course_id) "
            f"FROM courses c WHERE course_id = '{course}'"
        ).split("|")
    )
    return {
        "capacity": capacity, "enrolled": enrolled, "rows": rows, "enrolled_rows": seated_rows, "events": events,
        "ok": enrolled == capacity == rows == seated_rows == events,
    }  # fmt: skip
