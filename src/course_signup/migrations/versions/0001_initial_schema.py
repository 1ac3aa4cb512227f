"""Initial schema: courses, enrollments, the audit trail and idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from course_signup.domain.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "courses",
        sa.Column("course_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("lessons", sa.Integer(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("enrolled", sa.Integer(), nullable=False),
        sa.Column("waitlisted", sa.Integer(), nullable=False),
        sa.Column("waitlist_seq", sa.BigInteger(), nullable=False),
        sa.Column("registration_opens_at", UTCDateTime(), nullable=True),
        sa.Column("registration_closes_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("lessons >= 0", name=op.f("ck_courses_lessons_not_negative")),
        sa.CheckConstraint("capacity IS NULL OR capacity >= 0", name=op.f("ck_courses_capacity_not_negative")),
        sa.CheckConstraint("enrolled >= 0 AND waitlisted >= 0", name=op.f("ck_courses_counters_not_negative")),
        sa.CheckConstraint(
            "capacity IS NULL OR enrolled <= capacity", name=op.f("ck_courses_enrolled_within_capacity")
        ),
        sa.PrimaryKeyConstraint("course_id", name=op.f("pk_courses")),
    )
    op.create_table(
        "enrollments",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("student_id", sa.String(254), nullable=False),
        sa.Column("course_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("waitlist_seq", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"], ["courses.course_id"], name=op.f("fk_enrollments_course_id_courses"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollments")),
        sa.UniqueConstraint("course_id", "student_id", name=op.f("uq_enrollments_course_id_student_id")),
    )
    op.create_index(op.f("ix_enrollments_student_id_course_id"), "enrollments", ["student_id", "course_id"])
    op.create_index(
        op.f("ix_enrollments_course_id_status_student_id"), "enrollments", ["course_id", "status", "student_id"]
    )
    op.create_index(
        op.f("ix_enrollments_course_id_status_waitlist_seq"), "enrollments", ["course_id", "status", "waitlist_seq"]
    )
    op.create_table(
        "course_events",
        sa.Column("event_id", BigId, autoincrement=True, nullable=False),
        sa.Column("course_id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("student_id", sa.String(254), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_course_events")),
    )
    op.create_index(op.f("ix_course_events_course_id_event_id"), "course_events", ["course_id", "event_id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("student_id", sa.String(254), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("student_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("course_events")
    op.drop_table("enrollments")
    op.drop_table("courses")
