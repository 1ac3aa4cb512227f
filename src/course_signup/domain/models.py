"""Tables as SQLAlchemy 2.0 mapped classes: Course, Enrollment, CourseEvent, IdempotencyRecord."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
    and_,
    case,
    or_,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.hybrid import hybrid_method, hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from course_signup.domain.rules import registration_is_open, seats_left

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")

STATUS_ENROLLED = "enrolled"
STATUS_WAITLISTED = "waitlisted"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores them naive, as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Course(Base):
    __tablename__ = "courses"
    __table_args__ = (
        CheckConstraint("lessons >= 0", name="lessons_not_negative"),
        CheckConstraint("capacity IS NULL OR capacity >= 0", name="capacity_not_negative"),
        CheckConstraint("enrolled >= 0 AND waitlisted >= 0", name="counters_not_negative"),
        # The last line of defence for guarantee 1: the database refuses an oversold course.
        CheckConstraint("capacity IS NULL OR enrolled <= capacity", name="enrolled_within_capacity"),
    )

    course_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    lessons: Mapped[int] = mapped_column(Integer, default=0)
    capacity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    enrolled: Mapped[int] = mapped_column(Integer, default=0)
    waitlisted: Mapped[int] = mapped_column(Integer, default=0)
    # Ticket counter for waitlist order: taken atomically, never max() + 1.
    waitlist_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    registration_opens_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    registration_closes_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    # The two rules every seat decision asks, each defined once: in Python on a loaded row (the
    # SQLite path, the fakes, the API's figures) and as SQL (the PostgreSQL statements).

    @hybrid_property
    def seats_left(self) -> int | None:
        """Free seats; None when the capacity is unlimited. A course is never overfilled."""
        return seats_left(self.capacity, self.enrolled)

    @seats_left.inplace.expression
    @classmethod
    def _seats_left_sql(cls) -> ColumnElement[int | None]:
        return case((cls.capacity.is_(None), None), else_=cls.capacity - cls.enrolled)

    @hybrid_method
    def is_open_at(self, at: datetime) -> bool:
        """Registration is open at `at`: inside [opens, closes); a missing bound does not limit."""
        return registration_is_open(self.registration_opens_at, self.registration_closes_at, at=at)

    @is_open_at.inplace.expression
    @classmethod
    def _is_open_at_sql(cls, at: object) -> ColumnElement[bool]:
        return and_(
            or_(cls.registration_opens_at.is_(None), cls.registration_opens_at <= at),
            or_(cls.registration_closes_at.is_(None), cls.registration_closes_at > at),
        )

    @hybrid_property
    def has_seat_free(self) -> bool:
        return self.capacity is None or self.enrolled < self.capacity

    @has_seat_free.inplace.expression
    @classmethod
    def _has_seat_free_sql(cls) -> ColumnElement[bool]:
        return or_(cls.capacity.is_(None), cls.enrolled < cls.capacity)


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (
        # Decides duplicate sign-ups: one row per student and course, enrolled or waitlisted.
        UniqueConstraint("course_id", "student_id"),
        Index(None, "student_id", "course_id"),
        Index(None, "course_id", "status", "student_id"),
        Index(None, "course_id", "status", "waitlist_seq"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    student_id: Mapped[str] = mapped_column(String(254))
    course_id: Mapped[str] = mapped_column(String(32), ForeignKey("courses.course_id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    waitlist_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CourseEvent(Base):
    """Append-only audit trail; kept after a course is deleted, so no foreign key.

    It is also the outbox: the event relay publishes rows whose `published_at` is NULL, in event_id
    order, and then stamps them.
    """

    __tablename__ = "course_events"
    # by course for its audit trail; by time for the dashboard's last hour; the relay's backlog
    __table_args__ = (
        Index(None, "course_id", "event_id"),
        Index(None, "at"),
        Index(
            "ix_course_events_unpublished",
            "event_id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )

    event_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    course_id: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(16))
    student_id: Mapped[str] = mapped_column(String(254))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AdmissionProgress(Base):
    """Queue mode: per course, the sequence number of the newest decision the worker has written.

    Decisions of a course are written in sequence order, so a redelivered message whose number is
    not above this one was written already and changes nothing. No foreign key: it outlives a
    force-deleted course, whose numbering continues if the id is used again.
    """

    __tablename__ = "admission_progress"

    course_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    applied_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class IdempotencyRecord(Base):
    """The first answer to a POST carrying an Idempotency-Key, replayed for 24 h."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index(None, "created_at"),)

    student_id: Mapped[str] = mapped_column(String(254), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
