"""The deployment files, checked without Docker: the compose stack and its env file, the Dockerfile,
the settings they name, and nginx's configuration (with nginx itself, where it is installed)."""

from __future__ import annotations

import http.client
import ipaddress
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from setuptools import find_packages

from course_signup.settings import CONFIG_ENV, ENV_PREFIX, Settings
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = ROOT / "pyproject.toml"

# Where a COURSE_SIGNUP_* name may appear, and so must be a real setting.
NAMING_FILES = [COMPOSE, ENV_EXAMPLE, DOCKERFILE, ROOT / "README.md", *sorted((ROOT / "config").glob("*.yml"))]
SETTING_NAME = re.compile(rf"\b{ENV_PREFIX}[A-Z][A-Z0-9_]*")
# Names with the prefix that are not fields: the YAML file's path, and the test suite's own server.
NOT_FIELDS = {CONFIG_ENV, f"{ENV_PREFIX}TEST_PG_DSN"}

# ${NAME}, ${NAME:?message}, ${NAME:-default} (and the forms without the colon), as compose reads them.
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
# KEY=value, or "# KEY=value" for a setting listed for reference.
ASSIGNMENT = re.compile(r"^(?P<commented>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")

SERVERS = {"postgres", "redis", "rabbitmq", "api", "nginx"}  # long-running, so each has a health check
# Start order: each of these waits for the others in the stated condition.
REQUIRED_CONDITIONS = {
    "migrate": {"postgres": "service_healthy"},
    "api": {
        "migrate": "service_completed_successfully",
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "rabbitmq": "service_healthy",
    },
    "worker": {
        "migrate": "service_completed_successfully",
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "rabbitmq": "service_healthy",
    },
    "nginx": {"api": "service_healthy"},
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET")


class ComposeRefuses(Exception):
    """compose would stop at a ${NAME:?message} whose variable is unset or empty."""


def interpolate(text: str, env: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.get(name)
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in ("?", ":?"):
            if missing:
                raise ComposeRefuses(f"{name}: {arg}")
            return str(value)
        if op in ("-", ":-"):
            return arg if missing else str(value)
        return value or ""

    return INTERPOLATION.sub(one, text)


def env_example() -> list[tuple[str, str, bool]]:
    """(name, value, active) for each KEY=value line of .env.example; commented ones are not active."""
    rows = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ASSIGNMENT.match(line.strip())
        if match:
            rows.append((match["name"], match["value"], match["commented"] is None))
    return rows


def filled_env() -> dict[str, str]:
    """The active values of .env.example with every empty one filled in, as an operator would."""
    return {name: value or "0123456789abcdef" * 4 for name, value, active in env_example() if active}


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    text = COMPOSE.read_text()
    return yaml.safe_load(interpolate(text, env) if env is not None else text)


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def seconds(duration: str) -> float:
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    stages: list[list[tuple[str, str]]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stages.append([])
        assert stages, "the Dockerfile must start with FROM"
        stages[-1].append((keyword.upper(), rest.strip()))
    return stages


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile_stages()[-1]:
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(rest))
    return env


def image_has_healthcheck() -> bool:
    checks = [rest for keyword, rest in dockerfile_stages()[-1] if keyword == "HEALTHCHECK"]
    return bool(checks) and checks[-1].strip().upper() != "NONE"


def has_health_check(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck")
    if check and check.get("disable"):
        return False
    if check and check.get("test"):
        return True
    return "build" in service and image_has_healthcheck()


def isolated_env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    """Exactly these COURSE_SIGNUP_* variables, none of the caller's."""
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


# --- compose ------------------------------------------------------------------------------------


def test_compose_has_every_service_of_the_stack() -> None:
    stack = services()
    assert set(REQUIRED_CONDITIONS) | SERVERS <= set(stack)
    assert stack["api"]["deploy"]["replicas"] == 2
    assert stack["migrate"]["command"][-1] == "migrate"
    assert stack["migrate"].get("restart") == "no", "a one-shot job is not restarted"
    assert stack["worker"]["command"][-2:] == ["course-signup", "worker"]
    assert stack["api"]["command"][-2:] == ["course-signup", "serve"]
    for name in ("migrate", "api", "worker"):
        build = stack[name]["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE


def test_servers_have_health_checks_and_start_in_order() -> None:
    stack = services()
    for name in SERVERS:
        assert has_health_check(stack[name]), f"{name} has no health check"
    for name, required in REQUIRED_CONDITIONS.items():
        depends = stack[name].get("depends_on")
        assert isinstance(depends, dict), f"{name}: depends_on must state a condition for each service"
        conditions = {other: spec["condition"] for other, spec in depends.items()}
        assert required.items() <= conditions.items(), f"{name} starts before {required} hold"
    for name, service in stack.items():
        for other, spec in (service.get("depends_on") or {}).items():
            assert other in stack, f"{name} depends on a missing service {other}"
            if spec["condition"] == "service_healthy":
                assert has_health_check(stack[other]), f"{name} waits for {other}, which has no health check"
            if spec["condition"] == "service_completed_successfully":
                assert stack[other].get("restart") == "no", f"{other} is waited for to finish, so must not restart"


def test_state_lives_on_named_volumes() -> None:
    stack = compose()
    declared = set(stack.get("volumes") or {})
    used = set()
    for name, service in stack["services"].items():
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount["source"]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} mounts {source}, which is not a named volume"
                used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"
    mounts = {name: [str(m) for m in service.get("volumes") or []] for name, service in stack["services"].items()}
    assert any(m.endswith(":/var/lib/postgresql/data") for m in mounts["postgres"])
    assert any(m.endswith(":/var/lib/rabbitmq") for m in mounts["rabbitmq"])
    # RabbitMQ keeps its data under its node name, which follows the host name: fixed, or a new
    # container would start empty beside the old durable queues.
    assert stack["services"]["rabbitmq"].get("hostname")


def test_only_nginx_is_published() -> None:
    published = {name for name, service in services().items() if service.get("ports")}
    assert published == {"nginx"}, "anything published beside nginx bypasses the edge"


def test_api_trusts_forwarded_headers_from_nginx_alone() -> None:
    stack = compose()
    api, nginx = stack["services"]["api"], stack["services"]["nginx"]
    trusted = environment(api)[f"{ENV_PREFIX}FORWARDED_ALLOW_IPS"]
    assert trusted != "*"
    address = ipaddress.ip_address(trusted)  # one address: no list, no network

    shared = set(api["networks"]) & set(nginx["networks"])
    assert len(shared) == 1, "api and nginx meet on one network"
    network = shared.pop()
    assert nginx["networks"][network]["ipv4_address"] == trusted
    (ipam,) = stack["networks"][network]["ipam"]["config"]
    subnet = ipaddress.ip_network(ipam["subnet"])
    assert address in subnet
    assert address not in (subnet.network_address, subnet.broadcast_address, subnet.network_address + 1)
    assert address not in ipaddress.ip_network(ipam["ip_range"]), "other containers could be given it"

    for name, service in stack["services"].items():
        assert environment(service).get(f"{ENV_PREFIX}FORWARDED_ALLOW_IPS", trusted) == trusted, name
    for name, value, _active in env_example():
        if name == f"{ENV_PREFIX}FORWARDED_ALLOW_IPS":
            assert value == trusted


def test_the_edge_replaces_the_clients_x_forwarded_for() -> None:
    for path in (DEPLOY / "nginx").glob("*.conf"):
        text = path.read_text()
        assert "$proxy_add_x_forwarded_for" not in text, f"{path.name} passes on what the client sent"
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$remote_addr;", (DEPLOY / "nginx/edge.conf").read_text())


def test_containers_get_time_to_shut_down_gracefully() -> None:
    stack = services()
    env = filled_env()
    timeout = float(env.get(f"{ENV_PREFIX}SHUTDOWN_TIMEOUT", Settings.model_fields["shutdown_timeout"].default))
    for name in ("api", "worker"):
        grace = seconds(str(stack[name].get("stop_grace_period", "10s")))
        assert grace > timeout, f"{name}: Docker kills it after {grace} s, before SHUTDOWN_TIMEOUT ({timeout} s)"


def test_postgres_accepts_every_pooled_connection() -> None:
    stack = services()
    command = stack["postgres"]["command"]
    (setting,) = [arg for arg in command if arg.startswith("max_connections=")]
    max_connections = int(setting.split("=")[1])
    env = filled_env()
    per_process = int(env[f"{ENV_PREFIX}DB_POOL_SIZE"]) + int(env[f"{ENV_PREFIX}DB_MAX_OVERFLOW"])
    processes = stack["api"]["deploy"]["replicas"] * int(env[f"{ENV_PREFIX}WORKERS"]) + 1  # + the worker
    assert processes * per_process + 3 <= max_connections  # 3: PostgreSQL's reserve for superusers


# --- settings named anywhere --------------------------------------------------------------------


def test_every_course_signup_variable_is_a_setting() -> None:
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | NOT_FIELDS
    unknown = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in NAMING_FILES
        for name in SETTING_NAME.findall(path.read_text())
        if name not in fields
    }
    assert not unknown, f"not settings: {sorted(unknown)}"


def test_config_files_hold_settings_that_load(monkeypatch: pytest.MonkeyPatch) -> None:
    for path in (ROOT / "config").glob("*.yml"):
        keys = set(yaml.safe_load(path.read_text()))
        assert keys <= set(Settings.model_fields), f"{path.name}: unknown keys {keys - set(Settings.model_fields)}"
        isolated_env(monkeypatch, {CONFIG_ENV: str(path)})
        Settings()


def test_env_example_lists_every_setting_compose_uses() -> None:
    text = COMPOSE.read_text()
    listed = {name for name, _value, _active in env_example()}
    active = [name for name, _value, is_active in env_example() if is_active]
    assert len(active) == len(set(active)), "a setting is set twice"
    assert set(SETTING_NAME.findall(text)) <= listed
    interpolated = {match["name"] for match in INTERPOLATION.finditer(text)}
    assert interpolated <= set(active), f"compose reads {interpolated - set(active)}, which .env.example does not set"
    # And what the image sets, which the containers use as well.
    assert {name for name in image_env() if name.startswith(ENV_PREFIX)} <= listed


def test_env_example_holds_no_secrets() -> None:
    for name, value, active in env_example():
        if active and SECRET_NAME.search(name):
            assert value == "", f"{name} must be left empty in the example"


def test_an_unedited_env_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = {name: value for name, value, active in env_example() if active}
    with pytest.raises(ComposeRefuses):
        compose(shipped)
    isolated_env(monkeypatch, {k: v for k, v in shipped.items() if k.startswith(ENV_PREFIX)})
    with pytest.raises(ValidationError, match="jwt_secret"):
        Settings()


def test_a_filled_env_file_gives_the_containers_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = filled_env()
    stack = compose(env)["services"]
    container = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}  # the env file
    container |= {k: v for k, v in image_env().items() if k.startswith(ENV_PREFIX) and k != CONFIG_ENV}
    container |= environment(stack["api"])  # compose's environment wins over the env file
    isolated_env(monkeypatch, container)
    settings = Settings()
    assert settings.database_url is not None and settings.database_url.startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in settings.database_url
    assert settings.redis_url is not None and "@redis:6379/" in settings.redis_url
    assert settings.broker_url is not None and "@rabbitmq:5672/" in settings.broker_url
    assert settings.log_format == "json"
    assert settings.host == "0.0.0.0"
    # Queue admission has everything it needs in this stack: switching it on is one line.
    monkeypatch.setenv(f"{ENV_PREFIX}ADMISSION", "queue")
    assert Settings().queue_mode


# --- the image ----------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_unprivileged_and_checks_health() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    runtime = stages[-1]
    users = [rest.split(":")[0] for keyword, rest in runtime if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image runs as root"
    assert image_has_healthcheck()
    (check,) = [rest for keyword, rest in runtime if keyword == "HEALTHCHECK"]
    env = image_env()
    port = env[f"{ENV_PREFIX}PORT"]
    assert f"{ENV_PREFIX}PORT" in check or f":{port}/" in check, "the health check must probe the port serve uses"
    assert "/health" in check
    assert [rest for keyword, rest in runtime if keyword == "EXPOSE"] == [port]
    upstream = re.search(r"server\s+api:(\d+)", (DEPLOY / "nginx/compose.conf").read_text())
    assert upstream and upstream.group(1) == port, "nginx reaches the API on another port than it listens on"
    copied = {Path(shlex.split(rest)[-1]) for keyword, rest in runtime if keyword == "COPY"}
    assert Path(env[CONFIG_ENV]) in copied, "COURSE_SIGNUP_CONFIG names a file the image does not have"


def test_dockerfile_copies_what_the_build_needs() -> None:
    build = dockerfile_stages()[0]
    sources: set[str] = set()
    for keyword, rest in build + dockerfile_stages()[-1]:
        if keyword in ("COPY", "ADD"):
            args = [arg for arg in shlex.split(rest) if not arg.startswith("--")]
            if "--from=" not in rest:
                for source in args[:-1]:
                    assert (ROOT / source).exists(), f"COPY {source}: no such file in the build context"
                sources.update(args[:-1])
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    for needed in ("pyproject.toml", "src", project["readme"], *project.get("license-files", [])):
        assert needed in sources, f"the build stage does not copy {needed}, which pyproject.toml needs"


def test_the_package_carries_every_file_it_needs() -> None:
    """The image installs the package, not the source tree: every file must be a module or package data."""
    setuptools = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]
    src = ROOT / setuptools["packages"]["find"]["where"][0]
    shipped: set[Path] = set()
    for package in find_packages(where=src):
        shipped.update((src / package.replace(".", "/")).glob("*.py"))
    for package, patterns in setuptools["package-data"].items():
        for pattern in patterns:
            shipped.update((src / package.replace(".", "/")).glob(pattern))
    files = {
        path
        for path in (src / "course_signup").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    missing = sorted(str(path.relative_to(src)) for path in files - shipped)
    assert not missing, f"left out of the wheel (add them to package-data): {missing}"


# --- nginx --------------------------------------------------------------------------------------


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    if IN_CI:
        pytest.fail("nginx is required in CI (make test installs Debian's package)")
    pytest.skip("nginx is not installed")


def nginx_tree(root: Path, upstream: str, listen: str | None = None) -> Path:
    """The container's /etc/nginx under root: the files compose mounts, where it mounts them, and a
    main configuration like the image's (conf.d/*.conf inside http). Returns the main file."""
    etc = root / "etc-nginx"
    for mount in services()["nginx"]["volumes"]:
        source, target = mount.split(":")[:2]
        assert target.startswith("/etc/nginx/"), f"nginx mounts {source} outside its configuration: {target}"
        text = (DEPLOY / source).read_text().replace("api:8000", upstream)
        if listen is not None:
            text = re.sub(r"listen\s+80;", f"listen {listen};", text)
        destination = etc / target.removeprefix("/etc/nginx/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(text)
    temp = "\n".join(
        f"    {kind}_temp_path {root / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = etc / "nginx.conf"
    main.write_text(
        f"pid {root / 'nginx.pid'};\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n    access_log off;\n{temp}\n    include {etc}/conf.d/*.conf;\n}}\n"
    )
    return main


def test_nginx_accepts_the_compose_configuration(tmp_path: Path) -> None:
    nginx = nginx_binary()
    main = nginx_tree(tmp_path, upstream="127.0.0.1:1")
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-e", "stderr", "-c", str(main)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def upstream() -> Iterator[tuple[int, list[list[str]]]]:
    """A stand-in for the API on a spare port, recording each request's X-Forwarded-For values."""
    seen: list[list[str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get_all("X-Forwarded-For") or [])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def test_compose_nginx_hands_the_api_the_client_address_not_the_clients_claim(
    tmp_path: Path, upstream: tuple[int, list[list[str]]]
) -> None:
    nginx = nginx_binary()
    api_port, seen = upstream
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    main = nginx_tree(tmp_path, upstream=f"127.0.0.1:{api_port}", listen=f"127.0.0.1:{port}")
    process = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-e", "stderr", "-c", str(main), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start listening"
                time.sleep(0.05)
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        client.request("GET", "/courses", headers={"X-Forwarded-For": "203.0.113.7, 198.51.100.9"})
        response = client.getresponse()
        assert response.status == 200 and response.read() == b"ok"
        client.close()
        assert seen == [["127.0.0.1"]]
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()
