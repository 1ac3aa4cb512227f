"""The local stack of `make stack`: nginx in front of two serve processes, one stopped in a burst of sign-ups.

The stack is started by deploy/stack/stack.py, the code `make stack` runs, on spare ports, with a
database, a Redis server and a RabbitMQ vhost of the test's own, all removed afterwards.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from course_signup.adapters.tokens import TokenService
from course_signup.settings import Settings
from tests.conftest import IN_CI, JWT_SECRET, PG_ADMIN_DSN
from tests.integration.instances import private_vhost, required_private_redis
from tests.integration.servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
SHUTDOWN_TIMEOUT = 10
CLIENTS = 16
BURST_SECONDS = 4.0
SIGTERM_AFTER = 1.5


def _stack_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("course_signup_stack", REPO / "deploy" / "stack" / "stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _require_nginx() -> None:
    if shutil.which("nginx") or os.access("/usr/sbin/nginx", os.X_OK):
        return
    if IN_CI:
        pytest.fail("nginx is needed in CI (apt-get install -y nginx; .ci/run installs it)")
    pytest.skip("nginx is not installed (apt-get install -y nginx)")


async def _admin(query: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await connection.execute(query)
    finally:
        await connection.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Any]:
    """A running stack; stopped with `down`, its database dropped, when the test ends."""
    _require_nginx()
    module = _stack_module()
    database = f"course_signup_stacktest_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    with required_private_redis() as redis_server, private_vhost() as vhost:
        config = module.StackConfig(
            state_dir=tmp_path / "stack",
            port=free_port(),
            api_ports=(free_port(), free_port()),
            database=database,
            postgres=PG_ADMIN_DSN.rsplit("/", 1)[0],
            redis_url=redis_server.url,
            broker_url=vhost.url,
            env={
                "COURSE_SIGNUP_JWT_SECRET": JWT_SECRET,
                "COURSE_SIGNUP_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
                "COURSE_SIGNUP_ADMISSION": "database",
                "COURSE_SIGNUP_LOG_LEVEL": "warning",
            },
        )
        started = None
        try:
            started = module.up(config)
            yield started
        finally:
            module.down(config.state_dir, quiet=True)
            for process in started.processes.values() if started else []:
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def _is_service_envelope(status: int, body: bytes) -> bool:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(answer, dict) and answer.keys() >= {"code", "message", "data"} and answer["code"] == status


@dataclass
class Burst:
    answers: dict[str, int] = field(default_factory=dict)  # each student's status
    wrong: list[str] = field(default_factory=list)  # answers not allowed: a transport error, 502, 504, ...
    answered_after_stop: int = 0


async def _burst(url: str, course: str, stop: Any) -> Burst:
    """Sign up new students from CLIENTS concurrent clients for BURST_SECONDS; stop() is called at SIGTERM_AFTER."""
    tokens = TokenService(Settings(jwt_secret=JWT_SECRET), secret=JWT_SECRET)
    burst = Burst()
    stopped = False
    end = time.monotonic() + BURST_SECONDS
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def client_loop() -> None:
            while time.monotonic() < end:
                student = f"s-{uuid.uuid4().hex[:12]}@example.com"
                try:
                    response = await _sign_up(client, tokens, student, course)
                except httpx.HTTPError as exc:
                    burst.wrong.append(f"{student}: {type(exc).__name__}: {exc}")
                    continue
                burst.answers[student] = response.status_code
                burst.answered_after_stop += stopped
                allowed = response.status_code == 200 or (
                    response.status_code in (429, 503) and _is_service_envelope(response.status_code, response.content)
                )
                if not allowed:
                    burst.wrong.append(f"{student}: {response.status_code} {response.text[:200]}")

        async def stopper() -> None:
            nonlocal stopped
            await asyncio.sleep(SIGTERM_AFTER)
            stop()
            stopped = True

        await asyncio.gather(stopper(), *(client_loop() for _ in range(CLIENTS)))
    return burst


async def _sign_up(client: httpx.AsyncClient, tokens: TokenService, student: str, course: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {tokens.issue(student)}"}
    return await client.post(f"/students/{student}/courses", json={"courseId": course}, headers=headers)


async def _enrolled_rows(database_url: str, course: str) -> tuple[list[str], int]:
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""), timeout=5)
    try:
        rows = await connection.fetch(
            "SELECT student_id FROM enrollments WHERE course_id = $1 AND status = 'enrolled'", course
        )
        counter = await connection.fetchval("SELECT enrolled FROM courses WHERE course_id = $1", course)
    finally:
        await connection.close()
    return [row["student_id"] for row in rows], counter


def _upstreams(access_log: Path) -> dict[str, int]:
    """Requests per upstream address in nginx's access log."""
    counts: dict[str, int] = {}
    for match in re.finditer(r"upstream=([\d.:]+)", access_log.read_text()):
        counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return counts


