"""The service's own SQL as asyncpg receives it, compiled from course_signup's repositories module.

The floor app (bench/floor_app.py) runs these statements with asyncpg, and pgbench_floor.py turns
the sign-up statement into a pgbench script, so both floors always run what the service runs now.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

PLACEHOLDER = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class Statement:
    """SQL text with $n placeholders; `names[n - 1]` is the bind parameter behind $n."""

    sql: str
    names: tuple[str, ...]
    constants: dict[str, Any]  # values SQLAlchemy bound itself (literals such as 'enrolled'), processed
    processors: dict[str, Callable[[Any], Any]]  # bind processors of the parameters the caller supplies
    _template: list[Any] = field(default_factory=list, repr=False)
    _supplied: list[tuple[int, str, Callable[[Any], Any] | None]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        for position, name in enumerate(self.names):
            if name in self.constants:
                self._template.append(self.constants[name])
            else:
                self._template.append(None)
                self._supplied.append((position, name, self.processors.get(name)))

    @property
    def supplied(self) -> list[str]:
        """The parameters the caller must pass (the statement's bindparam()s)."""
        return [name for _, name, _ in self._supplied]

    def arguments(self, values: dict[str, Any]) -> list[Any]:
        """Positional arguments for asyncpg, bind processors applied as SQLAlchemy applies them."""
        arguments = list(self._template)
        for position, name, process in self._supplied:
            value = values[name]
            arguments[position] = process(value) if process is not None else value
        return arguments


def compile_for_asyncpg(statement: Any) -> Statement:
    """`statement` compiled with the asyncpg dialect, its named binds mapped to $n positions.

    `positiontup` lists the bind names in $n order (a name used twice is one $n), and `params`
    holds the values SQLAlchemy bound itself, None for the bindparam()s the caller supplies.
    """
    dialect = asyncpg_dialect()
    compiled = statement.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ())
    processors: dict[str, Callable[[Any], Any]] = {}
    for name in names:
        process = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors[name] = process
    constants = {}
    for name, value in compiled.params.items():
        if value is not None:
            constants[name] = processors.pop(name)(value) if name in processors else value
    return Statement(str(compiled), names, constants, processors)


def admit() -> Statement:
    """The sign-up: a batch of sign-ups to one course decided and written by one statement."""
    from course_signup.adapters import repositories

    return compile_for_asyncpg(repositories._ADMIT)


def my_courses() -> Statement:
    """My-courses without ?status= or a cursor (what the bench asks for)."""
    from course_signup.adapters import repositories

    return compile_for_asyncpg(repositories._student_courses_statement(False, False))
