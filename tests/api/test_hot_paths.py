"""Sign-up and my-courses answered before FastAPI routing give exactly the answers the FastAPI routes give.

The same script of requests (valid ones, every refusal, and inputs the hot paths must hand on to
FastAPI) runs against the app as it is and against the same app without its HotPaths middleware,
each on courses and students of its own; the answers must match status for status, byte for byte
(once the run's own ids and times are masked). Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from course_signup.api import hot_paths
from course_signup.app import create_app
from course_signup.settings import Settings

TIME = re.compile(rb'"\d{4}-\d\d-\d\dT[0-9:.]+Z"')
CURSOR = re.compile(rb'"nextCursor":"[^"]+"')
REQUEST_ID = re.compile(rb'"req[0-9a-f]{32}"')


async def _script(client: httpx.AsyncClient, tokens: Any, run: str) -> list[tuple[int, bytes, tuple[str | None, ...]]]:
    """Every answer of one run; `run` makes its course ids and e-mails its own."""
    admin = {"Authorization": f"Bearer {tokens.issue('registrar@example.com', admin=True)}"}
    alice, bob, carol = (f"{name}-{run}@example.com" for name in ("alice", "bob", "carol"))

    def auth(student: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.issue(student)}"}

    one_seat, roomy, closed = (f"{name}{run}".upper() for name in ("ONE", "ROOMY", "SHUT"))
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for course, fields in (
        (one_seat, {"capacity": 1}),
        (roomy, {"capacity": 5}),
        (closed, {"registrationOpensAt": later}),
    ):
        created = await client.post("/courses", json={"courseId": course, "name": "Hot", **fields}, headers=admin)
        assert created.status_code == 201, created.text

    answers: list[httpx.Response] = []

    async def post(student: str, body: Any, headers: dict[str, str], **extra: str) -> None:
        answers.append(await client.post(f"/students/{student}/courses", json=body, headers={**headers, **extra}))

    async def get(student: str, query: str, headers: dict[str, str]) -> httpx.Response:
        answer = await client.get(f"/students/{student}/courses{query}", headers=headers)
        answers.append(answer)
        return answer

    await post(alice, {"courseId": one_seat}, auth(alice))
    await post(alice, {"courseId": one_seat.lower()}, auth(alice))  # already enrolled
    await post(bob, {"courseId": one_seat}, auth(bob))  # full
    await post(bob, {"courseId": one_seat, "waitlist": True}, auth(bob))  # waitlisted, position 1
    await post(bob, {"courseId": one_seat, "waitlist": True}, auth(bob))  # already waitlisted
    await post(carol, {"courseId": f"NOPE{run}"}, auth(carol))  # unknown course
    await post(carol, {"courseId": closed}, auth(carol))  # registration closed
    await post(alice, {"courseId": roomy}, auth(bob))  # another student's path
    await post(alice, {"courseId": roomy}, {})  # no token
    await post(alice, {"courseId": roomy}, {"Authorization": "Bearer not-a-token"})
    await post(alice, {"courseId": roomy}, {"Authorization": "Basic YWxpY2U6cHc="})
    await post(alice, {"courseId": roomy, "note": "hi"}, auth(alice))  # an unknown field: ignored
    await post(carol, {"courseId": roomy, "waitlist": "yes"}, auth(carol))  # not a boolean
    await post(carol, {"courseId": "bad id!"}, auth(carol))
    await post(carol, [roomy], auth(carol))
    await post(carol, {}, auth(carol))
    await post(carol, {"courseId": roomy}, auth(carol), **{"Idempotency-Key": f"k-{run}"})
    await post(carol, {"courseId": roomy}, auth(carol), **{"Idempotency-Key": f"k-{run}"})  # replayed
    await post(f"  {bob.upper()} ", {"courseId": roomy}, auth(bob))  # trimmed and lower-cased
    await post("not-an-email", {"courseId": roomy}, auth(bob))
    await get(alice, "", auth(alice))
    first = await get(alice, "?limit=1", auth(alice))
    cursor = first.json()["page"]["nextCursor"]
    await get(alice, f"?limit=1&cursor={cursor}", auth(alice))
    await get(bob, "?status=waitlisted", auth(bob))
    await get(bob, "?status=enrolled&limit=1000", admin)
    for query in (
        "?limit=0",
        "?limit=1001",
        "?limit=abc",
        "?limit=",
        "?cursor=garbage",
        "?cursor=",
        "?status=x",
        "?other=1",
        "?limit=1&limit=2",
        "?limit=+5",
    ):
        await get(alice, query, auth(alice))
    await get(alice, "", auth(bob))
    await get(alice, "", {})
    await get("Not an e-mail", "", auth(alice))

    def mask(body: bytes) -> bytes:
        body = body.replace(run.encode(), b"RUN").replace(run.upper().encode(), b"RUN")
        body = TIME.sub(b'"TIME"', body)
        return CURSOR.sub(b'"nextCursor":"CURSOR"', body)

    kept = ("content-type", "www-authenticate", "retry-after", "idempotent-replayed", "cache-control")
    return [(a.status_code, mask(a.content), tuple(a.headers.get(h) for h in kept)) for a in answers]


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the hot paths answered themselves."""
    answered: list[str] = []
    original = hot_paths._answer

    async def spy(scope, send, work):  # type: ignore[no-untyped-def]
        answered.append(scope["path"])
        await original(scope, send, work)

    monkeypatch.setattr(hot_paths, "_answer", spy)
    return answered


async def test_hot_paths_answer_exactly_as_the_fastapi_routes(settings: Settings, tokens, counted: list[str]):
    hot, plain = create_app(settings), create_app(settings)
    plain.user_middleware = [m for m in plain.user_middleware if m.cls is not hot_paths.HotPaths]
    assert len(plain.user_middleware) == len(hot.user_middleware) - 1
    results = []
    for application in (hot, plain):
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                results.append(await _script(client, tokens, uuid.uuid4().hex[:8]))
        if application is hot:
            answered_by_hot_paths = len(counted)
    with_hot_paths, without = results
    assert len(with_hot_paths) == len(without)
    for number, (one, other) in enumerate(zip(with_hot_paths, without, strict=True)):
        assert one == other, f"answer {number} differs"
    # 12 sign-ups and 8 reads were plain enough for the hot paths; the other 21 went on to FastAPI
    assert answered_by_hot_paths == 20
    assert len(counted) == answered_by_hot_paths  # and the plain app never used them
