"""The Idempotency-Key header around a POST: replay the stored answer or run and store it."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from pydantic import BaseModel
from starlette.responses import Response

from course_signup.api.envelope import JSON
from course_signup.api.errors import domain_error_handler
from course_signup.domain.errors import DomainError, InvalidInputError
from course_signup.services import idempotency
from course_signup.services.idempotency import StoredAnswer
from course_signup.services.unit_of_work import SqlAlchemyUnitOfWork

REPLAYED = {"Idempotent-Replayed": "true"}  # API.md: marks the stored first answer given again


class Idempotency:
    def __init__(self, request: Request, key: str | None) -> None:
        self.request = request
        self.key = key

    def _uow(self) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(self.request.app.state.sessions, request_id=self.request.state.request_id)

    async def run(self, student_id: str, body: BaseModel, answer: Callable[[], Awaitable[Response]]) -> Response:
        """The answer for this request: stored under its key, or computed now and stored."""
        if self.key is None:
            return await answer()
        fingerprint = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
        stored = await idempotency.claim(self._uow(), student_id=student_id, key=self.key, fingerprint=fingerprint)
        if stored is not None:
            return Response(stored.body, status_code=stored.status_code, media_type=JSON, headers=REPLAYED)
        try:
            response = await answer()
        except DomainError as exc:
            # A refusal (full, duplicate, closed) is an answer too, and is replayed like one.
            response = await domain_error_handler(self.request, exc)
        except BaseException:
            await idempotency.release(self._uow(), student_id=student_id, key=self.key)
            raise
        await idempotency.remember(
            self._uow(), student_id=student_id, key=self.key, answer=StoredAnswer(response.status_code, response.body)
        )
        return response


async def get_idempotency(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=128,
            json_schema_extra={"pattern": "^[\\x21-\\x7e]{1,128}$"},
            description="1-128 visible ASCII characters; the first answer is replayed for 24 h.",
        ),
    ] = None,
) -> Idempotency:
    if idempotency_key is not None and not (
        idempotency_key and all(0x21 <= ord(char) <= 0x7E for char in idempotency_key)
    ):
        raise InvalidInputError("Idempotency-Key must be 1-128 visible ASCII characters.")
    return Idempotency(request, idempotency_key)


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]
