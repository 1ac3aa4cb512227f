"""The audit trail indexed by time, for the dashboard's "sign-ups in the last hour".

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_course_events_at"), "course_events", ["at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_course_events_at"), table_name="course_events")
