"""PostgreSQL clusters and Redis servers that a test starts, owns and may break: never the machine's.

A fault drill restarts or stops a server. The machine's own servers are shared with every other
program, so a drill starts a private one on a spare port, in a temporary directory, and breaks
that one. PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.conftest import IN_CI
from tests.integration.servers import free_port

POSTGRES_USER = "postgres"


def _postgres_bin() -> Path | None:
    """The directory of initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<newest>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


def postgres_tools_missing() -> str | None:
    """Why a private cluster cannot be started here, or None when it can."""
    if _postgres_bin() is None:
        return "initdb and pg_ctl are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(POSTGRES_USER)
        except KeyError:
            return "running as root and there is no postgres user to run the cluster as"
    return None


@dataclass
class PostgresCluster:
    """A throw-away cluster: trust auth on 127.0.0.1 and a socket in its own directory."""

    directory: Path
    port: int
    bin_dir: Path

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str, timeout: float = 60) -> None:
        prefix = ["runuser", "-u", POSTGRES_USER, "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*prefix, *command], check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            action,
            "-D",
            str(self.data),
            "-l",
            str(self.directory / "server.log"),
            "-o",
            options,
            "-w",
            *extra,
        )

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        """Fast restart: open connections are cut, as when an operator restarts the server."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "immediate")

    @classmethod
    def create(cls) -> PostgresCluster:
        bin_dir = _postgres_bin()
        assert bin_dir is not None, postgres_tools_missing()
        directory = Path(tempfile.mkdtemp(prefix="course-signup-pg-"))
        if os.geteuid() == 0:
            account = pwd.getpwnam(POSTGRES_USER)
            os.chown(directory, account.pw_uid, account.pw_gid)
        cluster = cls(directory, free_port(), bin_dir)
        cluster._run(
            str(bin_dir / "initdb"),
            "-D",
            str(cluster.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        cluster.start()
        return cluster

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PostgresCluster]:
    """A cluster of the test's own, removed afterwards whatever happened."""
    cluster = PostgresCluster.create()
    try:
        yield cluster
    finally:
        cluster.destroy()


@dataclass
class RedisServer:
    """A redis-server of the test's own: no persistence, so a restart starts it empty."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@contextlib.contextmanager
def private_redis() -> Iterator[RedisServer]:
    directory = Path(tempfile.mkdtemp(prefix="course-signup-redis-"))
    server = RedisServer(free_port(), directory)
    server.start()
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(directory, ignore_errors=True)


def require_tool(tool: str) -> None:
    """Skip the test where `tool` is not installed; under CI that is a failure instead."""
    if shutil.which(tool) is None:
        if IN_CI:
            pytest.fail(f"{tool} is needed in CI")
        pytest.skip(f"{tool} not installed")


@contextlib.contextmanager
def required_private_redis() -> Iterator[RedisServer]:
    """private_redis(), or a skip where redis-server is not installed (a failure under CI)."""
    require_tool("redis-server")
    with private_redis() as server:
        yield server


BROKER_HOST = "127.0.0.1:5672"


@dataclass
class RabbitVhost:
    """A vhost of the test's own on the machine's RabbitMQ: its queues, exchanges and connections only."""

    name: str

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{BROKER_HOST}/{self.name}"

    def close_connections(self) -> None:
        """Close every client connection to this vhost (and no other), as a broker failover would."""
        _rabbitmqctl("close_all_connections", "-p", self.name, "closed by a course-signup test")


def _rabbitmqctl(*arguments: str) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *arguments], check=True, timeout=60, capture_output=True, text=True)
    return done.stdout


@contextlib.contextmanager
def private_vhost() -> Iterator[RabbitVhost]:
    """A fresh RabbitMQ vhost that guest may use, deleted afterwards (a failure in CI when impossible)."""
    require_tool("rabbitmqctl")
    vhost = RabbitVhost(f"course_signup_test_{os.getpid()}_{uuid.uuid4().hex[:8]}")
    try:
        _rabbitmqctl("add_vhost", vhost.name)
        _rabbitmqctl("set_permissions", "-p", vhost.name, "guest", ".*", ".*", ".*")
    except (subprocess.SubprocessError, OSError) as exc:
        if IN_CI:
            pytest.fail(f"RabbitMQ is required in CI: {exc}")
        pytest.skip(f"RabbitMQ not reachable: {exc}")
    try:
        yield vhost
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _rabbitmqctl("delete_vhost", vhost.name)


def _pg_basebackup(bin_dir: Path) -> Path | None:
    """pg_basebackup of the same version as initdb (which may be a link into that version's directory)."""
    for directory in (bin_dir, Path(os.path.realpath(bin_dir / "initdb")).parent):
        if (directory / "pg_basebackup").exists():
            return directory / "pg_basebackup"
    return None


def replica_tools_missing() -> str | None:
    """Why a private primary with a streaming replica cannot be started here, or None when it can."""
    missing = postgres_tools_missing()
    if missing is not None:
        return missing
    bin_dir = _postgres_bin()
    assert bin_dir is not None
    return None if _pg_basebackup(bin_dir) is not None else "pg_basebackup is not installed beside initdb"


def create_replica(primary: PostgresCluster) -> PostgresCluster:
    """A hot standby streaming from `primary` (pg_basebackup -R), started on a spare port of its own.

    The copy is taken over a replication connection to the primary's port, which the trust rules
    initdb writes allow from 127.0.0.1. The replica's start, stop and destroy are a cluster's.
    """
    tool = _pg_basebackup(primary.bin_dir)
    assert tool is not None, replica_tools_missing()
    directory = Path(tempfile.mkdtemp(prefix="course-signup-pg-replica-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam(POSTGRES_USER)
        os.chown(directory, account.pw_uid, account.pw_gid)
    replica = PostgresCluster(directory, free_port(), primary.bin_dir)
    try:
        replica._run(
            str(tool),
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
            *("-D", str(replica.data), "-R", "-X", "stream", "-c", "fast", "--no-sync"),
            timeout=120,
        )
        replica.start()
    except BaseException:
        replica.destroy()
        raise
    return replica


@contextlib.contextmanager
def private_replica(primary: PostgresCluster) -> Iterator[PostgresCluster]:
    """A streaming replica of the test's own primary, removed afterwards whatever happened."""
    replica = create_replica(primary)
    try:
        yield replica
    finally:
        replica.destroy()
