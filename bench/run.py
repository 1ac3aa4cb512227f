"""course-signup benchmark: the service on PostgreSQL against its two floors, in one run.

    python bench/run.py [--quick] [--workers N] [--duration S] [--concurrency 1,16,64,...]

What it does (see bench/README.md for what each figure means):
  1. creates a throwaway database, runs `course-signup migrate`, starts `course-signup serve`
     (N workers, JWT auth on, log level warning), creates a hot course and spread courses
     through the admin API, and gives 1000 students five enrollments each (for my-courses);
  2. pgbench floor: bench/signup.sql (the service's sign-up SQL, exactly as it sends it)
     on the hot course and on the spread courses at 1, 4, 16 and 64 clients;
  3. hello floor: bench/hello.py under the same uvicorn and worker count;
  4. the service: GET /courses, GET /students/{s}/courses (my-courses) and sign-ups (spread)
     at every concurrency, sign-ups to the hot course at 1, 16 and 64 clients, then the
     overload runs at 4x the saturating concurrency;
  5. prints one table, saves bench/results/<timestamp>.json and latest.json, draws latest.png,
     stops everything it started and drops the database.
Every sign-up is a distinct student with its own token, so every request is a real enrollment
answered 200; any other answer, and any request without an answer, is counted as an error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness

BENCH = harness.BENCH
ROOT = BENCH.parent
RESULTS = BENCH / "results"
HOT = "1000"  # course ids are digits so that pgbench (numeric variables only) can name them too
FIRST_SPREAD = 1001
PGBENCH_CLIENTS = (1, 4, 16, 64)
RUSH_CLIENTS = (1, 16, 64)
MY_STUDENTS = 1000
MY_COURSES_EACH = 5
CAPACITY = 10_000_000  # the largest the API accepts: never fills during a run
OVERLOAD_FACTOR = 4
OVERLOAD_MAX_CLIENTS = 1024
AIMS = {"hot64_vs_pgbench": 0.45, "courses_vs_hello": 0.3, "my_courses_vs_hello": 0.15}


# --- configuration -------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs and fewer points (about 1.5 min)")
    parser.add_argument("--workers", type=int, default=2, help="service and hello worker processes (default 2)")
    parser.add_argument("--duration", type=int, help="seconds per HTTP measurement (default 8, quick 2)")
    parser.add_argument("--pgbench-duration", type=int, help="seconds per pgbench run (default 5, quick 2)")
    parser.add_argument("--concurrency", help="client counts (default 1,4,16,64,256; quick 1,16,64,256)")
    parser.add_argument("--spread-courses", type=int, default=200)
    parser.add_argument(
        "--pgbench-sql", type=Path, default=BENCH / "signup.sql", help="the floor's pgbench script (see README)"
    )
    parser.add_argument("--loadgen", choices=["wrk", "asyncio"], default="wrk", help="(see bench/README.md)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (capped at the client count)")
    parser.add_argument("--port", type=int, default=18080, help="the service's port; hello uses port+1")
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


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="course-signup-bench-"))
        self.secret = secrets.token_urlsafe(48)
        self.service: harness.Server | None = None
        self.hello: harness.Server | None = None
        self.database_created = False
        self.student_serial = 0
        self.signups_counted = 0
        self.in_flight_bound = 0
        self.pg_pid = harness.postmaster_pid()
        self.spread_ids = [str(FIRST_SPREAD + i) for i in range(args.spread_courses)]
        self.results: dict[str, Any] = {"runs": [], "pgbench": []}
        self.log(f"scratch directory {self.tmp}")
        if args.src:
            sys.path.insert(0, str(args.src.resolve()))
        from course_signup.adapters.tokens import TokenService
        from course_signup.settings import Settings

        settings = Settings(jwt_secret=self.secret, jwt_issuer=None, jwt_audience=None, jwt_jwks_url=None)
        self.tokens = TokenService(settings, secret=self.secret)

    @staticmethod
    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    # --- database ------------------------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        a = self.args
        return f"postgresql+asyncpg://{a.pg_user}@{a.pg_host}:{a.pg_port}/{a.database}"

    def psql(self, sql: str, database: str | None = None) -> str:
        a = self.args
        command = ["psql", "-h", a.pg_host, "-p", a.pg_port, "-U", a.pg_user, "-d", database or a.database]
        completed = subprocess.run(
            [*command, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"psql failed: {sql}\n{completed.stderr}")
        return completed.stdout.strip()

    def create_database(self) -> None:
        name = self.args.database
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', database="postgres")
        self.psql(f'CREATE DATABASE "{name}"', database="postgres")
        self.database_created = True
        self.results["postgres"] = {
            "version": self.psql("SHOW server_version"),
            **{
                key: self.psql(f"SHOW {key}")
                for key in ("max_connections", "shared_buffers", "synchronous_commit", "fsync")
            },
        }

    def drop_database(self) -> None:
        if self.database_created and not self.args.keep_database:
            self.psql(f'DROP DATABASE IF EXISTS "{self.args.database}" WITH (FORCE)', database="postgres")
            self.database_created = False

    def checkpoint(self) -> None:
        """Start every write run from the same place: no checkpoint of an earlier run's WAL midway."""
        self.psql("CHECKPOINT")

    # --- the service and the hello app --------------------------------------------------------------

    def service_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COURSE_SIGNUP_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            COURSE_SIGNUP_DATABASE_URL=self.database_url,
            COURSE_SIGNUP_WORKERS=str(self.args.workers),
            COURSE_SIGNUP_JWT_SECRET=self.secret,
            COURSE_SIGNUP_AUTH_MODE="jwt",
            COURSE_SIGNUP_LOG_LEVEL="warning",
            COURSE_SIGNUP_HOST="127.0.0.1",
            COURSE_SIGNUP_PORT=str(self.args.port),
            COURSE_SIGNUP_DATA_DIR=str(self.tmp / "data"),
        )
        for item in self.args.service_env:
            key, _, value = item.partition("=")
            env[key if key.startswith("COURSE_SIGNUP_") else f"COURSE_SIGNUP_{key}"] = value
        if self.args.src:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.args.src.resolve()), env.get("PYTHONPATH")]))
        return env

    def cli(self) -> list[str]:
        script = Path(sys.executable).parent / "course-signup"
        return [str(script)] if script.exists() and not self.args.src else [sys.executable, "-m", "course_signup"]

    def migrate(self) -> None:
        completed = subprocess.run([*self.cli(), "migrate"], env=self.service_env(), capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError(f"course-signup migrate failed:\n{completed.stdout}\n{completed.stderr}")

    def start_service(self) -> None:
        self.service = harness.Server(
            "course-signup", [*self.cli(), "serve"], self.service_env(), self.tmp / "service.log"
        )
        self.service.wait_ready(self.args.port, "/ready")
        self.log(f"service up: {self.args.workers} worker(s) on port {self.args.port}")

    def start_hello(self) -> None:
        port = self.args.port + 1
        self.hello = harness.Server("hello", harness.hello_command(port, self.args.workers), dict(os.environ),
                                    self.tmp / "hello.log")  # fmt: skip
        self.hello.wait_ready(port, "/")

    def stop(self, name: str) -> None:
        server = getattr(self, name)
        if server is not None:
            server.stop()
            setattr(self, name, None)

    # --- data ----------------------------------------------------------------------------------------

    def create_courses(self) -> None:
        admin = self.tokens.issue("bench-admin@bench.example", admin=True, ttl_seconds=24 * 3600)
        courses = [(HOT, "Hot course (bench)")] + [(cid, f"Spread course {cid} (bench)") for cid in self.spread_ids]
        for course_id, name in courses:
            status, body = harness.http_request(
                self.args.port, "POST", "/courses",
                {"courseId": course_id, "name": name, "lessons": 12, "capacity": CAPACITY}, token=admin,
            )  # fmt: skip
            if status != 201:
                raise RuntimeError(f"POST /courses {course_id}: {status} {body}")

    def seed_my_courses(self) -> None:
        """1000 students with five enrollments each, written directly (counters kept consistent)."""
        n = len(self.spread_ids)
        self.psql(
            f"""
            INSERT INTO enrollments (student_id, course_id, status, waitlist_seq, created_at)
            SELECT 'm' || s || '@bench.example', ({FIRST_SPREAD} + ((s * 7 + k * 37) % {n}))::text,
                   'enrolled', NULL, now()
            FROM generate_series(0, {MY_STUDENTS - 1}) s, generate_series(0, {MY_COURSES_EACH - 1}) k;
            UPDATE courses c SET enrolled = (SELECT count(*) FROM enrollments e WHERE e.course_id = c.course_id);
            ANALYZE;
            """
        )

    def lines_file(self, name: str, lines: list[tuple[str, str, str]]) -> Path:
        return harness.write_lines(self.tmp / f"{name}.lines", lines)

    def signup_lines(self, case: str, count: int) -> Path:
        """`count` sign-ups, each by a new student with a token of its own."""
        rng = random.Random(self.student_serial)
        lines = []
        for _ in range(count):
            self.student_serial += 1
            email = f"u{self.student_serial}@bench.example"
            course = HOT if case == "hot" else rng.choice(self.spread_ids)
            lines.append((f"/students/{email}/courses", self.tokens.issue(email, ttl_seconds=3 * 3600),
                          f'{{"courseId":"{course}"}}'))  # fmt: skip
        return self.lines_file(f"signup-{case}-{self.student_serial}", lines)

    def read_lines(self) -> dict[str, Path]:
        my = []
        for s in range(MY_STUDENTS):
            email = f"m{s}@bench.example"
            my.append((f"/students/{email}/courses", self.tokens.issue(email, ttl_seconds=3 * 3600), "-"))
        return {
            "courses": self.lines_file("courses", [("/courses", "-", "-")]),
            "my-courses": self.lines_file("my-courses", my),
            "hello": self.lines_file("hello", [("/", "-", "-")]),
        }

    # --- measurements --------------------------------------------------------------------------------

    def http_run(
        self, scenario: str, *, port: int, lines: Path, clients: int, duration: int, mode: str = "cycle",
        server: harness.Server | None, record: bool = True, kind: str = "",
    ) -> dict[str, Any]:  # fmt: skip
        meter = harness.CpuMeter(server_pid=server.pid if server else None, pg_pid=self.pg_pid,
                                 database=self.args.database)  # fmt: skip
        time.sleep(0.3)  # let the previous run's connections close
        run = harness.run_load(
            tool=self.args.loadgen, port=port, lines_file=lines, expected=200, mode=mode, clients=clients,
            duration=duration, threads=self.args.wrk_threads, meter=meter,
        )  # fmt: skip
        run.update(scenario=scenario, kind=kind)
        if mode == "once":
            self.signups_counted += run["ok"]
            self.in_flight_bound += clients
        if record:
            self.results["runs"].append(run)
            self.log(
                f"{scenario:<18} c={clients:<4} {run['rps']:>9.1f} req/s  p50 {run['p50_ms']:.2f} ms  "
                f"p99 {run['p99_ms']:.2f} ms  errors {run['errors']}"
                + (f" {run['unexpected']}" if run["unexpected"] else "")
                + (f"  [ran out of students: {run['exhausted']}]" if run["exhausted"] else "")
            )
        return run

    def signup_run(self, case: str, clients: int, duration: int, rate: float, record: bool = True) -> dict[str, Any]:
        count = int(rate * duration * 2 + 50 * clients + 500)
        lines = self.signup_lines(case, count)
        self.checkpoint()
        return self.http_run(
            f"sign-up {case}", port=self.args.port, lines=lines, clients=clients, duration=duration, mode="once",
            server=self.service, record=record, kind="write",
        )  # fmt: skip

    def pgbench(self, case: str, clients: int) -> dict[str, Any]:
        a = self.args
        lo, hi = (HOT, HOT) if case == "hot" else (self.spread_ids[0], self.spread_ids[-1])
        prefix = self.tmp / f"pgbench-{case}-{clients}"
        command = [
            "pgbench", "-h", a.pg_host, "-p", a.pg_port, "-U", a.pg_user, "-n", "-M", "prepared",
            "-f", str(a.pgbench_sql.resolve()), "-c", str(clients), "-j", str(min(clients, 2)),
            "-T", str(a.pgbench_duration), "-l", f"--log-prefix={prefix}",
            "-D", f"lo={lo}", "-D", f"hi={hi}", "-D", f"ts={datetime.now(UTC).isoformat()}",
            "-D", f"rid={secrets.token_hex(16)}", "-D", "status=enrolled", a.database,
        ]  # fmt: skip
        self.checkpoint()
        meter = harness.CpuMeter(pg_pid=self.pg_pid, database=a.database)
        meter.start()
        began = time.monotonic()
        completed = subprocess.run(command, capture_output=True, text=True, cwd=self.tmp)
        elapsed = time.monotonic() - began
        time.sleep(0.5)  # pgbench's backends exit and are reaped: their CPU is then counted
        cpu = meter.stop(elapsed)
        if completed.returncode != 0:
            raise RuntimeError(f"pgbench failed:\n{completed.stdout}\n{completed.stderr}")
        latencies = []
        for log_file in self.tmp.glob(f"{prefix.name}.*"):
            with open(log_file) as handle:
                latencies.extend(int(line.split()[2]) for line in handle if line.strip())
            log_file.unlink()
        latencies.sort()
        tps = failed = 0.0
        for line in completed.stdout.splitlines():
            if line.startswith("tps ="):
                tps = float(line.split()[2])
            elif line.startswith("number of failed transactions:"):
                failed = int(line.split(":")[1].split()[0])

        def pct(p: float) -> float:
            return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] / 1000 if latencies else 0.0

        run = {
            "scenario": f"pgbench {case}", "kind": "pgbench", "case": case, "clients": clients, "rps": round(tps, 1),
            "requests": len(latencies), "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "errors": int(failed), "cpu_cores": cpu,
        }  # fmt: skip
        self.results["pgbench"].append(run)
        self.log(f"pgbench {case:<10} c={clients:<4} {tps:>9.1f} tps    p50 {run['p50_ms']:.2f} ms  "
                 f"p99 {run['p99_ms']:.2f} ms  failed {failed}")  # fmt: skip
        return run

    # --- the whole run -------------------------------------------------------------------------------

    def run(self) -> None:
        a = self.args
        waited = time.monotonic()
        load = harness.wait_quiet(0.25, a.wait_quiet) if a.wait_quiet else harness.background_load(1.0)
        self.results["background_cores_before"] = round(load, 2)
        self.results["waited_for_quiet_s"] = round(time.monotonic() - waited, 1)
        self.log(f"background load before the run: {load:.2f} cores")
        started = time.monotonic()
        self.results.update(started=datetime.now(UTC).isoformat(timespec="seconds"), config=config_of(a))
        self.results["machine"] = machine()

        self.create_database()
        self.migrate()
        self.start_service()
        self.create_courses()
        self.seed_my_courses()
        self.log(f"database {a.database}: 1 hot + {len(self.spread_ids)} spread courses, "
                 f"{MY_STUDENTS} students x {MY_COURSES_EACH} enrollments")  # fmt: skip

        for case in ("hot", "spread"):
            for clients in PGBENCH_CLIENTS:
                self.pgbench(case, clients)

        files = self.read_lines()
        self.start_hello()
        assert self.hello is not None
        for clients in a.concurrency:
            self.http_run("hello", port=a.port + 1, lines=files["hello"], clients=clients, duration=a.duration,
                          server=self.hello, kind="floor")  # fmt: skip
        self.stop("hello")

        # Warm-up (not recorded): pools filled, statements prepared, and a sign-up rate to size the
        # student lists by (each list holds twice what the fastest rate so far could use).
        port = a.port
        for name in ("courses", "my-courses"):
            self.http_run(name, port=port, lines=files[name], clients=16, duration=1, server=self.service,
                          record=False)  # fmt: skip
        warm = 1 if a.quick else 2
        rates = {
            case: self.signup_run(case, 64, warm, rate=3000, record=False)["rps"] for case in ("spread", "hot")
        }  # fmt: skip
        for clients in sorted(set(a.concurrency) | set(RUSH_CLIENTS)):
            if clients in a.concurrency:
                for name in ("courses", "my-courses"):
                    self.http_run(name, port=port, lines=files[name], clients=clients, duration=a.duration,
                                  server=self.service, kind="read")  # fmt: skip
            run = self.signup_run("spread", clients, a.duration, rates["spread"])
            rates["spread"] = max(rates["spread"], run["rps"])
        for clients in RUSH_CLIENTS:
            run = self.signup_run("hot", clients, a.duration, rates["hot"])
            rates["hot"] = max(rates["hot"], run["rps"])

        self.overload(files, rates)
        self.results["integrity"] = self.integrity()
        self.stop("service")
        self.drop_database()
        self.results["elapsed_s"] = round(time.monotonic() - started, 1)

    def overload(self, files: dict[str, Path], rates: dict[str, float]) -> None:
        """At 4x the saturating concurrency (the fewest clients reaching 90% of the best rate)."""
        a = self.args
        out = []
        for scenario in ("sign-up spread", "sign-up hot", "courses", "my-courses"):
            runs = [r for r in self.results["runs"] if r["scenario"] == scenario]
            best = max(r["rps"] for r in runs)
            saturating = min(r["clients"] for r in runs if r["rps"] >= 0.9 * best)
            clients = min(OVERLOAD_FACTOR * saturating, OVERLOAD_MAX_CLIENTS)
            run = next((r for r in runs if r["clients"] == clients), None)
            if run is None:
                if scenario.startswith("sign-up"):
                    case = scenario.split()[1]
                    run = self.signup_run(case, clients, a.duration, rates[case])
                else:
                    run = self.http_run(scenario, port=a.port, lines=files[scenario], clients=clients,
                                        duration=a.duration, server=self.service, kind="read")  # fmt: skip
                run["overload"] = True
            most = max(runs, key=lambda r: r["clients"])
            out.append({
                "scenario": scenario, "saturating_clients": saturating, "saturating_rps": best, "clients": clients,
                "rps": run["rps"], "p95_ms": run["p95_ms"], "p99_ms": run["p99_ms"], "max_ms": run["max_ms"],
                "unanswered": run["unanswered"], "bad_status": run["bad_status"], "unexpected": run["unexpected"],
                "p95_under_5s": run["p95_ms"] < 5000, "all_answered": run["unanswered"] == 0,
                "most_clients": {
                    "clients": most["clients"], "rps": most["rps"], "p95_ms": most["p95_ms"],
                    "unanswered": most["unanswered"], "unexpected": most["unexpected"],
                },
            })  # fmt: skip
        self.results["overload"] = out

    def integrity(self) -> dict[str, Any]:
        """Every 200 counted is an enrollment row (rows may exceed it by requests in flight at a run's end)."""
        query = (
            "SELECT (SELECT count(*) FROM enrollments WHERE student_id LIKE 'u%@bench.example'), "
            "(SELECT count(*) FROM course_events WHERE student_id LIKE 'u%@bench.example'), "
            "(SELECT count(*) FROM courses c WHERE enrolled <> "
            "(SELECT count(*) FROM enrollments e WHERE e.course_id = c.course_id AND e.status = 'enrolled'))"
        )  # one statement: one snapshot
        # Requests still queued in the service when the last run's clock stopped finish (or time out
        # waiting for a connection) first.
        deadline, last = time.monotonic() + 15, None
        while True:
            rows, events, drift = (int(v) for v in self.psql(query).split("|"))
            if (rows, events) == last or time.monotonic() > deadline:
                break
            last = rows, events
            time.sleep(1.0)
        ok = self.signups_counted <= rows <= self.signups_counted + self.in_flight_bound and events == rows
        return {
            "enrollment_rows": rows, "event_rows": events, "ok_answers_counted": self.signups_counted,
            "in_flight_bound": self.in_flight_bound, "courses_with_counter_drift": drift, "ok": ok and drift == 0,
        }  # fmt: skip

    def cleanup(self) -> None:
        for name in ("hello", "service"):
            try:
                self.stop(name)
            except Exception as exc:  # keep cleaning up
                self.log(f"could not stop {name}: {exc}")
        try:
            self.drop_database()
        except Exception as exc:
            self.log(f"could not drop database {self.args.database}: {exc}")
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- reporting ---------------------------------------------------------------------------------------


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "quick": args.quick, "workers": args.workers, "duration_s": args.duration,
        "pgbench_duration_s": args.pgbench_duration, "concurrency": args.concurrency,
        "spread_courses": args.spread_courses, "loadgen": args.loadgen, "wrk_threads": args.wrk_threads,
        "pgbench_sql": args.pgbench_sql.name,
        "service_env": args.service_env, "src": str(args.src) if args.src else None,
    }  # fmt: skip


