"""Catalogue search: trigram indexes on lower(course_id) and lower(name) (PostgreSQL only).

`GET /courses?q=` looks for a substring, `lower(column) LIKE lower('%text%')`; a B-tree cannot
answer that, a GIN trigram index can. SQLite has no such index and scans its small catalogue.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_courses_lower_course_id_trgm": "lower(course_id)",
    "ix_courses_lower_name_trgm": "lower(name)",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, expression in INDEXES.items():
        # The expressions must be exactly those of CourseRepository.list, or the planner ignores them.
        op.execute(f"CREATE INDEX {name} ON courses USING gin ({expression} gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    # pg_trgm stays: other objects in the database may use it.
