"""The write floor: pgbench running the service's sign-up SQL (bench/signup.sql) on the bench database."""

from __future__ import annotations

import secrets
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
from stack import Stack, log
from workload import HOT, Workload

PGBENCH_CLIENTS = (1, 4, 16, 64)


def measure_all(stack: Stack, workload: Workload, results: dict[str, Any]) -> None:
    """The hot course, then the spread courses, at each of PGBENCH_CLIENTS."""
    for case in ("hot", "spread"):
        for clients in PGBENCH_CLIENTS:
            results["pgbench"].append(measure(stack, workload, case, clients))


def measure(stack: Stack, workload: Workload, case: str, clients: int) -> dict[str, Any]:
    a = stack.args
    lo, hi = (HOT, HOT) if case == "hot" else (workload.spread_ids[0], workload.spread_ids[-1])
    prefix = stack.tmp / f"pgbench-{case}-{clients}"
    command = [
        "pgbench", "-h", a.pg_host, "-p", a.pg_port, "-U", a.pg_user, "-n", "-M", "prepared",
        "-f", str(a.pgbench_sql.resolve()), "-c", str(clients), "-j", str(min(clients, 2)),
        "-T", str(a.pgbench_duration), "-l", f"--log-prefix={prefix}",
        "-D", f"lo={lo}", "-D", f"hi={hi}", "-D", f"ts={datetime.now(UTC).isoformat()}",
        "-D", f"rid={secrets.token_hex(16)}", "-D", "status=enrolled", a.database,
    ]  # fmt: skip
    stack.checkpoint()
    meter = harness.CpuMeter(pg_pid=stack.pg_pid, database=a.database)
    meter.start()
    began = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, cwd=stack.tmp)
    elapsed = time.monotonic() - began
    time.sleep(0.5)  # pgbench's backends exit and are reaped: their CPU is then counted
    cpu = meter.stop(elapsed)
    if completed.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{completed.stdout}\n{completed.stderr}")
    latencies = _latencies(stack.tmp, prefix)
    tps, failed = _summary(completed.stdout)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] / 1000 if latencies else 0.0

    run = {
        "scenario": f"pgbench {case}", "kind": "pgbench", "case": case, "clients": clients, "rps": round(tps, 1),
        "requests": len(latencies), "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
        "errors": int(failed), "cpu_cores": cpu,
    }  # fmt: skip
    log(f"pgbench {case:<10} c={clients:<4} {tps:>9.1f} tps    p50 {run['p50_ms']:.2f} ms  "
        f"p99 {run['p99_ms']:.2f} ms  failed {failed}")  # fmt: skip
    return run


def _latencies(tmp: Path, prefix: Path) -> list[int]:
    """Every transaction's latency in µs, sorted, from pgbench's per-thread logs (which are then removed)."""
    latencies = []
    for log_file in tmp.glob(f"{prefix.name}.*"):
        with open(log_file) as handle:
            latencies.extend(int(line.split()[2]) for line in handle if line.strip())
        log_file.unlink()
    latencies.sort()
    return latencies


def _summary(stdout: str) -> tuple[float, float]:
    """tps (without initial connection time) and failed transactions, from pgbench's report."""
    tps = failed = 0.0
    for line in stdout.splitlines():
        if line.startswith("tps ="):
            tps = float(line.split()[2])
        elif line.startswith("number of failed transactions:"):
            failed = int(line.split(":")[1].split()[0])
    return tps, failed
