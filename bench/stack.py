"""What one bench run starts and stops: a scratch directory, the database, the service and the hello app."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Stack:
    """The throwaway database and the two servers, with the JWT secret the service is started with."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="course-signup-bench-"))
        self.secret = secrets.token_urlsafe(48)
        self.service: harness.Server | None = None
        self.hello: harness.Server | None = None
        self.database_created = False
        self.pg_pid = harness.postmaster_pid()
        log(f"scratch directory {self.tmp}")
        if args.src:
            sys.path.insert(0, str(args.src.resolve()))
        from course_signup.adapters.tokens import TokenService
        from course_signup.settings import Settings

        settings = Settings(jwt_secret=self.secret, jwt_issuer=None, jwt_audience=None, jwt_jwks_url=None)
        self.tokens = TokenService(settings, secret=self.secret)

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

    def create_database(self) -> dict[str, str]:
        """Drop and create the database; returns the server's version and the settings that shape the figures."""
        name = self.args.database
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', database="postgres")
        self.psql(f'CREATE DATABASE "{name}"', database="postgres")
        self.database_created = True
        return {
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
        log(f"service up: {self.args.workers} worker(s) on port {self.args.port}")

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

    def cleanup(self) -> None:
        for name in ("hello", "service"):
            try:
                self.stop(name)
            except Exception as exc:  # keep cleaning up
                log(f"could not stop {name}: {exc}")
        try:
            self.drop_database()
        except Exception as exc:
            log(f"could not drop database {self.args.database}: {exc}")
        shutil.rmtree(self.tmp, ignore_errors=True)