def machine() -> dict[str, Any]:
    def first(path: str, key: str) -> str:
        try:
            with open(path) as handle:
                return next((line.split(":", 1)[1].strip() for line in handle if line.startswith(key)), "?")
        except OSError:
            return "?"

    def version(command: list[str]) -> str:
        try:
            completed = subprocess.run(command, capture_output=True, text=True)
            return (completed.stdout + completed.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"

    import uvicorn

    return {
        "cpus": os.cpu_count(), "cpu_model": first("/proc/cpuinfo", "model name"),
        "memory": first("/proc/meminfo", "MemTotal"), "kernel": platform.release(),
        "python": platform.python_version(), "uvicorn": uvicorn.__version__,
        "wrk": version(["wrk", "--version"]), "pgbench": version(["pgbench", "--version"]),
    }  # fmt: skip


def analyse(results: dict[str, Any]) -> None:
    """Floors, ratios and the aims, added to the results."""
    runs, pgb = results["runs"], results["pgbench"]
    best = {}
    for case in ("hot", "spread"):
        top = max((r for r in pgb if r["case"] == case), key=lambda r: r["rps"])
        best[case] = {"clients": top["clients"], "tps": top["rps"]}
    hello = {r["clients"]: r["rps"] for r in runs if r["scenario"] == "hello"}
    for r in runs:
        if r["kind"] == "write":
            floor = best[r["scenario"].split()[1]]["tps"]
            r["ratio"], r["floor"] = round(r["rps"] / floor, 3), f"pgbench {r['scenario'].split()[1]} best"
        elif r["kind"] == "read" and r["clients"] in hello:
            r["ratio"], r["floor"] = round(r["rps"] / hello[r["clients"]], 3), f"hello @{r['clients']}"

    def peak(scenario: str) -> float:
        return max((r["rps"] for r in runs if r["scenario"] == scenario), default=0.0)

    hot64 = next((r["rps"] for r in runs if r["scenario"] == "sign-up hot" and r["clients"] == 64), 0.0)
    hello_peak = peak("hello")
    measured = {
        "hot64_vs_pgbench": hot64 / best["hot"]["tps"],
        "courses_vs_hello": peak("courses") / hello_peak,
        "my_courses_vs_hello": peak("my-courses") / hello_peak,
    }
    results["floors"] = {"pgbench_best": best, "hello_peak": hello_peak}
    results["aims"] = {
        key: {"measured": round(value, 3), "aim": AIMS[key], "met": value >= AIMS[key]}
        for key, value in measured.items()
    }


def table(results: dict[str, Any]) -> str:
    head = (f"{'scenario':<16}{'clients':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>10}{'errors':>8}"
            f"{'ratio':>8}  {'to':<22}{'cores srv/pg/gen/other':>24}")  # fmt: skip
    out = [head, "-" * len(head)]
    best = results["floors"]["pgbench_best"]

    def row(r: dict[str, Any], mark: str = "") -> str:
        cpu = r.get("cpu_cores") or {}
        cores = "/".join(f"{cpu.get(k, 0):.2f}" for k in ("server", "postgres", "loadgen", "other"))
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        clients = f"{r['clients']}{mark}"
        return (f"{r['scenario']:<16}{clients:>8}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>10.2f}"
                f"{r['errors']:>8}{ratio:>8}  {r.get('floor', ''):<22}{cores:>24}")  # fmt: skip

    for case in ("hot", "spread"):
        for r in (r for r in results["pgbench"] if r["case"] == case):
            out.append(row(r, "*" if r["clients"] == best[case]["clients"] else ""))
    order = ["hello", "courses", "my-courses", "sign-up spread", "sign-up hot"]
    for scenario in order:
        out.append("")
        for r in sorted((r for r in results["runs"] if r["scenario"] == scenario), key=lambda r: r["clients"]):
            out.append(row(r, "!" if r.get("overload") else ""))
    out.append("-" * len(head))
    out.append("* pgbench's best client count (the floor for writes); ! overload-only run; ratio: service / floor")
    out.append("")
    hot, spread = best["hot"], best["spread"]
    out.append(f"floors: pgbench hot {hot['tps']:.0f} tps (c={hot['clients']}), spread {spread['tps']:.0f} tps "
               f"(c={spread['clients']}); hello peak {results['floors']['hello_peak']:.0f} req/s")  # fmt: skip
    out.append("registration rush (distinct students; sign-ups/s, p50/p99 ms, ratio to pgbench's best):")
    for case in ("hot", "spread"):
        cells = []
        for clients in RUSH_CLIENTS:
            r = next(
                (r for r in results["runs"] if r["scenario"] == f"sign-up {case}" and r["clients"] == clients), None
            )
            if r:
                cells.append(f"c={clients}: {r['rps']:.0f}/s {r['p50_ms']:.1f}/{r['p99_ms']:.0f} ms {r['ratio']:.2f}x")
        floor = best[case]
        out.append(f"  {case:<7}{' | '.join(cells)}   (pgbench {floor['tps']:.0f} tps at c={floor['clients']})")
    names = {
        "hot64_vs_pgbench": "hot course sign-ups @64 clients / pgbench hot best",
        "courses_vs_hello": "GET /courses (cached) peak / hello peak",
        "my_courses_vs_hello": "my-courses peak / hello peak",
    }
    out.append("aims (reported, not asserted):")
    for key, aim in results["aims"].items():
        verdict = "met" if aim["met"] else "NOT met"
        out.append(f"  {names[key]:<52} {aim['measured']:.2f}x  (aim >= {aim['aim']})  {verdict}")
    out.append(f"overload (x{OVERLOAD_FACTOR} the saturating clients: p95 < 5 s and every request answered):")
    for o in results["overload"]:
        verdict = "ok" if o["p95_under_5s"] and o["all_answered"] else "FAILED"
        extra = f", non-200: {o['unexpected']}" if o["unexpected"] else ""
        out.append(f"  {o['scenario']:<15} saturates at c={o['saturating_clients']:<4} -> c={o['clients']:<5} "
                   f"{o['rps']:>7.0f} req/s  p95 {o['p95_ms']:>8.1f} ms  unanswered {o['unanswered']}{extra}  "
                   f"{verdict}")  # fmt: skip
        m = o["most_clients"]
        if m["clients"] > o["clients"]:
            extra = f", non-200: {m['unexpected']}" if m["unexpected"] else ""
            out.append(f"  {'':<15} {'(most clients measured)':<26} c={m['clients']:<5} {m['rps']:>7.0f} req/s  "
                       f"p95 {m['p95_ms']:>8.1f} ms  unanswered {m['unanswered']}{extra}")  # fmt: skip
    i = results.get("integrity", {})
    if i:
        out.append(f"integrity: {i['ok_answers_counted']} sign-ups answered 200, {i['enrollment_rows']} enrollment "
                   f"rows, {i['event_rows']} events, {i['courses_with_counter_drift']} counter drift "
                   f"-> {'ok' if i['ok'] else 'MISMATCH'}")  # fmt: skip
    busy = [r["cpu_cores"].get("other", 0) for r in results["runs"] + results["pgbench"] if r.get("cpu_cores")]
    if busy:
        worst = max(busy)
        out.append(f"other processes on this machine used up to {worst:.2f} cores during a run "
                   f"(background before the run: {results['background_cores_before']:.2f})"
                   + ("  -- figures are disturbed" if worst > 0.3 else ""))  # fmt: skip
    return "\n".join(out)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [
        ("hello", "hello floor (plain ASGI)", "0.55", "--", "o"),
        ("courses", "GET /courses", "tab:blue", "-", "o"),
        ("my-courses", "GET my-courses", "tab:green", "-", "s"),
        ("sign-up spread", "POST sign-up, spread", "tab:orange", "-", "^"),
        ("sign-up hot", "POST sign-up, hot course", "tab:red", "-", "v"),
        ("pgbench spread", "pgbench sign-up SQL, spread", "tab:orange", ":", "^"),
        ("pgbench hot", "pgbench sign-up SQL, hot", "tab:red", ":", "v"),
    ]
    runs = results["runs"] + results["pgbench"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6))
    for scenario, label, color, style, marker in series:
        points = sorted((r["clients"], r["rps"], r["p99_ms"]) for r in runs if r["scenario"] == scenario)
        if not points:
            continue
        xs = [p[0] for p in points]
        left.plot(xs, [p[1] for p in points], style, color=color, marker=marker, label=label)
        right.plot(xs, [p[2] for p in points], style, color=color, marker=marker, label=label)
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent clients (keep-alive connections)")
        axis.grid(True, which="both", alpha=0.3)
        ticks = sorted({r["clients"] for r in runs})
        axis.set_xticks(ticks, [str(t) for t in ticks])
    left.set_yscale("log")
    left.set_ylabel("requests (transactions) per second")
    left.set_title("throughput")
    right.set_yscale("log")
    right.set_ylabel("p99 latency, ms")
    right.set_title("p99 latency")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False)
    m, c = results["machine"], results["config"]
    fig.suptitle(
        f"course-signup on PostgreSQL: {c['workers']} uvicorn worker(s), {m['cpus']} CPUs ({m['cpu_model']}), "
        f"{c['duration_s']} s per point, {results['started']}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    for tool in (["wrk"] if args.loadgen == "wrk" else []) + ["pgbench", "psql"]:
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} not found (apt-get install -y {'wrk' if tool == 'wrk' else 'postgresql-client'})")
    bench = Bench(args)

    def terminate(_signum: int, _frame: object) -> None:
        raise SystemExit("bench: terminated")

    signal.signal(signal.SIGTERM, terminate)
    try:
        bench.run()
    except BaseException:
        if bench.service is not None:
            print(f"--- service log (tail) ---\n{bench.service.tail()}", file=sys.stderr)
        raise
    finally:
        bench.cleanup()
    results = bench.results
    analyse(results)
    text = table(results)
    results["table"] = text.splitlines()
    print(text)
    if args.no_save:
        return
    RESULTS.mkdir(exist_ok=True)
    stamp = results["started"].replace(":", "").replace("-", "").replace("+0000", "Z")
    stamped = f"{stamp}{'-quick' if args.quick else ''}.json"
    for name in (stamped, "latest.json"):
        (RESULTS / name).write_text(json.dumps(results, indent=2) + "\n")
    plot(results, RESULTS / "latest.png")
    print(f"\nsaved {RESULTS / 'latest.json'} (and {stamped}), plot {RESULTS / 'latest.png'}; "
          f"{results['elapsed_s']:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
