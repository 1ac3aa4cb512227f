"""The statement that admits a batch of sign-ups to one course (PostgreSQL), and how its rows read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    String,
    bindparam,
    case,
    column,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import aliased

from course_signup.domain.admission import Admission, Verdict
from course_signup.domain.models import (
    STATUS_ENROLLED,
    STATUS_WAITLISTED,
    Course,
    CourseEvent,
    Enrollment,
    UTCDateTime,
)


def _admit_statement() -> Any:
    """A batch of sign-ups to one course, decided and written by ONE statement (PostgreSQL).

    locked: the course row, FOR UPDATE. It waits for every other writer of the course (they all
        lock this row first) and then returns the row's newest version, so the seat figures the
        decision uses are current even though the statement's snapshot is older.
    existing: the students of the batch who already have a row (the anti-join). A row committed
        after the snapshot is not seen here; its unique violation then undoes the whole statement,
        and the caller runs the batch again with a fresh snapshot.
    decided: in arrival order, the first `seats_left` new students get seats (Course.seats_left
        and Course.is_open_at are the rules, shared with domain/admission.py); the rest are
        waitlisted with consecutive tickets if they asked to wait, or refused.
    inserted, counters, audit: the rows, the course's counters and one audit event per row with
        that request's id. Under an autocommit connection the lock is held only inside the server.
    """
    at = bindparam("p_at", type_=UTCDateTime())
    course_id = bindparam("p_course", type_=String())
    locked_rows = select(Course).where(Course.course_id == course_id).with_for_update().cte("locked")
    locked = aliased(Course, locked_rows)
    unnested = (
        func.unnest(
            bindparam("p_students", type_=ARRAY(String())),
            bindparam("p_waitlist", type_=ARRAY(Boolean())),
            bindparam("p_requests", type_=ARRAY(String())),
        )
        .table_valued(
            column("student_id", String()),
            column("waitlist", Boolean()),
            column("request_id", String()),
            with_ordinality="ord",
        )
        .render_derived(name="r")
    )
    req = select(unnested).cte("req")
    existing = (
        select(Enrollment.student_id, Enrollment.status)
        .where(Enrollment.course_id == course_id, Enrollment.student_id.in_(select(req.c.student_id)))
        .cte("existing")
    )
    fresh = (
        select(req.c.ord, req.c.student_id, req.c.waitlist, func.row_number().over(order_by=req.c.ord).label("n"))
        .select_from(req.join(locked, true()))
        .where(locked.is_open_at(at), ~exists().where(existing.c.student_id == req.c.student_id))
        .cte("fresh")
    )
    seated = or_(locked.seats_left.is_(None), fresh.c.n <= locked.seats_left)
    status = case((seated, STATUS_ENROLLED), (fresh.c.waitlist, STATUS_WAITLISTED), else_=None)
    decided = (
        select(fresh.c.ord, fresh.c.student_id, status.label("status"))
        .select_from(fresh.join(locked, true()))
        .cte("decided")
    )
    admitted = (
        select(
            decided.c.ord,
            decided.c.student_id,
            decided.c.status,
            func.row_number().over(partition_by=decided.c.status, order_by=decided.c.ord).label("nth"),
        )
        .where(decided.c.status.is_not(None))
        .cte("admitted")
    )
    ticket = case((admitted.c.status == STATUS_WAITLISTED, locked.waitlist_seq + admitted.c.nth), else_=None)
    inserted = (
        insert(Enrollment)
        .from_select(
            ["student_id", "course_id", "status", "waitlist_seq", "created_at"],
            select(admitted.c.student_id, course_id, admitted.c.status, ticket, at)
            .select_from(admitted.join(locked, true()))
            .order_by(admitted.c.ord),
        )
        .returning(Enrollment.student_id, Enrollment.status, Enrollment.waitlist_seq)
        .cte("inserted")
    )

    def count(of: str) -> Any:
        return select(func.count()).select_from(inserted).where(inserted.c.status == of).scalar_subquery()

    def before(column: Any) -> Any:
        return select(column).select_from(locked_rows).scalar_subquery()

    # The new counters are the locked row's plus what was inserted: the same figures the decision
    # used. (Adding to the UPDATE's own view of the row went wrong under a concurrent drop: the
    # UPDATE could add to the row as of the statement's snapshot, before the drop, and oversell by
    # the drop's seat, which the CHECK constraint then refused as a 500.)
    counters = (
        update(Course)
        .where(Course.course_id == course_id, exists().select_from(inserted))
        .values(
            enrolled=before(locked_rows.c.enrolled) + count(STATUS_ENROLLED),
            waitlisted=before(locked_rows.c.waitlisted) + count(STATUS_WAITLISTED),
            waitlist_seq=before(locked_rows.c.waitlist_seq) + count(STATUS_WAITLISTED),
            updated_at=at,
        )
        .returning(Course.course_id)
        .cte("counters")
    )
    audit = (
        insert(CourseEvent)
        .from_select(
            ["course_id", "type", "student_id", "at", "request_id"],
            select(course_id, inserted.c.status, inserted.c.student_id, at, req.c.request_id)
            .select_from(inserted.join(req, req.c.student_id == inserted.c.student_id))
            .order_by(req.c.ord),
        )
        .cte("audit")
    )
    return (
        select(
            locked.course_id.is_not(None).label("found"),
            func.coalesce(locked.is_open_at(at), False).label("open"),
            existing.c.status.label("existing"),
            inserted.c.status,
            inserted.c.waitlist_seq,
            (locked.waitlisted + admitted.c.nth).label("position"),
        )
        .select_from(
            req.outerjoin(locked, true())
            .outerjoin(existing, existing.c.student_id == req.c.student_id)
            .outerjoin(inserted, inserted.c.student_id == req.c.student_id)
            .outerjoin(admitted, admitted.c.ord == req.c.ord)
        )
        .add_cte(counters, audit)
        .order_by(req.c.ord)
    )


_ADMIT = _admit_statement()


def _verdict(row: Any, at: datetime) -> Admission:
    """One request's answer from its row of the admission statement."""
    if not row.found:
        return Admission(Verdict.NOT_FOUND, at)
    if not row.open:
        return Admission(Verdict.CLOSED, at)
    if row.existing is not None:
        duplicate = Verdict.ALREADY_WAITLISTED if row.existing == STATUS_WAITLISTED else Verdict.ALREADY_ENROLLED
        return Admission(duplicate, at)
    if row.status == STATUS_ENROLLED:
        return Admission(Verdict.ENROLLED, at)
    if row.status == STATUS_WAITLISTED:
        return Admission(Verdict.WAITLISTED, at, waitlist_seq=row.waitlist_seq, position=int(row.position))
    return Admission(Verdict.FULL, at)
