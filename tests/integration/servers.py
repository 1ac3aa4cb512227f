"""Real `course-signup serve` processes for multi-process tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import JWT_SECRET


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    """A course-signup process a test started, with its log."""

    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing; what was committed must survive."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited in 20 s; returns its exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode


@dataclass
class Server(Process):
    """A `course-signup serve` process."""

    url: str = ""


def start_server(
    database_url: str | None, data_dir: Path, *, workers: int = 1, secret: str | None = JWT_SECRET, **env: str
) -> Server:
    """A ready `serve` process; database_url None means the embedded SQLite file in data_dir.

    secret None: no COURSE_SIGNUP_* setting but these, as a developer first runs it (the service
    generates its own secret, and offers the development sign-in).
    """
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"serve-{port}.log"
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k != "COURSE_SIGNUP_DATABASE_URL" and (secret is not None or not k.startswith("COURSE_SIGNUP_"))
    }
    environment = {
        **inherited,
        **({"COURSE_SIGNUP_DATABASE_URL": database_url} if database_url else {}),
        "COURSE_SIGNUP_DATA_DIR": str(data_dir),
        **({"COURSE_SIGNUP_JWT_SECRET": secret} if secret is not None else {}),
        "COURSE_SIGNUP_LOG_LEVEL": "warning",
        "COURSE_SIGNUP_WORKERS": str(workers),
        **env,
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "course_signup", "serve", "--port", str(port)],
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, log, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{server.url}/ready", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"serve did not become ready:\n{log.read_text()}")


class Worker(Process):
    """A `course-signup worker` process (queue admission's writer and the event relay)."""


def start_worker(database_url: str, data_dir: Path, **env: str) -> Worker:
    """A running worker; it loads the admission state, so start it before queue-mode servers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"worker-{time.monotonic_ns()}.log"
    environment = {
        **{k: v for k, v in os.environ.items() if k != "COURSE_SIGNUP_DATABASE_URL"},
        "COURSE_SIGNUP_DATABASE_URL": database_url,
        "COURSE_SIGNUP_DATA_DIR": str(data_dir),
        "COURSE_SIGNUP_JWT_SECRET": JWT_SECRET,
        "COURSE_SIGNUP_LOG_LEVEL": "info",
        **env,
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "course_signup", "worker"], env=environment, stdout=sink, stderr=subprocess.STDOUT
        )
    time.sleep(0.2)
    if process.poll() is not None:
        raise RuntimeError(f"worker exited with {process.returncode}:\n{log.read_text()}")
    return Worker(process, log)
