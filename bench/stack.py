"""What one bench run starts and stops: a scratch directory, the database, the service, the hello and floor apps."""

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
    """The throwaway database and the servers, with the JWT secret the service (and the floor app) start with."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="course-signup-bench-"))
        self.secret = secrets.token_urlsafe(48)
        self.service: harness.Server | None = None
        self.hello: harness.Server | None = None
        self.floor: harness.Server | None = None
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
            "reserved": self.psql("SHOW superuser_reserved_connections"),
        }

    def drop_database(self) -> None:
        if self.database_created and not self.args.keep_database:
            self.psql(f'DROP DATABASE IF EXISTS "{self.args.database}" WITH (FORCE)', database="postgres")
            self.database_created = False

    def free_connections(self) -> int:
        """Connections the shared server would still accept now (others' sessions count against it too)."""
        return int(self.psql(
            "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int"
            " - count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        ))  # fmt: skip

    def others_connections(self) -> int:
        """Client connections other databases hold on the shared server (they count against max_connections)."""
        return int(self.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            f" AND datname IS DISTINCT FROM '{self.args.database}'"
        ))  # fmt: skip

    def checkpoint(self) -> None:
        """Start every write run from the same place: no checkpoint of an earlier run's WAL midway."""
        self.psql("CHECKPOINT")

    # --- the service, the hello app and the floor app ----------------------------------------------

    def service_env(self, **settings: str) -> dict[str, str]:
        """The service's environment; `settings` (e.g. batch_admission="false") override the run's."""
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
        env.update({f"COURSE_SIGNUP_{key.upper()}": value for key, value in settings.items()})
        if self.args.src:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.args.src.resolve()), env.get("PYTHONPATH")]))
        return env

    def pool_per_worker(self) -> int:
        """Database connections one service worker may open: DB_POOL_SIZE + DB_MAX_OVERFLOW."""
        from course_signup.settings import Settings

        env, fields = self.service_env(), Settings.model_fields
        size = env.get("COURSE_SIGNUP_DB_POOL_SIZE", fields["db_pool_size"].default)
        return int(size) + int(env.get("COURSE_SIGNUP_DB_MAX_OVERFLOW", fields["db_max_overflow"].default))

    def cli(self) -> list[str]:
        script = Path(sys.executable).parent / "course-signup"
        return [str(script)] if script.exists() and not self.args.src else [sys.executable, "-m", "course_signup"]

    def migrate(self) -> None:
        completed = subprocess.run([*self.cli(), "migrate"], env=self.service_env(), capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError(f"course-signup migrate failed:\n{completed.stdout}\n{completed.stderr}")

    def start_service(self, **settings: str) -> None:
        self.service = harness.Server(
            "course-signup", [*self.cli(), "serve"], self.service_env(**settings), self.tmp / "service.log"
        )
        self.service.wait_ready(self.args.port, "/ready")
        shown = "".join(f", {key}={value}" for key, value in settings.items())
        log(f"service up: {self.args.workers} worker(s) on port {self.args.port}{shown}")

    def start_hello(self) -> None:
        port = self.args.port + 1
        self.hello = harness.Server("hello", harness.hello_command(port, self.args.workers), dict(os.environ),
                                    self.tmp / "hello.log")  # fmt: skip
        self.hello.wait_ready(port, "/")

    def start_floor(self) -> None:
        """bench/floor_app.py under the service's uvicorn options and worker count, with the service's settings."""
        port = self.args.port + 2
        command = harness.asgi_command("floor_app:app", port, self.args.workers)
        # service_env(): the same database, secret and pool settings, and the service's --src if any.
        self.floor = harness.Server("floor", command, self.service_env(), self.tmp / "floor.log")
        self.floor.wait_ready(port, "/ready")
        log(f"floor app up: {self.args.workers} worker(s) on port {port}")

    def stop(self, name: str) -> None:
        server = getattr(self, name)
        if server is not None:
            server.stop()
            setattr(self, name, None)

    def cleanup(self) -> None:
        for name in ("hello", "floor", "service"):
            try:
                self.stop(name)
            except Exception as exc:  # keep cleaning up
                log(f"could not stop {name}: {exc}")
        try:
            self.drop_database()
        except Exception as exc:
            log(f"could not drop database {self.args.database}: {exc}")
        shutil.rmtree(self.tmp, ignore_errors=True)
