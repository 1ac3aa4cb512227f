// The original service's k6 load test (test/load/http_post.js), with its checks fixed:
//   * the enrollment is under `data` ({code, message, data}), so the check reads data.courseId
//     (the old one read courseId at the top level and failed every time);
//   * a repeat sign-up answers 409 "Student has already signed up for this course.": that is the
//     expected answer, so it is neither a failed check nor a failed request (http_req_failed).
//
//   k6 run loadtest/k6/signup.js
//   BASE_URL=http://127.0.0.1:8000 TOKEN=$(course-signup token loadtest-admin@loadtest.example --admin) \
//     k6 run loadtest/k6/signup.js
//
// Environment: BASE_URL (default http://127.0.0.1:8000); TOKEN, sent as "Authorization: Bearer"
// when set. The script signs up ten different students, so with auth on (the default) TOKEN must
// be an admin token (a student token is only good for its own student: 403 elsewhere); with
// COURSE_SIGNUP_AUTH_MODE=none leave TOKEN unset. VUS and DURATION override 10 and 1m.
import http from 'k6/http';
import { check, sleep } from 'k6';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8000').replace(/\/+$/, '');
const TOKEN = __ENV.TOKEN || '';

const STUDENTS = Array.from({ length: 10 }, (_, i) => `student${i + 1}@loadtest.example`);
const COURSES = ['CS101', 'CS102', 'CS103', 'CS104'];
const DUPLICATE = 'Student has already signed up for this course.';

export const options = {
  vus: Number(__ENV.VUS || 10),
  duration: __ENV.DURATION || '1m',
  thresholds: {
    checks: ['rate==1.0'], // every answer is a sign-up or the expected duplicate
    http_req_failed: ['rate==0'], // 409 is declared expected below, so any failure is real
  },
};

// 200 (signed up) and 409 (the duplicate) are both expected answers of this endpoint.
http.setResponseCallback(http.expectedStatuses(200, 409));

function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

function envelope(res) {
  try {
    return res.json();
  } catch (e) {
    return null;
  }
}

export default function () {
  const email = pick(STUDENTS);
  const courseId = pick(COURSES);
  const headers = { 'Content-Type': 'application/json' };
  if (TOKEN) {
    headers.Authorization = `Bearer ${TOKEN}`;
  }
  const res = http.post(
    `${BASE_URL}/students/${encodeURIComponent(email)}/courses`,
    JSON.stringify({ courseId: courseId }),
    { headers: headers, tags: { name: 'POST /students/[email]/courses' } },
  );
  const body = envelope(res);
  const data = body ? body.data : null;

  check(res, {
    'signed up (200) or already signed up (409)': (r) =>
      (r.status === 200 && body !== null && body.code === 0) ||
      (r.status === 409 && body !== null && body.code === 409 && data === DUPLICATE),
  });
  if (res.status === 200) {
    check(res, {
      'data.courseId is the course asked for': () => data !== null && data.courseId === courseId,
      'data.studentId is the student': () => data !== null && data.studentId === email,
    });
  }

  sleep(Math.random() * 3);
}
