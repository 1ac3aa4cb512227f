"""`import-courses`: upsert the catalogue from CSV in one transaction, or report bad lines and change nothing."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from course_signup.adapters.admission_state import CourseConfig
from course_signup.adapters.cache import Cache
from course_signup.domain import rules
from course_signup.domain.errors import AdmissionUnavailableError, CourseNotFoundError, DomainError
from course_signup.domain.models import utcnow
from course_signup.services.admission import Admitter
from course_signup.services.courses import apply_changes, new_course, put_back
from course_signup.services.queue_admission import queued
from course_signup.services.unit_of_work import UnitOfWork

COLUMNS = ("courseId", "name", "lessons", "capacity", "registrationOpensAt", "registrationClosesAt")


class CatalogueImportError(Exception):
    """Lines that cannot be imported, each as 'line N: reason'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse(lines: Iterable[str]) -> list[tuple[int, dict[str, Any]]]:
    """Validate every row; CatalogueImportError lists all bad lines by number."""
    reader = csv.DictReader(lines)
    missing = {"courseId", "name"} - set(reader.fieldnames or ())
    if missing:
        raise CatalogueImportError([f"line 1: missing column(s) {', '.join(sorted(missing))}"])
    rows, problems, seen = [], [], set()
    for row in reader:
        try:
            fields = _fields(row)
            if fields["course_id"] in seen:
                raise ValueError(f"courseId {fields['course_id']} appears twice")
            seen.add(fields["course_id"])
            rows.append((reader.line_num, fields))
        except (ValueError, DomainError) as exc:
            problems.append(f"line {reader.line_num}: {exc}")
    if problems:
        raise CatalogueImportError(problems)
    return rows


async def import_courses(
    uow: UnitOfWork, cache: Cache, rows: list[tuple[int, dict[str, Any]]], *, admissions: Admitter | None = None
) -> tuple[int, int]:
    """Insert new courses and change existing ones; returns (added, changed).

    In queue mode each changed course's capacity and window are checked and set in the admission
    state as `PATCH` does (against the live seat count), and put back if the import fails; new
    courses join it and waitlists are promoted after the commit.
    """
    queue = queued(admissions)
    imported: list[str] = []
    configured: list[CourseConfig] = []  # queue mode: what to put back if the import fails
    added = changed = 0
    now = utcnow()
    problems = []
    try:
        async with uow:
            for line, fields in rows:
                course_id = fields.pop("course_id")
                imported.append(course_id)
                try:
                    await apply_changes(
                        uow, course_id=course_id, changes=fields, at=now, queue=queue, configured=configured
                    )
                    changed += 1
                except CourseNotFoundError:
                    if await uow.courses.add(new_course(course_id, at=now, **fields)):
                        added += 1
                    else:  # created by someone else since the lookup
                        problems.append(f"line {line}: {course_id}: created meanwhile; import again")
                except AdmissionUnavailableError:
                    raise
                except DomainError as exc:
                    problems.append(f"line {line}: {course_id}: {exc}")
            if problems:
                raise CatalogueImportError(problems)  # leaving the unit of work rolls every row back
            await uow.commit()
    except BaseException:
        await put_back(queue, configured)
        raise
    if queue is not None:
        await queue.imported(uow, imported)
    cache.forget_courses()
    return added, changed


def _fields(row: dict[str, str | None]) -> dict[str, Any]:
    def cell(name: str) -> str:
        return (row.get(name) or "").strip()

    name = cell("name")
    if not name or len(name) > 200:
        raise ValueError("name must be 1-200 characters")
    fields: dict[str, Any] = {"course_id": rules.normalize_course_id(cell("courseId")), "name": name}
    if "lessons" in row:
        fields["lessons"] = _count(cell("lessons") or "0", "lessons")
    if "capacity" in row:
        fields["capacity"] = _count(cell("capacity"), "capacity") if cell("capacity") else None
    for column, key in (
        ("registrationOpensAt", "registration_opens_at"),
        ("registrationClosesAt", "registration_closes_at"),
    ):
        if column in row:
            fields[key] = _time(cell(column), column)
    rules.ensure_window_valid(fields.get("registration_opens_at"), fields.get("registration_closes_at"))
    return fields


def _count(text: str, column: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{column} must be a whole number >= 0, not {text!r}")
    return int(text)


def _time(text: str, column: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{column} must be an RFC 3339 time, not {text!r}") from None
    return rules.as_utc(moment)
