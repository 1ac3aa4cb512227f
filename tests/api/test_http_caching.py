"""HTTP validators on the catalogue: ETag, Cache-Control and If-None-Match -> 304, from the route and from the cache."""

from __future__ import annotations

import httpx

from course_signup.api.response_cache import entity_tag
from course_signup.settings import Settings
from tests.api.helpers import assert_error, new_course, sign_up
from tests.conftest import email, running_app


def assert_validators(response: httpx.Response) -> str:
    """The answer carries a strong ETag of its exact body bytes and `Cache-Control: no-cache`; returns the ETag."""
    etag = response.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    if response.status_code == 200:
        assert etag == entity_tag(response.content).decode()
    assert response.headers["Cache-Control"] == "no-cache"
    return etag


def assert_not_modified(response: httpx.Response, etag: str) -> None:
    assert response.status_code == 304, response.text
    assert response.content == b""
    assert "content-type" not in response.headers
    assert response.headers.get("content-length", "0") == "0"
    assert assert_validators(response) == etag
    assert response.headers["X-Request-ID"]


async def test_catalogue_reads_carry_an_etag_and_revalidate_to_304(client: httpx.AsyncClient, admin_headers):
    course = await new_course(client, admin_headers, capacity=3)
    for path in ("/courses?limit=10", f"/courses/{course}", f"/courses/{course.lower()}"):
        first = await client.get(path)
        assert first.status_code == 200
        etag = assert_validators(first)
        assert assert_validators(await client.get(path)) == etag  # same bytes, same tag
        again = await client.get(path, headers={"If-None-Match": etag, "X-Request-ID": "revalidate-1"})
        assert_not_modified(again, etag)
        assert again.headers["X-Request-ID"] == "revalidate-1"
    # a different body is a different tag: another page size, another course
    other = await new_course(client, admin_headers)
    tags = {assert_validators(await client.get(path)) for path in ("/courses?limit=1", "/courses?limit=2")}
    tags |= {assert_validators(await client.get(f"/courses/{c}")) for c in (course, other)}
    assert len(tags) == 4


async def test_a_write_changes_the_etag_and_the_old_one_gets_the_new_answer(
    client: httpx.AsyncClient, admin_headers, auth
):
    course = await new_course(client, admin_headers, capacity=3)
    paths = ("/courses", f"/courses/{course}")
    before = {path: assert_validators(await client.get(path)) for path in paths}
    student = email()
    assert (await sign_up(client, student, course, auth(student))).status_code == 200
    for path in paths:
        fresh = await client.get(path, headers={"If-None-Match": before[path]})
        assert fresh.status_code == 200
        assert assert_validators(fresh) != before[path]
        assert '"enrolled":1' in fresh.text
        new_tag = fresh.headers["ETag"]
        assert_not_modified(await client.get(path, headers={"If-None-Match": new_tag}), new_tag)
    await client.patch(f"/courses/{course}", json={"name": "Renamed"}, headers=admin_headers)
    renamed = await client.get(f"/courses/{course}", headers={"If-None-Match": before[f"/courses/{course}"]})
    assert renamed.status_code == 200 and renamed.json()["data"]["name"] == "Renamed"


async def test_if_none_match_takes_a_list_weak_tags_and_a_star(client: httpx.AsyncClient, admin_headers):
    course = await new_course(client, admin_headers)
    path = f"/courses/{course}"
    etag = assert_validators(await client.get(path))
    matching = (
        f'"elsewhere", {etag}',
        f'{etag},"elsewhere"',
        f'  "a" ,  W/"b",{etag}  ',
        f"W/{etag}",  # weak comparison: W/"x" and "x" are the same tag here
        f'W/"elsewhere", W/{etag}',
        "*",
        " * ",
    )
    for header in matching:
        assert_not_modified(await client.get(path, headers={"If-None-Match": header}), etag)
    # several If-None-Match lines are one list
    lines = [("If-None-Match", '"elsewhere"'), ("If-None-Match", etag)]
    assert_not_modified(await client.get(path, headers=lines), etag)
    for header in ('"elsewhere"', 'W/"elsewhere"', etag.strip('"'), f'{etag[:-2]}"', "", ",", 'W/ "x"', "**"):
        answer = await client.get(path, headers={"If-None-Match": header})
        assert answer.status_code == 200, header
        assert answer.json()["data"]["courseId"] == course
        assert assert_validators(answer) == etag
    # there is nothing to match when the course does not exist
    assert_error(await client.get("/courses/NOSUCHCOURSE", headers={"If-None-Match": "*"}), 404)
    assert "ETag" not in (await client.get("/courses/NOSUCHCOURSE")).headers
    assert "ETag" not in (await client.get("/courses?limit=0")).headers


async def test_the_response_cache_keeps_the_etag_and_answers_304_itself(settings: Settings, client, tokens):
    # Two processes on one database. A long TTL (the setting allows at most 1 s) keeps A's cached
    # answer in place, so what A answers after B's write can only come from A's response cache.
    cached = settings.model_copy(update={"cache_ttl_seconds": 30.0})
    admin = {"Authorization": f"Bearer {tokens.issue('registrar@example.com', admin=True)}"}
    async with running_app(cached) as a, running_app(cached) as b:
        course = await new_course(a, admin, name="Before")
        paths = ("/courses?limit=5", f"/courses/{course}")
        first = {path: await a.get(path) for path in paths}
        etags = {path: assert_validators(answer) for path, answer in first.items()}
        assert (await b.patch(f"/courses/{course}", json={"name": "After"}, headers=admin)).status_code == 200
        for path in paths:
            hit = await a.get(path)
            assert hit.content == first[path].content  # still A's cached bytes
            assert assert_validators(hit) == etags[path]
            assert hit.headers["content-type"] == "application/json"
            revalidated = await a.get(path, headers={"If-None-Match": f'W/"x", {etags[path]}', "X-Request-ID": "hit"})
            assert_not_modified(revalidated, etags[path])
            assert revalidated.headers["X-Request-ID"] == "hit"
            # B has no cached copy: its route computes the tag of the new body
            assert assert_validators(await b.get(path, headers={"If-None-Match": etags[path]})) != etags[path]
        # a write in A clears A's cache: the old tag now gets the new answer, whose tag then revalidates
        await a.patch(f"/courses/{course}", json={"lessons": 3}, headers=admin)
        for path in paths:
            fresh = await a.get(path, headers={"If-None-Match": etags[path]})
            assert fresh.status_code == 200 and "After" in fresh.text
            new_tag = assert_validators(fresh)
            assert new_tag != etags[path]
            assert_not_modified(await a.get(path, headers={"If-None-Match": new_tag}), new_tag)  # from the cache
