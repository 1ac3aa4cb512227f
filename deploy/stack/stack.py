"""The production topology on this machine, without containers: `make stack` and `make stack-down`.

nginx (Debian's package, its own master process with a generated config) in front of two
`course-signup serve` processes on their own loopback ports, plus `course-signup worker` when
COURSE_SIGNUP_ADMISSION=queue; on the local PostgreSQL (a database of the stack's own, created,
migrated and seeded when missing), Redis and RabbitMQ. Config, logs and PIDs live in the state
directory (.stack/); `down` stops exactly the processes `up` recorded there, by PID.

    .venv/bin/python deploy/stack/stack.py up [--port 8080] [--state-dir .stack]
    .venv/bin/python deploy/stack/stack.py down [--state-dir .stack]

Other COURSE_SIGNUP_* variables in the environment reach every process (e.g. ADMISSION=queue).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[2]
EDGE_CONF = REPO / "deploy" / "nginx" / "edge.conf"
PIDS_FILE = "pids.json"
ENV = "COURSE_SIGNUP_"
Entry = dict[str, Any]  # one started process in pids.json: name, pid, start (time, from /proc)
READY_SECONDS = 60
# `down` must be done within 30 s: nginx finishes its requests, then the API processes theirs
# (COURSE_SIGNUP_SHUTDOWN_TIMEOUT, 20 s by default); whatever is left after that is killed.
NGINX_STOP_SECONDS = 5
STOP_SECONDS = 28
# The settings the stack decides for every process; the caller's other COURSE_SIGNUP_* pass through.
OWN_SETTINGS = ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "DATA_DIR", "HOST", "PORT", "WORKERS", "FORWARDED_ALLOW_IPS")

NGINX_CONF = """\
# Written by deploy/stack/stack.py at each `make stack`; edit that file, not this one.
daemon off;
worker_processes 1;
pid {state}/nginx/nginx.pid;
error_log {state}/logs/nginx-error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    log_format upstream '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                        'upstream=$upstream_addr upstream_status=$upstream_status time=$request_time';
    access_log {state}/logs/nginx-access.log upstream;
    client_body_temp_path {state}/nginx/client_body;
    proxy_temp_path {state}/nginx/proxy;
    fastcgi_temp_path {state}/nginx/fastcgi;
    uwsgi_temp_path {state}/nginx/uwsgi;
    scgi_temp_path {state}/nginx/scgi;

    upstream course_signup {{
{servers}
        # Connections to the API are reused, and nginx drops an idle one after 2 s: before serve
        # does (5 s), so nginx never sends a request on a connection the API is closing (a POST
        # lost that way is answered 502, not retried). A stopping API process leaves its idle
        # connections to this timeout and closes a busy one right after its answer.
        keepalive 32;
        keepalive_timeout 2s;
    }}

    server {{
        listen 127.0.0.1:{port};
        include {edge};
    }}
}}
"""


@dataclass
class StackConfig:
    state_dir: Path = REPO / ".stack"
    port: int = 8080
    api_ports: tuple[int, ...] = (8081, 8082)
    database: str = "course_signup_stack"
    postgres: str = "postgresql://postgres@127.0.0.1:5432"  # server address; the database name is added
    redis_url: str = "redis://127.0.0.1:6379/12"
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    env: dict[str, str] = field(default_factory=dict)  # more COURSE_SIGNUP_* settings for every process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def database_url(self) -> str:
        return f"{self.postgres.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{self.database}"


@dataclass
class Stack:
    """What `up` started: the processes by name (api-1, api-2, worker, nginx)."""

    config: StackConfig
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)


class StackError(Exception):
    """The stack could not start; its message says why."""


def _in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def up(config: StackConfig) -> Stack:
    """Start the stack and return once nginx answers /ready through an API process."""
    state = config.state_dir.resolve()
    if any(_alive(entry) for entry in _read_pids(state)):
        raise StackError(f"a stack is already running from {state}: stop it first (make stack-down)")
    nginx = _nginx_binary()
    busy = [port for port in (config.port, *config.api_ports) if _in_use(port)]
    if busy:  # else another server there would answer our readiness checks
        ports = ", ".join(map(str, busy))
        raise StackError(f"port(s) {ports} on 127.0.0.1 already in use: choose others (--port, --api-ports)")
    for directory in ("logs", "nginx", "data"):
        (state / directory).mkdir(parents=True, exist_ok=True)
    env = _environment(config, state)
    created = asyncio.run(_create_database(config))
    _course_signup(env, "migrate")
    if created:
        _course_signup(env, "seed")
    (state / "env").write_text(
        "".join(f"{ENV}{name}={env[ENV + name]}\n" for name in ("DATABASE_URL", "DATA_DIR")), encoding="utf-8"
    )
    stack = Stack(config)
    try:
        if env.get(f"{ENV}ADMISSION", "").lower() == "queue":
            # First: the API processes are ready once the worker has loaded the admission state.
            _start(stack, "worker", [sys.executable, "-m", "course_signup", "worker"], env)
        for number, port in enumerate(config.api_ports, start=1):
            name = f"api-{number}"
            _start(stack, name, [sys.executable, "-m", "course_signup", "serve"], {**env, f"{ENV}PORT": str(port)})
        for number, port in enumerate(config.api_ports, start=1):
            _wait_ready(stack.processes[f"api-{number}"], f"http://127.0.0.1:{port}/ready", state / "logs")
        if "worker" in stack.processes and stack.processes["worker"].poll() is not None:
            raise StackError(f"the worker exited with {stack.processes['worker'].returncode} (logs in {state}/logs)")
        conf = _write_nginx_conf(config, state)
        prefix = ["-p", f"{state}/nginx/", "-c", str(conf), "-e", f"{state}/logs/nginx-error.log"]
        checked = subprocess.run([nginx, "-t", "-q", *prefix], capture_output=True, text=True)
        if checked.returncode != 0:
            raise StackError(f"nginx -t refused {conf}:\n{checked.stderr.strip()}")
        _start(stack, "nginx", [nginx, *prefix], os.environ.copy())
        _wait_ready(stack.processes["nginx"], f"{config.url}ready", state / "logs")
    except BaseException:
        down(config.state_dir, quiet=True)
        raise
    return stack


def down(state_dir: Path, *, quiet: bool = False) -> list[str]:
    """Stop what `up` recorded in state_dir (nginx first, then the rest); the names of those stopped."""
    state = state_dir.resolve()
    entries = [entry for entry in _read_pids(state) if _alive(entry)]
    deadline = time.monotonic() + STOP_SECONDS
    front = [entry for entry in entries if entry["name"] == "nginx"]
    back = [entry for entry in entries if entry["name"] != "nginx"]
    # nginx first, gracefully (SIGQUIT: it finishes the requests it has, which need the API
    # processes), then fast (SIGTERM); then the API processes and the worker, which finish theirs.
    left = _signal_and_wait(front, signal.SIGQUIT, time.monotonic() + NGINX_STOP_SECONDS)
    left = _signal_and_wait(left, signal.SIGTERM, time.monotonic() + 1)
    left += _signal_and_wait(back, signal.SIGTERM, deadline - 1)
    killed = _signal_and_wait(left, signal.SIGKILL, deadline)
    (state / PIDS_FILE).unlink(missing_ok=True)
    if not quiet:
        for entry in entries:
            print(f"stack: stopped {entry['name']} (pid {entry['pid']})" + (", killed" if entry in left else ""))
        if not entries:
            print("stack: nothing was running")
    if killed:
        raise StackError(f"still running after SIGKILL: {', '.join(str(entry['pid']) for entry in killed)}")
    return [entry["name"] for entry in entries]


def _environment(config: StackConfig, state: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key.removeprefix(ENV) not in OWN_SETTINGS}
    env.update(config.env)
    env.update(
        {
            f"{ENV}DATABASE_URL": config.database_url,
            f"{ENV}REDIS_URL": config.redis_url,
            f"{ENV}BROKER_URL": config.broker_url,
            f"{ENV}DATA_DIR": str(state / "data"),  # shared, so every process signs with one JWT secret
            f"{ENV}HOST": "127.0.0.1",
            f"{ENV}WORKERS": "1",  # one process per port: nginx balances, and stops one at a time
            f"{ENV}FORWARDED_ALLOW_IPS": "127.0.0.1",  # nginx, the only way in
        }
    )
    return env


async def _create_database(config: StackConfig) -> bool:
    """Create the stack's database if missing; True when it was created."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", config.database):
        raise StackError(f"not a plain database name: {config.database!r}")
    try:
        connection = await asyncpg.connect(f"{config.postgres}/postgres", timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise StackError(f"PostgreSQL at {config.postgres} does not answer: {exc}") from None
    try:
        if await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", config.database):
            return False
        await connection.execute(f'CREATE DATABASE "{config.database}"')
        return True
    finally:
        await connection.close()


def _course_signup(env: dict[str, str], *arguments: str) -> None:
    done = subprocess.run([sys.executable, "-m", "course_signup", *arguments], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise StackError(f"course-signup {' '.join(arguments)} failed:\n{done.stderr.strip()}")


def _nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found is None:
        raise StackError("nginx is not installed: `apt-get install -y nginx` (make stack does it when run as root)")
    return found


def _write_nginx_conf(config: StackConfig, state: Path) -> Path:
    # max_fails=1 (the default): a refused connection takes that process out for 10 s, so while one
    # API process is stopped, requests go straight to the other instead of trying it first each time.
    servers = "\n".join(f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=10s;" for port in config.api_ports)
    conf = state / "nginx.conf"
    conf.write_text(NGINX_CONF.format(state=state, servers=servers, port=config.port, edge=EDGE_CONF))
    return conf


def _start(stack: Stack, name: str, command: list[str], env: dict[str, str]) -> None:
    state = stack.config.state_dir.resolve()
    with (state / "logs" / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    stack.processes[name] = process
    entries = [entry for entry in _read_pids(state) if entry["name"] != name]
    entries.append({"name": name, "pid": process.pid, "start": _start_time(process.pid)})
    pids = state / PIDS_FILE
    pids.with_suffix(".tmp").write_text(json.dumps(entries, indent=2), encoding="utf-8")
    pids.with_suffix(".tmp").replace(pids)


def _wait_ready(process: subprocess.Popen[bytes], url: str, logs: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"{url} did not come up: exited with {process.returncode} (logs in {logs})")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise StackError(f"{url} was not ready within {READY_SECONDS} s (logs in {logs})")


def _read_pids(state: Path) -> list[Entry]:
    try:
        return list(json.loads((state / PIDS_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return []


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and brackets
    return None if fields[0] in ("Z", "X") else fields[19]


def _alive(entry: Entry) -> bool:
    """The recorded process is still running: the same PID *and* start time, so never a reused PID."""
    return _start_time(int(entry["pid"])) == entry["start"]


def _signal_and_wait(entries: Iterable[Entry], sig: signal.Signals, until: float) -> list[Entry]:
    """Send sig to each entry still running and wait until they are gone or `until`; those left."""
    targets = [entry for entry in entries if _alive(entry)]
    for entry in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(entry["pid"]), sig)
    while targets and time.monotonic() < until:
        time.sleep(0.05)
        targets = [entry for entry in targets if _alive(entry)]
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("--state-dir", type=Path, default=StackConfig.state_dir, help="config, logs and PIDs")
    parser.add_argument("--port", type=int, default=StackConfig.port, help="nginx's port on 127.0.0.1")
    parser.add_argument("--api-ports", default="8081,8082", help="the API processes' ports, comma-separated")
    parser.add_argument("--database", default=StackConfig.database, help="PostgreSQL database of the stack")
    parser.add_argument("--redis-url", default=StackConfig.redis_url)
    parser.add_argument("--broker-url", default=StackConfig.broker_url)
    args = parser.parse_args()
    try:
        if args.action == "down":
            down(args.state_dir)
            return
        config = StackConfig(
            state_dir=args.state_dir,
            port=args.port,
            api_ports=tuple(int(port) for port in args.api_ports.split(",")),
            database=args.database,
            redis_url=args.redis_url,
            broker_url=args.broker_url,
        )
        stack = up(config)
    except StackError as exc:
        sys.exit(f"stack: {exc}")
    state = config.state_dir.resolve()
    for name, process in stack.processes.items():
        print(f"stack: {name} running (pid {process.pid}, log {state}/logs/{name}.log)")
    command = Path(sys.executable).parent / "course-signup"
    print(f"stack: database {config.database}; a token: env $(cat {state}/env) {command} token <e-mail> [--admin]")
    print(f"course-signup is up at {config.url}  (stop it with: make stack-down)")


if __name__ == "__main__":
    main()
