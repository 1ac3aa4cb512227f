"""What a run records and prints: its configuration and machine, floors and ratios, the table, the saved files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from typing import Any

import harness
from plot import plot
from scenarios import OVERLOAD_FACTOR, RUSH_CLIENTS

RESULTS = harness.BENCH / "results"
AIMS = {"hot64_vs_pgbench": 0.45, "courses_vs_hello": 0.3, "my_courses_vs_hello": 0.15}
AIM_NAMES = {
    "hot64_vs_pgbench": "hot course sign-ups @64 clients / pgbench hot best",
    "courses_vs_hello": "GET /courses (cached) peak / hello peak",
    "my_courses_vs_hello": "my-courses peak / hello peak",
}


# --- what was measured, on what ----------------------------------------------------------------------


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "quick": args.quick, "workers": args.workers, "duration_s": args.duration,
        "pgbench_duration_s": args.pgbench_duration, "concurrency": args.concurrency,
        "spread_courses": args.spread_courses, "loadgen": args.loadgen, "wrk_threads": args.wrk_threads,
        "pgbench_sql": args.pgbench_sql.name,
        "service_env": args.service_env, "src": str(args.src) if args.src else None,
    }  # fmt: skip


def machine() -> dict[str, Any]:
    def first(path: str, key: str) -> str:
        try:
            with open(path) as handle:
                return next((line.split(":", 1)[1].strip() for line in handle if line.startswith(key)), "?")
        except OSError:
            return "?"

    def version(command: list[str]) -> str:
        try:
            completed = subprocess.run(command, capture_output=True, text=True)
            return (completed.stdout + completed.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"

    import uvicorn

    return {
        "cpus": os.cpu_count(), "cpu_model": first("/proc/cpuinfo", "model name"),
        "memory": first("/proc/meminfo", "MemTotal"), "kernel": platform.release(),
        "python": platform.python_version(), "uvicorn": uvicorn.__version__,
        "wrk": version(["wrk", "--version"]), "pgbench": version(["pgbench", "--version"]),
    }  # fmt: skip


# --- floors, ratios, aims ----------------------------------------------------------------------------


def analyse(results: dict[str, Any]) -> None:
    """Floors, ratios and the aims, added to the results."""
    runs, pgb = results["runs"], results["pgbench"]
    best = {}
    for case in ("hot", "spread"):
        top = max((r for r in pgb if r["case"] == case), key=lambda r: r["rps"])
        best[case] = {"clients": top["clients"], "tps": top["rps"]}
    hello = {r["clients"]: r["rps"] for r in runs if r["scenario"] == "hello"}
    for r in runs:
        if r["kind"] == "write":
            floor = best[r["scenario"].split()[1]]["tps"]
            r["ratio"], r["floor"] = round(r["rps"] / floor, 3), f"pgbench {r['scenario'].split()[1]} best"
        elif r["kind"] == "read" and r["clients"] in hello:
            r["ratio"], r["floor"] = round(r["rps"] / hello[r["clients"]], 3), f"hello @{r['clients']}"

    def peak(scenario: str) -> float:
        return max((r["rps"] for r in runs if r["scenario"] == scenario), default=0.0)

    hot64 = next((r["rps"] for r in runs if r["scenario"] == "sign-up hot" and r["clients"] == 64), 0.0)
    hello_peak = peak("hello")
    measured = {
        "hot64_vs_pgbench": hot64 / best["hot"]["tps"],
        "courses_vs_hello": peak("courses") / hello_peak,
        "my_courses_vs_hello": peak("my-courses") / hello_peak,
    }
    results["floors"] = {"pgbench_best": best, "hello_peak": hello_peak}
    results["aims"] = {
        key: {"measured": round(value, 3), "aim": AIMS[key], "met": value >= AIMS[key]}
        for key, value in measured.items()
    }


# --- the table ---------------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    head = (f"{'scenario':<16}{'clients':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>10}{'errors':>8}"
            f"{'ratio':>8}  {'to':<22}{'cores srv/pg/gen/other':>24}")  # fmt: skip
    out = [head, "-" * len(head)]
    best = results["floors"]["pgbench_best"]
    for case in ("hot", "spread"):
        for r in (r for r in results["pgbench"] if r["case"] == case):
            out.append(_row(r, "*" if r["clients"] == best[case]["clients"] else ""))
    order = ["hello", "courses", "my-courses", "sign-up spread", "sign-up hot"]
    for scenario in order:
        out.append("")
        for r in sorted((r for r in results["runs"] if r["scenario"] == scenario), key=lambda r: r["clients"]):
            out.append(_row(r, "!" if r.get("overload") else ""))
    out.append("-" * len(head))
    out.append("* pgbench's best client count (the floor for writes); ! overload-only run; ratio: service / floor")
    out.append("")
    out += _floors(results)
    out += _aims(results)
    out += _overload(results)
    out += _checks(results)
    return "\n".join(out)


def _row(r: dict[str, Any], mark: str = "") -> str:
    cpu = r.get("cpu_cores") or {}
    cores = "/".join(f"{cpu.get(k, 0):.2f}" for k in ("server", "postgres", "loadgen", "other"))
    ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
    clients = f"{r['clients']}{mark}"
    return (f"{r['scenario']:<16}{clients:>8}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>10.2f}"
            f"{r['errors']:>8}{ratio:>8}  {r.get('floor', ''):<22}{cores:>24}")  # fmt: skip


def _floors(results: dict[str, Any]) -> list[str]:
    """The floors, and the registration rush against pgbench's best."""
    best = results["floors"]["pgbench_best"]
    hot, spread = best["hot"], best["spread"]
    out = [f"floors: pgbench hot {hot['tps']:.0f} tps (c={hot['clients']}), spread {spread['tps']:.0f} tps "
           f"(c={spread['clients']}); hello peak {results['floors']['hello_peak']:.0f} req/s"]  # fmt: skip
    out.append("registration rush (distinct students; sign-ups/s, p50/p99 ms, ratio to pgbench's best):")
    for case in ("hot", "spread"):
        cells = []
        for clients in RUSH_CLIENTS:
            r = next(
                (r for r in results["runs"] if r["scenario"] == f"sign-up {case}" and r["clients"] == clients), None
            )
            if r:
                cells.append(f"c={clients}: {r['rps']:.0f}/s {r['p50_ms']:.1f}/{r['p99_ms']:.0f} ms {r['ratio']:.2f}x")
        floor = best[case]
        out.append(f"  {case:<7}{' | '.join(cells)}   (pgbench {floor['tps']:.0f} tps at c={floor['clients']})")
    return out


