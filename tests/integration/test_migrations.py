"""The migrations build exactly the tables the models describe, on PostgreSQL and on SQLite."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from course_signup.domain.models import Base
from course_signup.settings import Settings

# Indexes only a migration knows how to build (expression indexes the model cannot declare).
MIGRATION_ONLY = {"ix_courses_lower_course_id_trgm", "ix_courses_lower_name_trgm"}


def _differences(connection) -> list[object]:  # type: ignore[no-untyped-def]
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    found = []
    for difference in compare_metadata(context, Base.metadata):
        if difference[0] == "remove_index" and difference[1].name in MIGRATION_ONLY:
            continue
        found.append(difference)
    return found


async def test_migrated_schema_matches_the_models(settings: Settings):
    engine = create_async_engine(settings.sqlalchemy_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []
