"""The catalogue at scale: the first page against a page near the end, on a generated million-row database.

    python bench/catalogue_scale.py [--quick] [--clients 16] [--duration 5]

1. creates its own PostgreSQL database, runs `course-signup migrate`, then `course-signup generate`
   (10,000 courses, 200,000 students, 1,000,000 enrollments; --quick: 2,000 / 40,000 / 200,000), timed;
2. starts `course-signup serve` with 2 workers, JWT auth on (a random 64-character secret) and the
   response cache off (COURSE_SIGNUP_CACHE_TTL_SECONDS=0), so that every request reaches PostgreSQL;
3. for each case (the catalogue, the busiest student's courses, the largest course's classmates and
   roster, the roster of the course with the longest waitlist) builds the first page and the LAST
   full page (its cursor made with domain/pagination.encode_cursor from the sort key read in the
   database, and checked against the API: that page is full and has no next page), warms both up,
   and measures them with wrk (--clients connections, --duration seconds a run), alternately for
   --rounds rounds, keeping the median of each figure;
4. prints p50/p99 and the deep/first ratios (aim: the deep page within 1.5x of the first; reported,
   never asserted), stops the service and drops the database, also on a failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import harness
import jwt
from stack import Stack, log

FULL = (10_000, 200_000, 1_000_000)
QUICK = (2_000, 40_000, 200_000)
AIM = 1.5


@dataclass
class Case:
    name: str
    limit: int
    first: str
    deep: str
    token: str | None  # None: a public page, sent with no token
    facts: str
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a fifth of the data, 2 s per run")
    parser.add_argument("--clients", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--duration", type=int, help="seconds per run (default 5, quick 2)")
    parser.add_argument("--rounds", type=int, help="first and deep page measured alternately (default 3, quick 1)")
    parser.add_argument("--workers", type=int, default=2, help="service workers (default 2)")
    parser.add_argument("--seed", type=int, default=1, help="course-signup generate --seed")
    parser.add_argument("--port", type=int, default=18090, help="the service's port (default 18090)")
    parser.add_argument("--database", default="course_signup_catalogue_bench", help="dropped and re-created")
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432", help="USER@HOST:PORT of the PostgreSQL server")
    parser.add_argument("--keep-database", action="store_true", help="leave the database for inspection")
    parser.add_argument("--wait-quiet", type=float, default=0, help="first wait up to S seconds for an idle machine")
    args = parser.parse_args()
    args.duration = args.duration or (2 if args.quick else 5)
    args.rounds = args.rounds or (1 if args.quick else 3)
    user, _, hostport = args.pg.partition("@")
    args.pg_user, args.pg_host, args.pg_port = user, *hostport.split(":")
    args.src, args.service_env = None, []  # what bench/stack.py also reads
    return args


def token(stack: Stack, subject: str, role: str = "student") -> str:
    now = int(time.time())
    claims = {"sub": subject, "role": role, "iat": now, "exp": now + 6 * 3600}
    return jwt.encode(claims, stack.secret, algorithm="HS256")


def generate(stack: Stack) -> dict[str, Any]:
    """`course-signup generate` at the chosen size, its progress bar passed through to our stderr."""
    courses, students, enrollments = QUICK if stack.args.quick else FULL
    command = [*stack.cli(), "generate", "--courses", str(courses), "--students", str(students),
               "--enrollments", str(enrollments), "--seed", str(stack.args.seed)]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, env=stack.service_env(), stdout=subprocess.PIPE, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"course-signup generate failed ({done.returncode}): {done.stdout}")
    log(f"{done.stdout.strip()} ({seconds:.1f} s wall)")
    return {"seconds": round(seconds, 1), "summary": done.stdout.strip()}


def key_at(stack: Stack, sql: str, position: int) -> str:
    """The sort key of the row at 1-based `position` of the ordered query."""
    return stack.psql(f"{sql} OFFSET {max(0, position - 1)} LIMIT 1")


def cases(stack: Stack) -> list[Case]:
    """The pages to compare, found in the database."""
    from course_signup.domain.pagination import encode_cursor

    def deep(path: str, key: tuple[Any, ...]) -> str:
        return f"{path}&cursor={encode_cursor(key)}"

    out = []
    limit = 100
    total = int(stack.psql("SELECT count(*) FROM courses"))
    last = key_at(stack, "SELECT course_id FROM courses ORDER BY course_id", total - limit)
    path = f"/courses?limit={limit}"
    out.append(Case("catalogue", limit, path, deep(path, (last,)), None, f"{total} courses"))

    student, count = stack.psql(
        "SELECT student_id, count(*) FROM enrollments GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
    ).split("|")
    mine = max(1, min(5, int(count) // 2))
    last = key_at(stack, f"SELECT course_id FROM enrollments WHERE student_id = '{student}' ORDER BY course_id",
                  int(count) - mine)  # fmt: skip
    path = f"/students/{student}/courses?limit={mine}"
    out.append(Case("student's courses", mine, path, deep(path, (last,)), token(stack, student),
                    f"{student}: {count} courses, the most of any student"))  # fmt: skip

    course, enrolled, waitlisted = stack.psql(
        "SELECT course_id, enrolled, waitlisted FROM courses ORDER BY enrolled + waitlisted DESC, course_id LIMIT 1"
    ).split("|")
    enrolled_sql = f"SELECT student_id FROM enrollments WHERE course_id = '{course}' AND status = 'enrolled'"
    me = stack.psql(f"{enrolled_sql} ORDER BY student_id LIMIT 1")
    last = key_at(stack, f"{enrolled_sql} AND student_id <> '{me}' ORDER BY student_id", int(enrolled) - 1 - limit)
    path = f"/students/{me}/courses/{course}/classmates?limit={limit}"
    out.append(Case("largest course's classmates", limit, path, deep(path, (last,)), token(stack, me),
                    f"{course}: {enrolled} enrolled, {waitlisted} waitlisted; as {me}"))  # fmt: skip
    admin = token(stack, "registrar@example.edu", role="admin")
    out.append(roster_case(stack, "largest course's roster", course, admin, deep))
    course = stack.psql("SELECT course_id FROM courses ORDER BY waitlisted DESC, course_id LIMIT 1")
    out.append(roster_case(stack, "longest waitlist's roster", course, admin, deep))
    return out


def roster_case(stack: Stack, name: str, course: str, admin: str, deep: Any) -> Case:
    """Enrolled students by id, then the waitlist by ticket: the last page may fall in either part."""
    limit = 100
    enrolled, waitlisted = (int(n) for n in stack.psql(
        f"SELECT enrolled, waitlisted FROM courses WHERE course_id = '{course}'").split("|"))  # fmt: skip
    position = enrolled + waitlisted - limit
    rows = f"SELECT {{}} FROM enrollments WHERE course_id = '{course}' AND status = '{{}}' ORDER BY {{}}"
    if position <= enrolled:
        key: tuple[Any, ...] = (0, key_at(stack, rows.format("student_id", "enrolled", "student_id"), position))
    else:
        key = (1, int(key_at(stack, rows.format("waitlist_seq", "waitlisted", "waitlist_seq"), position - enrolled)))
    path = f"/courses/{course}/students?limit={limit}"
    return Case(name, limit, path, deep(path, key), admin, f"{course}: {enrolled} enrolled, {waitlisted} waitlisted")


def check(stack: Stack, case: Case) -> None:
    """Both pages answer 200 with `limit` rows; the deep one is the last (no next cursor)."""
    for page, path in (("first", case.first), ("deep", case.deep)):
        status, body = harness.http_request(stack.args.port, "GET", path, token=case.token)
        if status != 200 or not isinstance(body, dict) or len(body["data"]) != case.limit:
            raise RuntimeError(f"{case.name} {page} page: {status} {str(body)[:300]}")
        if page == "deep" and body["page"]["nextCursor"] is not None:
            raise RuntimeError(f"{case.name}: the deep page is not the last one: {path}")


def measure(stack: Stack, case: Case) -> None:
    """Warm both pages up, then alternate them for --rounds rounds; keep the medians of each page's runs."""
    a = stack.args
    loads = {}
    for page, path in (("first", case.first), ("deep", case.deep)):
        name = "".join(c if c.isalnum() else "_" for c in case.name)
        lines = harness.write_lines(stack.tmp / f"{name}-{page}.lines", [(path, case.token or "-", "-")])
        loads[page] = {"tool": "wrk", "port": a.port, "lines_file": lines, "expected": 200, "mode": "cycle",
                       "clients": a.clients, "threads": 2}  # fmt: skip
        harness.run_load(**loads[page], duration=1)  # warm-up: pools, prepared statements, buffers
    runs: dict[str, list[dict[str, Any]]] = {"first": [], "deep": []}
    for _ in range(a.rounds):
        for page in ("first", "deep"):
            meter = harness.CpuMeter(server_pid=stack.service.pid, pg_pid=stack.pg_pid, database=a.database)
            run = harness.run_load(**loads[page], duration=a.duration, meter=meter)
            per_request = run["cpu_us_per_request"] or {"server": 0.0, "postgres": 0.0}
            run["cpu_ms"] = (per_request["server"] + per_request["postgres"]) / 1000
            run["other_cores"] = run["cpu_cores"].get("other", 0.0)
            runs[page].append(run)
    for page, measured in runs.items():
        figures = ("rps", "p50_ms", "p99_ms", "cpu_ms", "other_cores")
        case.runs[page] = {
            **{key: statistics.median(run[key] for run in measured) for key in figures},
            "errors": sum(run["errors"] for run in measured),
        }


