"""course-signup benchmark: the service on PostgreSQL against its floors, in one run.

    python bench/run.py [--quick] [--workers N] [--duration S] [--concurrency 1,16,64,...]

What it does (see bench/README.md for what each figure means):
  1. creates a throwaway database, runs `course-signup migrate`, starts `course-signup serve`
     (N workers, JWT auth on, log level warning), creates a hot course, spread courses and the
     rush courses through the admin API, and gives 1000 students three enrollments each;
  2. pgbench floor: the service's sign-up statement (compiled from its repositories module)
     on the hot course and on the spread courses at 1, 4, 16 and 64 clients;
  3. hello floor: bench/hello.py under the same uvicorn and worker count;
  4. the service: GET /courses, GET /students/{s}/courses (my-courses) and sign-ups (spread)
     at every concurrency, sign-ups to the hot course at 1, 16 and 64 clients, the overload
     runs at 4x the saturating concurrency, and the rush (2000 students, 50 and 500 seats);
  5. the service again with COURSE_SIGNUP_BATCH_ADMISSION=false: the hot course and the rush;
  6. the floor app (bench/floor_app.py: raw ASGI + asyncpg, the service's SQL): the hot course,
     my-courses and the rush;
  7. prints one table, saves bench/results/<timestamp>.json and latest.json, draws latest.png,
     stops everything it started and drops the database.
Every sign-up is a distinct student with its own token, so every request is a real enrollment
answered 200; any other answer, and any request without an answer, is counted as an error.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
import pgbench_floor
import report
from scenarios import Scenarios
from stack import Stack, log
from workload import MY_COURSES_EACH, MY_STUDENTS, Workload


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs and fewer points (about 2.5 min)")
    parser.add_argument(
        "--workers", type=int, default=2, help="service, hello and floor app worker processes (default 2)"
    )
    parser.add_argument("--duration", type=int, help="seconds per HTTP measurement (default 8, quick 2)")
    parser.add_argument("--pgbench-duration", type=int, help="seconds per pgbench run (default 5, quick 2)")
    parser.add_argument("--concurrency", help="client counts (default 1,4,16,64,256; quick 1,16,64,256)")
    parser.add_argument("--spread-courses", type=int, default=200)
    parser.add_argument(
        "--pgbench-sql", type=Path, help="a pgbench script instead of the service's sign-up statement (see README)"
    )
    parser.add_argument("--loadgen", choices=["wrk", "asyncio"], default="wrk", help="(see bench/README.md)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (capped at the client count)")
    parser.add_argument("--port", type=int, default=18080, help="the service's port; hello port+1, floor app port+2")
    parser.add_argument("--database", default="course_signup_bench", help="dropped and re-created")
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432", help="USER@HOST:PORT of the PostgreSQL server")
    parser.add_argument("--src", type=Path, help="run the service from this source tree (default: installed)")
    parser.add_argument(
        "--service-env", action="append", default=[], metavar="KEY=VALUE", help="extra COURSE_SIGNUP_* setting"
    )
    parser.add_argument(
        "--wait-quiet", type=float, default=0, help="wait up to this many seconds for an idle machine first"
    )
    parser.add_argument("--keep-database", action="store_true", help="leave the database for inspection")
    parser.add_argument("--no-save", action="store_true", help="print the table only")
    args = parser.parse_args()
    args.duration = args.duration or (2 if args.quick else 8)
    args.pgbench_duration = args.pgbench_duration or (2 if args.quick else 5)
    default = "1,16,64,256" if args.quick else "1,4,16,64,256"
    args.concurrency = sorted({int(c) for c in (args.concurrency or default).split(",")})
    user, _, hostport = args.pg.partition("@")
    args.pg_user, args.pg_host, args.pg_port = user, *hostport.split(":")
    return args


def measure(stack: Stack, results: dict[str, Any]) -> None:
    """The whole run, in the order bench/README.md describes, its figures added to `results`."""
    a = stack.args
    waited = time.monotonic()
    load = harness.wait_quiet(0.25, a.wait_quiet) if a.wait_quiet else harness.background_load(1.0)
    results["background_cores_before"] = round(load, 2)
    results["waited_for_quiet_s"] = round(time.monotonic() - waited, 1)
    log(f"background load before the run: {load:.2f} cores")
    started = time.monotonic()
    results.update(started=datetime.now(UTC).isoformat(timespec="seconds"), config=report.config_of(a))
    results["machine"] = report.machine()
    results["source"] = report.source_state(a)

    workload = Workload(stack)
    results["postgres"] = stack.create_database()
    results["pool_connections_per_worker"] = stack.pool_per_worker()
    log(f"PostgreSQL accepts {stack.free_connections()} more connections; the service may open "
        f"{a.workers * results['pool_connections_per_worker']}")  # fmt: skip
    stack.migrate()
    stack.start_service()
    workload.create_courses(rush_targets=["service", "unbatched", "floor"])
    workload.seed_my_courses()
    log(f"database {a.database}: 1 hot + {len(workload.spread_ids)} spread courses, "
        f"{MY_STUDENTS} students x {MY_COURSES_EACH} enrollments")  # fmt: skip

    pgbench_floor.measure_all(stack, workload, results)
    scenarios = Scenarios(stack, workload, results)
    files = workload.read_lines()
    scenarios.hello_floor(files)
    rates = scenarios.sweep(files)
    scenarios.overload(files, rates)
    scenarios.rush("service", a.port, stack.service)
    scenarios.unbatched()  # restarts the service with COURSE_SIGNUP_BATCH_ADMISSION=false, then stops it
    scenarios.floor_app(files)
    results["integrity"] = scenarios.integrity()
    stack.drop_database()
    results["elapsed_s"] = round(time.monotonic() - started, 1)


def main() -> None:
    args = parse_args()
    for tool in (["wrk"] if args.loadgen == "wrk" else []) + ["pgbench", "psql"]:
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} not found (apt-get install -y {'wrk' if tool == 'wrk' else 'postgresql-client'})")
    stack = Stack(args)
    results: dict[str, Any] = {"runs": [], "pgbench": []}

    def terminate(_signum: int, _frame: object) -> None:
        raise SystemExit("bench: terminated")

    signal.signal(signal.SIGTERM, terminate)
    try:
        measure(stack, results)
    except BaseException:
        if stack.service is not None:
            print(f"--- service log (tail) ---\n{stack.service.tail()}", file=sys.stderr)
        raise
    finally:
        stack.cleanup()
    report.analyse(results)
    text = report.table(results)
    results["table"] = text.splitlines()
    print(text)
    if not args.no_save:
        report.save(results, args.quick)


if __name__ == "__main__":
    main()
