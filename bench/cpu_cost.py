"""CPU per request of the API process, for several source trees side by side (what each change bought).

Throughput on a shared 2-core machine moves with whatever else runs; the CPU time the API process
spends per answered request moves much less. For each source tree (a `git worktree` of a commit,
or `src` of this checkout) this starts `course-signup serve` with ONE worker on a fresh PostgreSQL
database, loads it with wrk, and divides the process's CPU time (user + system, from /proc) by the
requests wrk counted. Figures are printed, never asserted.

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/cpu_cost.py before=/tmp/before/src now=src --seconds 6
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jwt

BENCH = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")
SEED_SQL = """
INSERT INTO courses (course_id, name, lessons, capacity, enrolled, waitlisted, waitlist_seq, created_at, updated_at)
SELECT 'C' || i, 'Course ' || i, 10, NULL, 0, 0, 0, now(), now() FROM generate_series(1, 201) i;
INSERT INTO enrollments (student_id, course_id, status, created_at)
SELECT 'm' || s || '@bench.example', 'C' || (1 + (s * 7 + k * 13) % 200), 'enrolled', now()
FROM generate_series(0, 999) s, generate_series(0, 2) k;
UPDATE courses c SET enrolled = (SELECT count(*) FROM enrollments e WHERE e.course_id = c.course_id);
"""


def psql(sql: str, database: str = "postgres") -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True,
        capture_output=True,
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def token(secret: str, email: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": email, "role": "student", "iat": now, "exp": now + 7200}, secret, algorithm="HS256")


def wrk(url: str, lines: Path, mode: str, seconds: int, clients: int) -> dict:
    expected = "200"
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{seconds}", url, "-s", str(BENCH / "wrk/requests.lua"), "--",
         str(lines), expected, mode, "1"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(row for row in out.stdout.splitlines() if row.startswith("WRKJSON "))
    return json.loads(line.removeprefix("WRKJSON "))


def measure(label: str, src: Path, seconds: int, clients: int, tmp: Path, *, floor: bool = False) -> dict[str, float]:
    database = f"cpu_cost_{label}_{os.getpid()}"
    secret = secrets.token_urlsafe(48)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COURSE_SIGNUP_")},
        "PYTHONPATH": str(src.resolve()),
        "COURSE_SIGNUP_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
        "COURSE_SIGNUP_JWT_SECRET": secret,
        "COURSE_SIGNUP_DATA_DIR": str(tmp / label),
        "COURSE_SIGNUP_LOG_LEVEL": "warning",
        "COURSE_SIGNUP_WORKERS": "1",
    }
    psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{database}"')
    server = None
    try:
        subprocess.run([sys.executable, "-m", "course_signup", "migrate"], env=env, check=True, capture_output=True)
        psql(SEED_SQL, database)
        port = 18900
        command = [sys.executable, "-m", "course_signup", "serve", "--port", str(port)]
        if floor:  # bench/floor_app.py under the options serve gives uvicorn (see harness.asgi_command)
            sys.path.insert(0, str(BENCH))
            from harness import asgi_command

            command = asgi_command("floor_app:app", port, 1)
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        mine = tmp / f"{label}-my.txt"
        students = [f"m{s}@bench.example" for s in range(1000)]
        mine.write_text("".join(f"/students/{s}/courses\t{token(secret, s)}\t-\n" for s in students))
        fresh = tmp / f"{label}-signup.txt"
        fresh.write_text(
            "".join(
                f'/students/n{s}@bench.example/courses\t{token(secret, f"n{s}@bench.example")}\t{{"courseId":"C201"}}\n'
                for s in range(60_000)
            )
        )
        catalogue = tmp / f"{label}-catalogue.txt"
        catalogue.write_text("/courses\t-\t-\n")
        results = {}
        wrk(url, mine, "cycle", 3, clients)  # warm-up: pool filled, statements prepared, tokens verified
        scenarios = (
            ("catalogue", catalogue, "cycle"),
            ("my-courses", mine, "cycle"),
            ("sign-up, hot course", fresh, "once"),
        )
        for name, lines, mode in scenarios:
            before = cpu_seconds(server.pid)
            done = wrk(url, lines, mode, seconds, clients)
            spent = cpu_seconds(server.pid) - before
            results[name] = 1e6 * spent / max(1, done["requests"])
            results[f"{name} req/s"] = done["requests"] / (done["duration_us"] / 1e6)
        return results
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="LABEL=SRC_DIR, e.g. before=/tmp/before/src now=src")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--floor", action="store_true", help="also measure bench/floor_app.py (raw ASGI + asyncpg)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="course-signup-cpu-"))
    rows = {}
    trees = [*args.trees, *(["floor=src"] if args.floor else [])]
    try:
        for tree in trees:
            label, _, src = tree.partition("=")
            floor = label == "floor" and args.floor
            rows[label] = measure(label, Path(src), args.seconds, args.clients, tmp, floor=floor)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"{label}: " + ", ".join(f"{k} {v:,.0f}" for k, v in rows[label].items()), file=sys.stderr, flush=True)
    print(f"\nCPU of the API process per request (µs), 1 worker, {args.clients} clients, {args.seconds} s each")
    print("| source | GET /courses (cached) | my-courses | sign-up, hot course | (req/s of each) |")
    print("|---|---|---|---|---|")
    for label, r in rows.items():
        print(
            f"| {label} | {r['catalogue']:,.0f} | {r['my-courses']:,.0f} | {r['sign-up, hot course']:,.0f} | "
            f"{r['catalogue req/s']:,.0f}, {r['my-courses req/s']:,.0f}, {r['sign-up, hot course req/s']:,.0f} |"
        )


if __name__ == "__main__":
    main()
