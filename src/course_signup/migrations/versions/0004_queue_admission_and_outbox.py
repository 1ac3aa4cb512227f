"""Queue admission's progress per course, and the audit trail as the event relay's outbox.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from course_signup.domain.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admission_progress",
        sa.Column("course_id", sa.String(32), nullable=False),
        sa.Column("applied_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("course_id", name=op.f("pk_admission_progress")),
    )
    # Nullable with no default: adding it rewrites nothing, and every existing event is unpublished.
    op.add_column("course_events", sa.Column("published_at", UTCDateTime(), nullable=True))
    op.create_index(
        "ix_course_events_unpublished",
        "course_events",
        ["event_id"],
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_course_events_unpublished", table_name="course_events")
    with op.batch_alter_table("course_events") as batch:
        batch.drop_column("published_at")
    op.drop_table("admission_progress")