def _aims(results: dict[str, Any]) -> list[str]:
    out = ["aims (reported, not asserted):"]
    for key, aim in results["aims"].items():
        verdict = "met" if aim["met"] else "NOT met"
        out.append(f"  {AIM_NAMES[key]:<52} {aim['measured']:.2f}x  (aim >= {aim['aim']})  {verdict}")
    return out


def _overload(results: dict[str, Any]) -> list[str]:
    out = [f"overload (x{OVERLOAD_FACTOR} the saturating clients: p95 < 5 s and every request answered):"]
    for o in results["overload"]:
        verdict = "ok" if o["p95_under_5s"] and o["all_answered"] else "FAILED"
        extra = f", non-200: {o['unexpected']}" if o["unexpected"] else ""
        out.append(f"  {o['scenario']:<15} saturates at c={o['saturating_clients']:<4} -> c={o['clients']:<5} "
                   f"{o['rps']:>7.0f} req/s  p95 {o['p95_ms']:>8.1f} ms  unanswered {o['unanswered']}{extra}  "
                   f"{verdict}")  # fmt: skip
        m = o["most_clients"]
        if m["clients"] > o["clients"]:
            extra = f", non-200: {m['unexpected']}" if m["unexpected"] else ""
            out.append(f"  {'':<15} {'(most clients measured)':<26} c={m['clients']:<5} {m['rps']:>7.0f} req/s  "
                       f"p95 {m['p95_ms']:>8.1f} ms  unanswered {m['unanswered']}{extra}")  # fmt: skip
    return out


def _checks(results: dict[str, Any]) -> list[str]:
    """The integrity check, and how much other load the machine carried."""
    out = []
    i = results.get("integrity", {})
    if i:
        out.append(f"integrity: {i['ok_answers_counted']} sign-ups answered 200, {i['enrollment_rows']} enrollment "
                   f"rows, {i['event_rows']} events, {i['courses_with_counter_drift']} counter drift "
                   f"-> {'ok' if i['ok'] else 'MISMATCH'}")  # fmt: skip
    busy = [r["cpu_cores"].get("other", 0) for r in results["runs"] + results["pgbench"] if r.get("cpu_cores")]
    if busy:
        worst = max(busy)
        out.append(f"other processes on this machine used up to {worst:.2f} cores during a run "
                   f"(background before the run: {results['background_cores_before']:.2f})"
                   + ("  -- figures are disturbed" if worst > 0.3 else ""))  # fmt: skip
    return out


# --- saved files -------------------------------------------------------------------------------------


def save(results: dict[str, Any], quick: bool) -> None:
    """bench/results/<UTC timestamp>[-quick].json and latest.json, and the plot latest.png."""
    RESULTS.mkdir(exist_ok=True)
    stamp = results["started"].replace(":", "").replace("-", "").replace("+0000", "Z")
    stamped = f"{stamp}{'-quick' if quick else ''}.json"
    for name in (stamped, "latest.json"):
        (RESULTS / name).write_text(json.dumps(results, indent=2) + "\n")
    plot(results, RESULTS / "latest.png")
    print(f"\nsaved {RESULTS / 'latest.json'} (and {stamped}), plot {RESULTS / 'latest.png'}; "
          f"{results['elapsed_s']:.0f} s")  # fmt: skip
