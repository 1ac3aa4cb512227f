-- pgbench custom script, kept for comparison (--pgbench-sql bench/signup.sql): the service's sign-up
-- for a course with free seats as SQLAlchemy/asyncpg sent it from commit b9afb77 until batched
-- admission (003d0a9; the bench now generates its pgbench script from the service's current
-- statement, see bench/pgbench_floor.py): ONE statement on an autocommit connection, its
-- data-modifying CTEs claim the seat, insert the enrollment and its audit event; the course's row
-- lock is held from the UPDATE to the commit, inside the server. Text and casts copied from
-- SQLAlchemy's echo; $n parameters become variables.
-- Variables: lo/hi (-D): the course-id range (lo = hi: the hot course); ts (-D): an RFC 3339
-- timestamp, passed where the service passes its clock reading; rid (-D): a request id;
-- status (-D): 'enrolled'. Each run signs up a fresh random student id (1..10^15): a collision
-- would fail on the unique constraint, as a duplicate does in the service, and be counted.
\set course random(:lo, :hi)
\set sid random(1, 999999999999999)
\set one 1
WITH seat AS (UPDATE courses SET enrolled=(courses.enrolled + :one::INTEGER), updated_at=:ts::TIMESTAMP WITH TIME ZONE WHERE courses.course_id = :course::VARCHAR AND (courses.capacity IS NULL OR courses.enrolled < courses.capacity) AND (courses.registration_opens_at IS NULL OR courses.registration_opens_at <= :ts::TIMESTAMP WITH TIME ZONE) AND (courses.registration_closes_at IS NULL OR courses.registration_closes_at > :ts::TIMESTAMP WITH TIME ZONE) RETURNING courses.course_id), enrollment AS (INSERT INTO enrollments (student_id, course_id, status, created_at) SELECT :sid::VARCHAR AS anon_4, seat.course_id AS course_id, :status::VARCHAR AS anon_5, :ts::TIMESTAMP WITH TIME ZONE AS anon_2 FROM seat RETURNING enrollments.course_id, enrollments.student_id), audit AS (INSERT INTO course_events (course_id, type, student_id, at, request_id) SELECT enrollment.course_id AS course_id, :status::VARCHAR AS anon_1, enrollment.student_id AS student_id, :ts::TIMESTAMP WITH TIME ZONE AS anon_2, :rid::VARCHAR AS anon_3 FROM enrollment) SELECT count(*) AS count_1 FROM enrollment;