def test_stopping_one_api_process_during_a_burst_loses_no_request_and_no_enrollment(stack):
    config = stack.config
    leaving, staying = stack.processes["api-1"], stack.processes["api-2"]
    admin = TokenService(Settings(jwt_secret=JWT_SECRET), secret=JWT_SECRET).issue("registrar@example.com", admin=True)
    course = f"STACK{uuid.uuid4().hex[:8]}".upper()
    created = httpx.post(
        f"{config.url}courses",
        json={"courseId": course, "name": "Stack burst", "lessons": 1, "capacity": None},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    stopped_at: list[float] = []

    def stop() -> None:
        stopped_at.append(time.monotonic())
        leaving.send_signal(signal.SIGTERM)

    burst = asyncio.run(_burst(config.url, course, stop))

    assert stopped_at, "the burst ended before SIGTERM was sent"
    assert burst.wrong == []
    assert burst.answered_after_stop > 0
    assert leaving.wait(timeout=SHUTDOWN_TIMEOUT + 5) == 0
    assert time.monotonic() - stopped_at[0] < SHUTDOWN_TIMEOUT + 5
    used = _upstreams(config.state_dir / "logs" / "nginx-access.log")
    assert used.get(f"127.0.0.1:{config.api_ports[0]}", 0) > 0, f"the stopped process served nothing: {used}"

    # The survivor keeps serving, alone.
    after, wrong_after = asyncio.run(_burst_briefly(config.url, course))
    assert wrong_after == [] and set(after.values()) == {200}
    assert staying.poll() is None
    answers = {**burst.answers, **after}

    students, counter = asyncio.run(_enrolled_rows(config.database_url, course))
    signed_up = {student for student, status in answers.items() if status == 200}
    assert len(students) == len(set(students)) == counter  # no doubled row, the counter agrees
    assert set(students) == signed_up  # every 200 has its row, and no row lacks its 200


async def _burst_briefly(url: str, course: str) -> tuple[dict[str, int], list[str]]:
    tokens = TokenService(Settings(jwt_secret=JWT_SECRET), secret=JWT_SECRET)
    answers: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(20):
            student = f"after-{uuid.uuid4().hex[:12]}@example.com"
            answers[student] = (await _sign_up(client, tokens, student, course)).status_code
    return answers, [f"{s}: {status}" for s, status in answers.items() if status != 200]


def test_stack_down_stops_every_process_it_started_and_nothing_else(stack):
    module = sys.modules["course_signup_stack"]
    # Looks like one of the stack's API processes to anything matching command lines (`pkill -f`),
    # but `make stack` did not start it.
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "-m", "course_signup", "serve", "--port", "8081"]
    )
    try:
        started = time.monotonic()
        stopped = module.down(stack.config.state_dir, quiet=True)
        assert time.monotonic() - started < 30
        assert sorted(stopped) == ["api-1", "api-2", "nginx"]
        for name, process in stack.processes.items():
            assert process.wait(timeout=5) == 0, f"{name} exited with {process.returncode}"
        assert not (stack.config.state_dir / "pids.json").exists()
        assert bystander.poll() is None
        with pytest.raises(httpx.ConnectError):
            httpx.get(stack.config.url, timeout=2)
    finally:
        bystander.kill()
        bystander.wait()


def test_the_edge_refuses_a_large_body_or_header_in_the_envelope_and_keeps_the_clients_request_id(stack):
    url = stack.config.url
    body = b"x" * (64 * 1024 + 1)
    too_large = httpx.post(f"{url}courses", content=body, headers={"Content-Type": "application/json"})
    assert too_large.status_code == 413
    assert too_large.json() == {
        "code": 413,
        "message": "Payload Too Large",
        "data": "The request body is larger than 64 KiB.",
    }
    too_long = httpx.get(f"{url}health", headers={"X-Filler": "a" * (9 * 1024)})
    assert too_long.status_code == 400
    assert too_long.json() == {
        "code": 400,
        "message": "Bad Request",
        "data": "The request could not be read: malformed, or a header over 8 KiB (32 KiB in all).",
    }
    assert httpx.get(f"{url}health", headers={"X-Request-ID": "trace-42"}).headers["x-request-id"] == "trace-42"
    assert re.fullmatch(r"[0-9a-f]{32}", httpx.get(f"{url}health").headers["x-request-id"])
