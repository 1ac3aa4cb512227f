"""A registration rush in database mode (batched) and in queue mode, with 2 and 4 API processes, in one run.

For each case: a fresh course with SEATS seats, STUDENTS distinct students signing up at once over
CONNECTIONS keep-alive connections (waitlist false), on `serve --workers N`; in queue mode with one
`course-signup worker`. It prints, per case: sign-ups answered per second, p50 and p99 latency, the
time until the last seat was answered (course full), the time until the database held every seat,
and in queue mode the worker's lag from decision to commit (p50/p99). Every case is checked: exactly
SEATS answers 200, the rest 409 "Course is full.", and the database agrees.

It uses its own PostgreSQL database, its own redis-server on a spare port and its own RabbitMQ
vhost, all removed afterwards. Run it on a quiet machine: `make bench-rush` (or python bench/rush_modes.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rush import FULL, _request_bytes, _send_all

from course_signup.adapters.tokens import TokenService
from course_signup.settings import Settings

RESULTS = Path(__file__).parent / "results" / "rush_modes.json"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def psql(database: str, sql: str) -> str:
    done = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-X", "-q", "-A", "-t", "-c", sql],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


class Environment:
    """The run's own database, redis-server and vhost, and the processes it starts."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="course-signup-rush-"))
        self.database = f"course_signup_rush_{uuid.uuid4().hex[:8]}"
        self.vhost = f"course_signup_rush_{uuid.uuid4().hex[:8]}"
        self.redis_port = free_port()
        self.secret = secrets.token_urlsafe(48)
        self.tokens = TokenService(Settings(jwt_secret=self.secret), secret=self.secret)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.redis: subprocess.Popen[bytes] | None = None

    def open(self) -> None:
        psql("postgres", f'CREATE DATABASE "{self.database}"')
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", self.vhost], check=True)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"], check=True
        )
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        subprocess.run(
            [sys.executable, "-m", "course_signup", "migrate"], env=self.env(), check=True, capture_output=True
        )

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("COURSE_SIGNUP_")},
            "COURSE_SIGNUP_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.database}",
            "COURSE_SIGNUP_JWT_SECRET": self.secret,
            "COURSE_SIGNUP_DATA_DIR": str(self.tmp),
            "COURSE_SIGNUP_LOG_LEVEL": "warning",
            **extra,
        }

    def queue_env(self, database_index: int) -> dict[str, str]:
        return {
            "COURSE_SIGNUP_ADMISSION": "queue",
            "COURSE_SIGNUP_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/{database_index}",
            "COURSE_SIGNUP_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}",
        }

    def start(self, command: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log_file = (self.tmp / f"{name}.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "course_signup", *command], env=env,
                                   stdout=log_file, stderr=subprocess.STDOUT)  # fmt: skip
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        for process in self.processes:
            self.stop(process)
        if self.redis is not None:
            self.redis.kill()
            self.redis.wait()
        with contextlib.suppress(subprocess.SubprocessError):
            psql("postgres", f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        with contextlib.suppress(subprocess.SubprocessError):
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.vhost], check=True, capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("serve did not become ready")


def create_course(env: Environment, port: int, course: str, seats: int) -> None:
    import httpx

    token = env.tokens.issue("registrar@example.edu", admin=True)
    response = httpx.post(
        f"http://127.0.0.1:{port}/courses",
        json={"courseId": course, "name": "Rush", "capacity": seats},
        headers={"Authorization": f"Bearer {token}"},
    )
    response.raise_for_status()


def seats_written(env: Environment, course: str) -> int:
    return int(psql(env.database, f"SELECT count(*) FROM enrollments WHERE course_id = '{course}'") or 0)


async def _rush(
    env: Environment, port: int, requests: list[bytes], args: argparse.Namespace, course: str
) -> tuple[list[Any], float, float]:
    """The rush, with the database watched meanwhile: (answers, seconds until all answered, until all seats written)."""
    import asyncpg

    connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{env.database}")
    began = time.monotonic()

    async def watch() -> float:
        query = "SELECT count(*) FROM enrollments WHERE course_id = $1"
        while await connection.fetchval(query, course) < args.seats and time.monotonic() - began < 120:
            await asyncio.sleep(0.005)
        return time.monotonic() - began

    try:
        watcher = asyncio.create_task(watch())
        answers = await _send_all(port, requests, args.connections)
        answered = time.monotonic() - began
        written = await watcher
    finally:
        await connection.close()
    return answers, answered, written


def one_case(env: Environment, mode: str, processes: int, args: argparse.Namespace, index: int) -> dict[str, Any]:
    port = free_port()
    extra = env.queue_env(index) if mode == "queue" else {}
    worker_env = env.env(**extra, COURSE_SIGNUP_LOG_LEVEL="info")  # its last line has the lag figures
    worker = env.start(["worker"], worker_env, f"worker-{index}") if mode == "queue" else None
    server = env.start(["serve", "--port", str(port), "--workers", str(processes)], env.env(**extra), f"serve-{index}")
    try:
        wait_ready(port, server)
        course = f"RUSH{index}{uuid.uuid4().hex[:4].upper()}"
        create_course(env, port, course, args.seats)
        students = [f"rush{i:05d}-{index}@example.edu" for i in range(args.students)]
        requests = [
            _request_bytes(port, f"/students/{s}/courses", env.tokens.issue(s), json.dumps({"courseId": course}))
            for s in students
        ]
        time.sleep(1.0)
        answers, answered, written = asyncio.run(_rush(env, port, requests, args, course))
        lag: dict[str, str] = {}
        if worker is not None:
            time.sleep(0.5)
            env.stop(worker)
            text = (env.tmp / f"worker-{index}.log").read_text()
            found = re.search(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms", text)
            if found:
                lag = {"lag_p50_ms": found.group(1), "lag_p99_ms": found.group(2)}
    finally:
        env.stop(server)
        if worker is not None:
            env.stop(worker)
    latencies = sorted(a.answered - a.sent for a in answers)
    seated = [a for a in answers if a.status == 200]
    full = [a for a in answers if a.status == 409 and a.sentence == FULL]
    rows = seats_written(env, course)

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000, 1)

    return {
        "mode": mode, "processes": processes, "seats": args.seats, "students": len(answers),
        "per_s": round(len(answers) / answered), "p50_ms": pct(50), "p99_ms": pct(99),
        "full_ms": round(max(a.answered for a in seated) * 1000) if seated else None,
        "written_ms": round(written * 1000), **lag,
        "ok": len(seated) == args.seats and len(full) == len(answers) - args.seats and rows == args.seats,
    }  # fmt: skip


def table(cases: list[dict[str, Any]]) -> str:
    head = (
        "| mode | API processes | sign-ups/s | p50 ms | p99 ms | course full after | all seats in PostgreSQL after "
        "| decision to commit p50 / p99 | check |"
    )
    lines = [head, "|" + "---|" * 9]
    for c in cases:
        lag = f"{c['lag_p50_ms']} / {c['lag_p99_ms']} ms" if "lag_p50_ms" in c else "0 (same statement)"
        lines.append(
            f"| {c['mode']} | {c['processes']} | {c['per_s']:,} | {c['p50_ms']} | {c['p99_ms']} | {c['full_ms']} ms | "
            f"{c['written_ms']} ms | {lag} | {'ok' if c['ok'] else 'MISMATCH'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=4000)
    parser.add_argument("--seats", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--processes", default="2,4", help="API process counts to try")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    env = Environment()
    cases = []
    try:
        env.open()
        index = 0
        for processes in (int(p) for p in args.processes.split(",")):
            for mode in ("database", "queue"):
                index += 1
                log(f"rush: {mode} mode, {processes} API processes, {args.students} students for {args.seats} seats")
                case = one_case(env, mode, processes, args, index)
                log(json.dumps(case))
                cases.append(case)
    finally:
        env.close()
    print(table(cases))
    if not args.no_save:
        RESULTS.write_text(
            json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cases": cases}, indent=2)
        )
    if not all(c["ok"] for c in cases):
        sys.exit("bench: a rush's answers or rows did not add up")


if __name__ == "__main__":
    main()