def table(cases: list[Case], generated: dict[str, Any], args: argparse.Namespace, background: float) -> str:
    lines = [
        f"generate: {generated['summary']} ({generated['seconds']} s wall, including the CLI's start)",
        f"wrk: {args.clients} connections, {args.duration} s per page and round, medians of {args.rounds} rounds,"
        f" {args.workers} service workers, response cache off; background load before the run {background:.2f} cores",
        "",
        f"{'case':28} {'page':5} {'rows':>4} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
        f" {'CPU ms':>6} {'other':>5}   deep/first: p50    p99    CPU",
        "-" * 118,
    ]
    for case in cases:
        first, deep = case.runs["first"], case.runs["deep"]
        for page, run in (("first", first), ("deep", deep)):
            ratios = ""
            if page == "deep":
                p50, p99 = deep["p50_ms"] / first["p50_ms"], deep["p99_ms"] / first["p99_ms"]
                cpu = deep["cpu_ms"] / first["cpu_ms"] if first["cpu_ms"] else float("nan")
                verdict = "within" if p50 <= AIM else "NOT within"
                ratios = f"   {'':11}{p50:5.2f}x {p99:5.2f}x {cpu:5.2f}x  p50 {verdict} {AIM}x"
            name = case.name if page == "first" else ""
            lines.append(f"{name:28} {page:5} {case.limit:4} {run['rps']:6.0f} {run['p50_ms']:7.2f}"
                         f" {run['p99_ms']:7.2f} {run['errors']:6} {run['cpu_ms']:6.2f} {run['other_cores']:5.2f}"
                         f"{ratios}")  # fmt: skip
    lines += [
        "CPU ms: CPU of the service's processes and of PostgreSQL per request; other: cores used meanwhile by"
        " everything else on the machine (other users); both medians",
        "",
        *(f"{case.name}: {case.facts}" for case in cases),
    ]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    for tool in ("wrk", "psql"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} not found (apt-get install -y {'wrk' if tool == 'wrk' else 'postgresql-client'})")
    stack = Stack(args)

    def terminate(_signum: int, _frame: object) -> None:
        raise SystemExit("bench: terminated")

    signal.signal(signal.SIGTERM, terminate)
    try:
        stack.create_database()
        stack.migrate()
        generated = generate(stack)
        stack.start_service(cache_ttl_seconds="0")
        found = cases(stack)
        background = harness.wait_quiet(0.25, args.wait_quiet) if args.wait_quiet else harness.background_load(1.0)
        log(f"background load before the measurements: {background:.2f} cores")
        for case in found:
            check(stack, case)
            measure(stack, case)
            first, deep = case.runs["first"]["p50_ms"], case.runs["deep"]["p50_ms"]
            log(f"{case.name}: p50 first page {first:.2f} ms, deep page {deep:.2f} ms")
    except BaseException:
        if stack.service is not None:
            print(f"--- service log (tail) ---\n{stack.service.tail()}", file=sys.stderr)
        raise
    finally:
        stack.cleanup()
    print(table(found, generated, args, background))


if __name__ == "__main__":
    main()
