"""GET /courses?q= and ?available=: what they match, keyset pages over them, the cache, and the trigram index."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from course_signup.adapters.repositories import CourseRepository
from course_signup.domain.pagination import PageRequest
from course_signup.settings import Settings
from tests.api.helpers import assert_error, new_course, sign_up
from tests.conftest import email, running_app, truncate, unique


def _at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")


async def search(client: httpx.AsyncClient, **params: Any) -> list[str]:
    """The course ids of one page of GET /courses with these parameters."""
    response = await client.get("/courses", params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    return [course["courseId"] for course in response.json()["data"]]


async def walk(
    client: httpx.AsyncClient,
    params: dict[str, Any],
    *,
    limit: int,
    between: Callable[[int, str], Awaitable[None]] | None = None,
) -> list[str]:
    """Every course id of a filtered listing, page by page; `between(page, last_id)` runs after each page."""
    seen: list[str] = []
    cursor, page = None, 0
    while True:
        query = {**params, "limit": limit} | ({"cursor": cursor} if cursor else {})
        body = (await client.get("/courses", params=query)).json()
        assert len(body["data"]) <= limit
        seen += [course["courseId"] for course in body["data"]]
        cursor = body["page"]["nextCursor"]
        if cursor is None:
            return seen
        if between is not None:
            await between(page, seen[-1])
        page += 1


async def test_q_matches_the_course_id_or_the_name_in_any_case(client: httpx.AsyncClient, admin_headers):
    token = unique("")
    by_id = await new_course(client, admin_headers, courseId=f"Q{token}", name="Organic Chemistry")
    by_name = await new_course(client, admin_headers, name=f"Topics in {token.lower()} studies")
    await new_course(client, admin_headers, name="Unrelated")
    both = sorted([by_id, by_name])
    assert await search(client, q=token) == both
    assert await search(client, q=token.lower()) == both
    assert await search(client, q=token[1:7].lower().capitalize()) == both  # any substring, any case
    assert await search(client, q=f"  {token}\t ") == both  # trimmed
    assert await search(client, q=f"q{token[:5]}".lower()) == [by_id]  # from the id only
    assert await search(client, q=f"IN {token} ST") == [by_name]  # inner spaces are kept
    assert await search(client, q="organic chem") == [by_id]
    assert await search(client, q=f"{token}-nothing") == []


async def test_percent_underscore_backslash_and_quotes_in_q_are_ordinary_characters(
    client: httpx.AsyncClient, admin_headers
):
    token = unique("")
    names = {
        "percent": f"{token} 100% pass",
        "percent decoy": f"{token} 1000 pass",  # `100% pass` as a wildcard pattern would match it
        "underscore": f"{token} a_b",
        "underscore decoy": f"{token} axb",
        "backslash": f"{token} c\\d",
        "backslash decoy": f"{token} cd",  # `c\d` with `\` as the escape character would match it
        "quote": f"{token} O'Brien",
    }
    ids = {label: await new_course(client, admin_headers, name=name) for label, name in names.items()}
    mine = set(ids.values())
    for label in ("percent", "underscore", "backslash", "quote"):
        assert await search(client, q=names[label]) == [ids[label]], label
    assert set(await search(client, q="%")) & mine == {ids["percent"]}
    assert set(await search(client, q="_")) & mine == {ids["underscore"]}
    assert set(await search(client, q="\\")) & mine == {ids["backslash"]}
    assert set(await search(client, q="'")) & mine == {ids["quote"]}
    assert await search(client, q=f"{token} %") == []  # as a wildcard it would match all of them


async def test_q_must_have_1_to_100_characters_not_all_white_space_and_no_control_characters(
    client: httpx.AsyncClient, admin_headers
):
    course = await new_course(client, admin_headers, name="x" * 100)
    for bad in ("", " ", "\t \n", "x" * 101, "a\x00b", "a\tb", "a\x7f", "\x1f"):
        assert_error(await client.get("/courses", params={"q": bad}), 400)
    assert await search(client, q="x" * 100) == [course]
    assert await search(client, q="\u3000x\u00a0") == [course]  # trimmed like str.strip()
    assert_error(await client.get("/courses", params={"available": "maybe"}), 400)


async def test_available_keeps_courses_with_a_seat_left_whose_window_is_open(
    client: httpx.AsyncClient, admin_headers, auth
):
    token = unique("")

    async def course(label: str, **fields: Any) -> str:
        return await new_course(client, admin_headers, name=f"{token} {label}", **fields)

    roomy = await course("one of two seats taken", capacity=2)
    full = await course("full", capacity=1)
    no_seats = await course("no seats at all", capacity=0)
    unlimited = await course("unlimited")
    closed = await course("closed", capacity=5, registrationClosesAt=_at(timedelta(minutes=-1)))
    not_yet = await course("not yet open", capacity=5, registrationOpensAt=_at(timedelta(hours=1)))
    inside = await course(
        "inside its window",
        capacity=5,
        registrationOpensAt=_at(timedelta(hours=-1)),
        registrationClosesAt=_at(timedelta(hours=1)),
    )
    student = email()
    for seat in (roomy, full):
        assert (await sign_up(client, student, seat, auth(student))).status_code == 200
    everything = sorted([roomy, full, no_seats, unlimited, closed, not_yet, inside])
    assert await search(client, q=token, available="true") == sorted([roomy, unlimited, inside])
    assert await search(client, q=token, available="false") == everything
    assert await search(client, q=token) == everything
    answer = (await client.get("/courses", params={"q": token, "available": "true"})).json()["data"]
    assert all(c["seatsLeft"] is None or c["seatsLeft"] > 0 for c in answer)
    # the seat of the full course frees up: it is available again at once (a local write clears the cache)
    dropped = await client.delete(f"/students/{student}/courses/{full}", headers=auth(student))
    assert dropped.status_code == 200
    assert await search(client, q=token, available="true") == sorted([roomy, full, unlimited, inside])


async def test_a_filtered_walk_with_small_pages_visits_every_match_once_in_order(
    client: httpx.AsyncClient, admin_headers
):
    token, base = unique(""), unique("P")[:8]
    # Matching and other courses interleave by id; a third of the matching ones have no seats.
    matching, seatless = [], []
    for i in range(12):
        matched = await new_course(
            client, admin_headers, courseId=f"{base}{i:02d}M", name=f"{token} {i}", capacity=0 if i % 3 == 0 else 9
        )
        (seatless if i % 3 == 0 else matching).append(matched)
        await new_course(client, admin_headers, courseId=f"{base}{i:02d}N", name="Other")
    inserted: list[str] = []

    async def insert_between(page: int, last: str) -> None:
        # After the cursor: must be visited. Before it, or not matching: must not be.
        inserted.append(await new_course(client, admin_headers, courseId=f"{last}Z{page}", name=f"{token} new"))
        await new_course(client, admin_headers, courseId=f"{base}00A{page}", name=f"{token} behind")
        await new_course(client, admin_headers, courseId=f"{last}Y{page}", name="Other new")

    for limit in (1, 2, 5):
        assert await walk(client, {"q": token.lower()}, limit=limit) == sorted(matching + seatless + inserted)
    assert await walk(client, {"q": token, "available": "true"}, limit=2) == sorted(matching + inserted)

    inserted.clear()
    before = sorted(matching + seatless)
    seen = await walk(client, {"q": token}, limit=3, between=insert_between)
    assert seen == sorted(before + inserted)
    assert len(inserted) >= 4 and len(set(seen)) == len(seen)

    # A cursor is only a position: one from a search pages an unfiltered or available-only listing too.
    first = (await client.get("/courses", params={"q": token, "limit": 2})).json()
    cursor, last = first["page"]["nextCursor"], first["data"][-1]["courseId"]
    for params in ({}, {"available": "true"}, {"q": "other"}):
        page = await client.get("/courses", params={**params, "cursor": cursor, "limit": 1000})
        assert page.status_code == 200
        ids = [c["courseId"] for c in page.json()["data"]]
        assert ids and ids == sorted(ids) and ids[0] > last
    assert_error(await client.get("/courses", params={"q": token, "cursor": "not-a-cursor"}), 400)


async def test_filtered_answers_are_cached_per_query_and_cleared_by_a_local_write(settings: Settings, client, tokens):
    # `client` only for its clean-up. A TTL far beyond the test (the setting allows at most 1 s) shows
    # that only the write, not an expiry, brings the new answers.
    admin = {"Authorization": f"Bearer {tokens.issue('registrar@example.com', admin=True)}"}
    first, second = unique(""), unique("")
    async with running_app(settings.model_copy(update={"cache_ttl_seconds": 30.0})) as app:
        a = await new_course(app, admin, name=f"{first} a", capacity=1)
        b = await new_course(app, admin, name=f"{second} b")
        for _ in range(2):  # the second round is answered from the cache
            assert await search(app, q=first) == [a]
            assert await search(app, q=second) == [b]
            assert await search(app, q=first, available="true") == [a]
            assert await search(app, available="true", q=second) == [b]
        c = await new_course(app, admin, name=f"{first} c", capacity=0)
        assert await search(app, q=first) == sorted([a, c])
        assert await search(app, q=first, available="true") == [a]
        student = email()
        signed = await sign_up(app, student, a, {"Authorization": f"Bearer {tokens.issue(student)}"})
        assert signed.status_code == 200
        assert await search(app, q=first, available="true") == []
        assert await search(app, q=second, available="true") == [b]


async def test_available_answers_follow_a_window_within_the_cache_ttl(settings: Settings, client, tokens):
    # `client` only for its clean-up; the app here caches for 1 s, the most the setting allows.
    admin = {"Authorization": f"Bearer {tokens.issue('registrar@example.com', admin=True)}"}
    token, ttl = unique(""), 1.0
    moment = datetime.now(UTC) + timedelta(seconds=2)
    at = moment.isoformat().replace("+00:00", "Z")
    async with running_app(settings.model_copy(update={"cache_ttl_seconds": ttl})) as app:
        opening = await new_course(app, admin, name=f"{token} opens", registrationOpensAt=at)
        closing = await new_course(app, admin, name=f"{token} closes", registrationClosesAt=at)
        assert await search(app, q=token, available="true") == [closing]
        assert await search(app, q=token, available="true") == [closing]  # cached
        await asyncio.sleep((moment - datetime.now(UTC)).total_seconds() + ttl + 0.3)
        assert await search(app, q=token, available="true") == [opening]


@pytest.mark.postgres
async def test_a_search_uses_the_trigram_indexes_on_postgresql_even_in_a_generic_plan(postgres_url: str):
    # PostgreSQL only: the trigram indexes exist there alone (SQLite scans its catalogue).
    settings = Settings(database_url=postgres_url)
    token, words = unique(""), ["Intro", "Advanced", "Calculus", "Physics", "Biology", "History", "Law", "Art"]
    rng = random.Random(11)
    names = [" ".join(rng.sample(words, 3)) + f" {i}" for i in range(3000)] + [f"Quantum {token}"]
    engine = create_async_engine(settings.sqlalchemy_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO courses (course_id, name, lessons, capacity, enrolled, waitlisted, waitlist_seq,"
                    " created_at, updated_at) SELECT 'X' || lpad(n::text, 5, '0'), name, 0, NULL, 0, 0, 0, now(), now()"
                    " FROM unnest(CAST(:names AS text[])) WITH ORDINALITY AS t(name, n)"
                ),
                {"names": names},
            )
        async with engine.connect() as connection:
            # VACUUM moves GIN's pending list into the index proper, as autovacuum does in service.
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM ANALYZE courses"))
        sent: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
        async with engine.connect() as connection:
            rows = await CourseRepository(connection).list(PageRequest(limit=20), text=token.lower())
            assert list(rows) == ["X03001"]  # on a bare connection, scalars() is the first column
            # The statement as the driver prepared it, planned as a connection that has run it often
            # may plan it: generic, blind to parameter values. Only its LIMIT may be a parameter.
            search_sql = next(statement for statement in sent if " LIKE " in statement)
            name = await connection.scalar(
                text("SELECT name FROM pg_prepared_statements WHERE statement = :sql"), {"sql": search_sql}
            )
            assert name is not None
            await connection.execute(text("SET plan_cache_mode = force_generic_plan"))
            await connection.execute(text("SET enable_seqscan = off"))
            plan = "\n".join(row[0] for row in await connection.exec_driver_sql(f'EXPLAIN EXECUTE "{name}"(21)'))
        assert "ix_courses_lower_course_id_trgm" in plan and "ix_courses_lower_name_trgm" in plan, plan
    finally:
        await truncate(settings)
        await engine.dispose()
