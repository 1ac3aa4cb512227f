"""A catalogue CSV sent through the API: the rules of `import-courses`, the problems as one sentence."""

from __future__ import annotations

import csv
import io

from course_signup.adapters.cache import Cache
from course_signup.domain.errors import DomainError, InvalidInputError
from course_signup.services import catalogue_import
from course_signup.services.admission import Admitter
from course_signup.services.unit_of_work import UnitOfWork

NOTHING_IMPORTED = "Nothing was imported"


class ImportConflictError(DomainError):
    """Lines that are well formed but clash with the catalogue (a capacity below enrollment); 409."""

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self._sentence = sentence

    def __str__(self) -> str:
        return self._sentence


async def import_csv(
    uow: UnitOfWork, cache: Cache, *, text: str, admissions: Admitter | None = None
) -> tuple[int, int]:
    """Insert or change the courses of a CSV text, all or nothing; returns (added, changed).

    Line numbers are the file's (the header is line 1), as `course-signup import-courses` reports them.
    """
    try:
        # newline="": csv sees the file's own line ends, so a quoted cell may span lines as in the file.
        rows = catalogue_import.parse(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    except catalogue_import.CatalogueImportError as exc:
        raise InvalidInputError(_sentence(exc.problems)) from None
    except csv.Error as exc:
        raise InvalidInputError(f"{NOTHING_IMPORTED}: the file is not valid CSV ({exc}).") from None
    try:
        return await catalogue_import.import_courses(uow, cache, rows, admissions=admissions)
    except catalogue_import.CatalogueImportError as exc:
        raise ImportConflictError(_sentence(exc.problems)) from None


def _sentence(problems: list[str]) -> str:
    return f"{NOTHING_IMPORTED}: {'; '.join(problem.rstrip('.') for problem in problems)}."
