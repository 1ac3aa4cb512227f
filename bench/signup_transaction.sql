-- pgbench custom script: the sign-up transaction of the service up to commit f6c7040 (BEGIN, seat
-- UPDATE, enrollment INSERT, event INSERT, COMMIT: four round trips with the course's row locked
-- from the UPDATE on). Kept for comparison: `python bench/run.py --pgbench-sql bench/signup_transaction.sql`.
-- The service now sends bench/signup.sql.
-- Variables: lo/hi (-D): the course-id range (lo = hi: the hot course); ts (-D): an RFC 3339
-- timestamp, passed where the service passes its clock reading; rid (-D): a request id.
-- Each transaction signs up a fresh random student id (1..10^15: collisions are negligible,
-- and would be counted by the ON CONFLICT ... DO NOTHING returning no row, exactly as in the service).
\set course random(:lo, :hi)
\set sid random(1, 999999999999999)
BEGIN;
UPDATE courses SET enrolled=(courses.enrolled + 1), updated_at=:ts WHERE courses.course_id = :course AND (courses.capacity IS NULL OR courses.enrolled < courses.capacity) AND (courses.registration_opens_at IS NULL OR courses.registration_opens_at <= :ts) AND (courses.registration_closes_at IS NULL OR courses.registration_closes_at > :ts) RETURNING courses.course_id;
INSERT INTO enrollments (student_id, course_id, status, waitlist_seq, created_at) VALUES (:sid, :course, 'enrolled', NULL, :ts) ON CONFLICT (course_id, student_id) DO NOTHING RETURNING enrollments.id;
INSERT INTO course_events (course_id, type, student_id, at, request_id) VALUES (:course, 'enrolled', :sid, :ts, :rid) RETURNING course_events.event_id;
COMMIT;
