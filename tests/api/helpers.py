"""Small request helpers shared by the API tests."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import unique


async def new_course(client: httpx.AsyncClient, admin: dict[str, str], **fields: Any) -> str:
    """Create a course through the API and return its id."""
    course_id = fields.pop("courseId", None) or unique()
    body = {"courseId": course_id, "name": fields.pop("name", "A course"), **fields}
    response = await client.post("/courses", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()["data"]["courseId"]


async def sign_up(
    client: httpx.AsyncClient, student: str, course_id: str, headers: dict[str, str], **extra: Any
) -> httpx.Response:
    return await client.post(f"/students/{student}/courses", json={"courseId": course_id, **extra}, headers=headers)


def assert_error(response: httpx.Response, status: int, sentence: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == status
    assert isinstance(body["data"], str) and body["data"]
    if sentence is not None:
        assert body["data"] == sentence
