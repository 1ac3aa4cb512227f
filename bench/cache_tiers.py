"""What each tier of the catalogue cache buys: GET /courses (the default page) on one `serve` with N workers.

    python bench/cache_tiers.py [--duration 5] [--connections 32] [--courses 300] [--writes 0] [--workers 2]

Each configuration runs on a fresh `course-signup serve` (--workers, default 2; PostgreSQL, rate limits off),
against the same scratch database and the same redis-server of the script's own:

    local+redis  REDIS_URL set: each process's 1 s copy in front of the shared Redis entries
    redis only   REDIS_URL set, CACHE_LOCAL_ENTRIES=0: every answer is looked up in Redis
    local only   no REDIS_URL: each process's own 1 s cache (the default without Redis)
    no cache     no REDIS_URL, CACHE_TTL_SECONDS=0: every answer read and encoded anew

With --writes N a registrar changes a course N times a second during each run; each change drops
the writing worker's copy and, with Redis, every other worker's too. It prints requests per second,
latency and Redis commands per second. Figures only: on a shared machine they move with whatever
else runs, so --rounds N interleaves the configurations.
It needs wrk, redis-server, psql and a PostgreSQL server it may create a database on
(--pg USER@HOST:PORT, default postgres@127.0.0.1:5432); everything it starts is stopped and the
database dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import harness
import redis

CONFIGURATIONS = {
    "local+redis": {"redis": True},
    "redis only": {"redis": True, "COURSE_SIGNUP_CACHE_LOCAL_ENTRIES": "0"},
    "local only": {"redis": False},
    "no cache": {"redis": False, "COURSE_SIGNUP_CACHE_TTL_SECONDS": "0"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="course-signup-cache-tiers-"))
        self.secret = secrets.token_urlsafe(48)
        user, _, where = args.pg.partition("@")
        self.pg_host, _, self.pg_port = where.partition(":")
        self.pg_user = user
        self.database = f"course_signup_cache_tiers_{os.getpid()}"
        self.redis_port = free_port()
        self.redis_process: subprocess.Popen[bytes] | None = None
        self.database_created = False
        self.admin_token = ""

    @property
    def database_url(self) -> str:
        return f"postgresql+asyncpg://{self.pg_user}@{self.pg_host}:{self.pg_port}/{self.database}"

    def psql(self, sql: str) -> None:
        command = ["psql", "-h", self.pg_host, "-p", self.pg_port, "-U", self.pg_user, "-d", "postgres"]
        subprocess.run([*command, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True)

    def env(self, port: int, settings: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COURSE_SIGNUP_")}
        env.update(
            COURSE_SIGNUP_DATABASE_URL=self.database_url,
            COURSE_SIGNUP_WORKERS=str(self.args.workers),
            COURSE_SIGNUP_JWT_SECRET=self.secret,
            COURSE_SIGNUP_LOG_LEVEL="warning",
            COURSE_SIGNUP_PORT=str(port),
            COURSE_SIGNUP_DATA_DIR=str(self.tmp / "data"),
        )
        if settings.get("redis"):
            env["COURSE_SIGNUP_REDIS_URL"] = f"redis://127.0.0.1:{self.redis_port}/0"
            if self.args.redis_timeout:
                env["COURSE_SIGNUP_REDIS_TIMEOUT_SECONDS"] = str(self.args.redis_timeout)
        env.update({k: v for k, v in settings.items() if k.startswith("COURSE_SIGNUP_")})
        return env

    def set_up(self) -> None:
        self.psql(f'CREATE DATABASE "{self.database}"')
        self.database_created = True
        migrate = [sys.executable, "-m", "course_signup", "migrate"]
        subprocess.run(migrate, env=self.env(0, {}), check=True, capture_output=True)
        self.redis_process = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            cwd=self.tmp,
        )
        client = redis.Redis(port=self.redis_port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        log(f"database {self.database}, redis-server on port {self.redis_port}")

    def seed(self) -> None:
        from course_signup.adapters.tokens import TokenService
        from course_signup.settings import Settings

        self.admin_token = TokenService(Settings(jwt_secret=self.secret), secret=self.secret).issue(
            "bench@example.com", admin=True
        )
        with self.serve({"redis": False}) as serving:
            for n in range(self.args.courses):
                body = {"courseId": f"BENCH{n:04d}", "name": f"Course {n}", "lessons": 10, "capacity": 100}
                status, _ = harness.http_request(serving.port, "POST", "/courses", body, token=self.admin_token)
                assert status == 201, status
        log(f"{self.args.courses} courses")

    def serve(self, settings: dict[str, str]) -> _Serving:
        return _Serving(self, settings)

    def measure(self, name: str) -> dict[str, float]:
        lines = harness.write_lines(self.tmp / "courses.lines", [("/courses", "-", "-")])
        with self.serve(CONFIGURATIONS[name]) as serving:
            port = serving.port
            load = {"tool": "wrk", "port": port, "lines_file": lines, "expected": 200, "mode": "cycle", "threads": 2}
            harness.run_load(**load, clients=self.args.connections, duration=1)  # warm-up, not recorded
            client = redis.Redis(port=self.redis_port)
            before = client.info("stats")["total_commands_processed"]
            writer = Writer(port, self.admin_token, self.args.writes)
            writer.start()
            try:
                result = harness.run_load(**load, clients=self.args.connections, duration=self.args.duration)
            finally:
                writer.stop()
            commands = client.info("stats")["total_commands_processed"] - before
            if result["errors"]:
                log(f"{name}: {result['errors']} errors ({result['unexpected']}, {result['socket_errors']})")
                log(serving.server.tail(40))
        return {
            "rps": result["rps"],
            "p50_ms": result["p50_ms"],
            "p99_ms": result["p99_ms"],
            "redis_per_s": commands / result["seconds"] if CONFIGURATIONS[name].get("redis") else 0.0,
            "writes_per_s": writer.done / result["seconds"],
        }

    def tear_down(self) -> None:
        if self.redis_process is not None:
            self.redis_process.terminate()
            self.redis_process.wait(timeout=10)
        if self.database_created:
            self.psql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        shutil.rmtree(self.tmp, ignore_errors=True)


class Writer(threading.Thread):
    """A registrar renaming a course `rate` times a second: each change invalidates the whole catalogue cache."""

    def __init__(self, port: int, token: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.port, self.token, self.rate = port, token, rate
        self.done = 0
        self._stopping = threading.Event()

    def run(self) -> None:
        while self.rate > 0 and not self._stopping.wait(1 / self.rate):
            body = {"name": f"Renamed {self.done}"}
            status, _ = harness.http_request(self.port, "PATCH", "/courses/BENCH0000", body, token=self.token)
            self.done += status == 200

    def stop(self) -> None:
        self._stopping.set()
        self.join()


class _Serving:
    """A `serve` process for one configuration, stopped (with its workers) on leaving."""

    def __init__(self, bench: Bench, settings: dict[str, str]) -> None:
        self.bench, self.settings = bench, settings

    def __enter__(self) -> _Serving:
        self.port = free_port()
        command = [sys.executable, "-m", "course_signup", "serve", "--port", str(self.port)]
        log_path = self.bench.tmp / f"serve-{self.port}.log"
        self.server = harness.Server("serve", command, self.bench.env(self.port, self.settings), log_path)
        self.server.wait_ready(self.port, "/ready")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run (wrk: whole seconds)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections of the load generator")
    parser.add_argument("--courses", type=int, default=300, help="courses in the catalogue (a page holds 100)")
    parser.add_argument("--writes", type=float, default=0, help="course changes per second during each run")
    parser.add_argument("--rounds", type=int, default=1, help="times each configuration is measured, interleaved")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the one `serve`")
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432", help="USER@HOST:PORT of the PostgreSQL server")
    parser.add_argument(
        "--redis-timeout",
        type=float,
        help="REDIS_TIMEOUT_SECONDS for the service (default: its own). On a machine whose cores are all busy, "
        "Redis itself may answer late and the breaker then skips it for a second at a time",
    )
    bench = Bench(parser.parse_args())
    results: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGURATIONS}
    try:
        bench.set_up()
        bench.seed()
        for round_ in range(bench.args.rounds):
            for name in CONFIGURATIONS:
                log(f"round {round_ + 1}: {name}")
                results[name].append(bench.measure(name))
    finally:
        bench.tear_down()
    load = os.getloadavg()[0]
    timeout = f", REDIS_TIMEOUT_SECONDS={bench.args.redis_timeout}" if bench.args.redis_timeout else ""
    print(f"\nGET /courses, one serve with {bench.args.workers} workers, {bench.args.connections} connections, "
          f"{bench.args.duration} s per run{timeout}, load average {load:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(f"{'configuration':<13} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'Redis cmd/s':>12} {'writes/s':>9}")
    for name, runs in results.items():
        for run in runs:
            print(
                f"{name:<13} {run['rps']:>9.0f} {run['p50_ms']:>8.2f} {run['p99_ms']:>8.2f} "
                f"{run['redis_per_s']:>12.0f} {run['writes_per_s']:>9.1f}"
            )


if __name__ == "__main__":
    main()
