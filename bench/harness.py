"""Servers, load generators and CPU accounting, shared by bench/scenarios.py and bench/loadgen_cost.py."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
LUA = BENCH / "wrk" / "requests.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- CPU accounting ------------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, str, float, float]]:
    """pid -> (ppid, comm, own cpu seconds, reaped children's cpu seconds) for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                raw = handle.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        # fields[0] is state (field 3); utime, stime, cutime, cstime are fields 14-17.
        ppid = int(fields[1])
        own = (int(fields[11]) + int(fields[12])) / CLK_TCK
        reaped = (int(fields[13]) + int(fields[14])) / CLK_TCK
        table[int(entry)] = (ppid, comm, own, reaped)
    return table


def _tree_cpu(table: dict[int, tuple[int, str, float, float]], root: int, skip: set[int] | None = None) -> float:
    """CPU seconds of a process, its live descendants (less `skip`), and the descendants it has reaped."""
    if root not in table:
        return 0.0
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = table[root][3], [root]
    while stack:
        pid = stack.pop()
        if skip and pid in skip:
            continue
        total += table[pid][2]
        stack.extend(children.get(pid, []))
    return total


def _other_databases_backends(table: dict[int, tuple[int, str, float, float]], pg_pid: int, database: str) -> set[int]:
    """Live PostgreSQL backends serving another database (other users of this shared server)."""
    skip = set()
    for pid, (ppid, _comm, _own, _reaped) in table.items():
        if ppid != pg_pid:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                words = handle.read().replace(b"\0", b" ").decode(errors="replace").split()
        except OSError:
            continue
        # "postgres: [CLUSTER:] USER DATABASE HOST(PORT) STATE" for a backend; "postgres: [CLUSTER:] walwriter"...
        if words[:1] != ["postgres:"]:
            continue
        words = words[2:] if len(words) > 1 and words[1].endswith(":") else words[1:]
        is_backend = len(words) >= 3 and ("(" in words[2] or words[2] == "[local]")
        if is_backend and words[1] != database:
            skip.add(pid)
    return skip


def postmaster_pid() -> int | None:
    """The local PostgreSQL server's main process (read-only use: CPU accounting)."""
    table = _proc_table()
    for pid, (ppid, comm, _own, _reaped) in table.items():
        if comm == "postgres" and table.get(ppid, (0, ""))[1] != "postgres":
            return pid
    return None


def _system_busy() -> float:
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: busy = all but idle, iowait and steal.
    return (sum(values[:7]) - values[3] - values[4]) / CLK_TCK


@dataclass
class CpuMeter:
    """Cores used during a run by the server's process tree, PostgreSQL (this database's backends and
    the shared background processes), our load generator (reaped children), and everything else."""

    server_pid: int | None = None
    pg_pid: int | None = None
    database: str | None = None
    _start: dict[str, float] = field(default_factory=dict)

    def _read(self) -> dict[str, float]:
        table = _proc_table()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        postgres = 0.0
        if self.pg_pid:
            skip = _other_databases_backends(table, self.pg_pid, self.database) if self.database else set()
            postgres = _tree_cpu(table, self.pg_pid, skip)
        return {
            "server": _tree_cpu(table, self.server_pid) if self.server_pid else 0.0,
            "postgres": postgres,
            "loadgen": usage.ru_utime + usage.ru_stime,
            "loadgen_user": usage.ru_utime,
            "total": _system_busy(),
            "wall": time.monotonic(),
        }

    def start(self) -> None:
        self._start = self._read()

    def stop(self, seconds: float | None = None) -> dict[str, float]:
        """Cores used: CPU seconds over `seconds` (the run's own length; default the time since start()).

        Call it once the processes a run started (pgbench's backends) have exited and been reaped,
        else their CPU can fall between two readings; `seconds` keeps such a wait out of the figures.
        """
        end = self._read()
        wall = seconds or (end["wall"] - self._start["wall"])
        cores = {key: round((end[key] - self._start[key]) / wall, 3) for key in end if key != "wall"}
        cores["other"] = round(max(0.0, cores["total"] - cores["server"] - cores["postgres"] - cores["loadgen"]), 3)
        return cores


def background_load(seconds: float = 2.0) -> float:
    """Cores busy over `seconds` while we do nothing: other users of this machine."""
    start, began = _system_busy(), time.monotonic()
    time.sleep(seconds)
    return (_system_busy() - start) / (time.monotonic() - began)


def wait_idle(pid: int, limit: float = 0.15, max_wait: float = 15.0) -> float:
    """Wait (up to max_wait seconds) until a server's process tree uses under `limit` cores: requests
    still queued from the previous run (answered after its clock stopped) are done. Returns the wait."""
    began = time.monotonic()
    while time.monotonic() - began < max_wait:
        before, start = _tree_cpu(_proc_table(), pid), time.monotonic()
        time.sleep(0.25)
        if (_tree_cpu(_proc_table(), pid) - before) / (time.monotonic() - start) < limit:
            break
    return time.monotonic() - began


def wait_quiet(limit: float, max_wait: float) -> float:
    """Wait (up to max_wait seconds) until the background load is under `limit` cores; return it."""
    deadline = time.monotonic() + max_wait
    load = background_load()
    while load > limit and time.monotonic() < deadline:
        load = background_load()
    return load


# --- servers ---------------------------------------------------------------------------------------


class Server:
    """A server process started by us, in its own session so its workers can be stopped with it."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, port: int, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                status, _ = http_request(port, "GET", path, timeout=2.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready on port {port} after {timeout:.0f}s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # uvicorn's supervisor stops its workers
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # the session we created for it
                self.process.wait()
        # Workers left behind by a crashed supervisor share its process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()

    def tail(self, lines: int = 30) -> str:
        self.log.flush()
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def hello_command(port: int, workers: int) -> list[str]:
    """bench/hello.py under uvicorn with what `course-signup serve` passes it."""
    return asgi_command("hello:app", port, workers)


def asgi_command(app: str, port: int, workers: int) -> list[str]:
    """An ASGI app of bench/ under uvicorn with what `course-signup serve` passes it (uvloop, httptools, no logs)."""
    return [
        sys.executable, "-m", "uvicorn", app, "--app-dir", str(BENCH), "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log",
        "--no-server-header", "--proxy-headers",
    ]  # fmt: skip


def http_request(
    port: int, method: str, path: str, body: Any = None, token: str | None = None, timeout: float = 10.0
) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw
    finally:
        connection.close()


# --- load generators ------------------------------------------------------------------------------


def write_lines(path: Path, lines: list[tuple[str, str, str]]) -> Path:
    """Request lines for bench/wrk/requests.lua and bench/aioclient.py: path, token, body ('-': none)."""
    with open(path, "w") as handle:
        for request_path, token, body in lines:
            handle.write(f"{request_path}\t{token}\t{body}\n")
    return path


def run_load(
    *,
    tool: str,
    port: int,
    lines_file: Path,
    expected: int,
    mode: str,
    clients: int,
    duration: int,
    threads: int = 1,
    timeout: int = 30,
    meter: CpuMeter | None = None,
) -> dict[str, Any]:
    """One closed-loop run: `clients` keep-alive connections for `duration` seconds."""
    url = f"http://127.0.0.1:{port}"
    if tool == "wrk":
        threads = max(1, min(threads, clients))
        command = [
            "wrk", "-t", str(threads), "-c", str(clients), "-d", f"{duration}s", "--timeout", f"{timeout}s",
            "-s", str(LUA), url, "--", str(lines_file), str(expected), mode, str(threads),
        ]  # fmt: skip
    elif tool == "asyncio":
        command = [
            sys.executable, str(BENCH / "aioclient.py"), url + "/", "-c", str(clients), "-d", str(duration),
            "--file", str(lines_file), "--expected", str(expected),
        ]  # fmt: skip
        if mode == "once":
            command.append("--once")
    else:
        raise ValueError(f"unknown load generator {tool!r}")
    if meter:
        meter.start()
    began = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=duration + timeout + 120)
    elapsed = time.monotonic() - began
    result = None
    for line in completed.stdout.splitlines():
        if line.startswith("WRKJSON "):
            result = json.loads(line[len("WRKJSON ") :])
    if result is None:
        raise RuntimeError(f"{tool} failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    cpu = {}
    if meter:
        time.sleep(0.2)  # closed connections' PostgreSQL backends (if any) exit and are reaped
        cpu = meter.stop(elapsed)
    return summarise(result, cpu=cpu, clients=clients)


def summarise(raw: dict[str, Any], *, cpu: dict[str, float], clients: int) -> dict[str, Any]:
    seconds = raw["duration_us"] / 1e6
    errors = raw["errors"]
    unanswered = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    lat = raw["latency_us"]
    done = raw["requests"]
    cpu_per_request_us = None
    if cpu and done:
        cpu_per_request_us = {k: round(v * seconds / done * 1e6, 1) for k, v in cpu.items()}
    return {
        "clients": clients,
        "requests": done,
        "seconds": round(seconds, 3),
        "rps": round(done / seconds, 1) if seconds else 0.0,
        "ok": done - raw["bad"],
        "bad_status": raw["bad"],
        "unexpected": raw["unexpected"],
        "unanswered": unanswered,
        "socket_errors": errors,
        "errors": raw["bad"] + unanswered,
        "exhausted": raw["exhausted"],
        "p50_ms": lat["p50"] / 1000,
        "p90_ms": lat["p90"] / 1000,
        "p95_ms": lat["p95"] / 1000,
        "p99_ms": lat["p99"] / 1000,
        "max_ms": lat["max"] / 1000,
        "mean_ms": round(lat["mean"] / 1000, 3),
        "cpu_cores": cpu,
        "cpu_us_per_request": cpu_per_request_us,
        "loadgen_window_us_per_request": (
            round(raw["cpu_window_s"] / done * 1e6, 1) if "cpu_window_s" in raw and done else None
        ),
    }
