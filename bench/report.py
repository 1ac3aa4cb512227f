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
AIM_CLIENTS = 64
# The service's scenarios measured beside the raw floor app (bench/floor_app.py), and the floor's name.
FLOOR_OF = {"sign-up hot": "floor sign-up hot", "sign-up hot unbatched": "floor sign-up hot",
            "my-courses": "floor my-courses"}  # fmt: skip
# The original Go service (gin + gorm + MariaDB) on this machine: wrk -t2 -c64, 2 workers.
GO_SERVICE = {"courses": 9519, "sign-up hot": 2679, "my-courses": 5162}
GO_NAMES = {"courses": "GET /courses", "sign-up hot": "POST sign-up (all to one course)",
            "my-courses": "GET my-courses"}  # fmt: skip
TABLE_ORDER = ["hello", "courses", "my-courses", "floor my-courses", "sign-up spread", "sign-up hot",
               "sign-up hot unbatched", "floor sign-up hot"]  # fmt: skip


# --- what was measured, on what ----------------------------------------------------------------------


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "quick": args.quick, "workers": args.workers, "duration_s": args.duration,
        "pgbench_duration_s": args.pgbench_duration, "concurrency": args.concurrency,
        "spread_courses": args.spread_courses, "loadgen": args.loadgen, "wrk_threads": args.wrk_threads,
        "pgbench_sql": args.pgbench_sql.name if args.pgbench_sql else None,
        "service_env": args.service_env, "src": str(args.src) if args.src else None,
    }  # fmt: skip


def source_state(args: argparse.Namespace) -> dict[str, Any]:
    """The commit the service runs from, and how many files under src/ differ from it (others edit the tree)."""
    root = args.src.resolve() if args.src else harness.BENCH.parent

    def git(*command: str) -> str:
        completed = subprocess.run(["git", "-C", str(root), *command], capture_output=True, text=True)
        return completed.stdout.strip() if completed.returncode == 0 else "?"

    changed = git("status", "--porcelain", "--", "src")
    return {"commit": git("rev-parse", "--short", "HEAD"), "src_files_changed": len(changed.splitlines())}


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
    floor_app = {(r["scenario"], r["clients"]): r for r in runs if r["scenario"] in FLOOR_OF.values()}
    for r in runs:
        if r["kind"] == "write":
            floor = best[r["scenario"].split()[1]]["tps"]
            r["ratio"], r["floor"] = round(r["rps"] / floor, 3), f"pgbench {r['scenario'].split()[1]} best"
        elif r["kind"] == "read" and r["clients"] in hello:
            r["ratio"], r["floor"] = round(r["rps"] / hello[r["clients"]], 3), f"hello @{r['clients']}"
        elif r["kind"] == "compare" and (FLOOR_OF[r["scenario"]], r["clients"]) in floor_app:
            floor = floor_app[FLOOR_OF[r["scenario"]], r["clients"]]["rps"]
            r["ratio"], r["floor"] = round(r["rps"] / floor, 3), f"floor app @{r['clients']}"
    results["floors"] = {"pgbench_best": best, "hello_peak": max(hello.values(), default=0.0)}
    results["floor_app"] = _against_floor_app(runs, floor_app)
    results["aims"] = _aims_measured(results)


def _status_503(run: dict[str, Any]) -> int:
    return int(run.get("unexpected", {}).get("503", 0))


def _against_floor_app(runs: list[dict[str, Any]], floor_app: dict[tuple[str, int], Any]) -> list[dict[str, Any]]:
    """The service beside the floor app at the same clients: rates, p50/p99, 503s, ratio."""
    out = []
    for scenario, floor_name in FLOOR_OF.items():
        for r in sorted((r for r in runs if r["scenario"] == scenario), key=lambda r: r["clients"]):
            floor = floor_app.get((floor_name, r["clients"]))
            if floor is None:
                continue
            out.append({
                "scenario": scenario, "clients": r["clients"],
                "service": {"rps": r["rps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "503": _status_503(r),
                            "errors": r["errors"]},
                "floor": {"rps": floor["rps"], "p50_ms": floor["p50_ms"], "p99_ms": floor["p99_ms"],
                          "503": _status_503(floor), "errors": floor["errors"]},
                "ratio": round(r["rps"] / floor["rps"], 3) if floor["rps"] else None,
            })  # fmt: skip
    return out


def _aims_measured(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The aims at AIM_CLIENTS clients, each with what was measured and whether it was met."""
    c = AIM_CLIENTS
    pairs = {(p["scenario"], p["clients"]): p for p in results["floor_app"]}
    service = {r["scenario"]: r for r in results["runs"] if r["clients"] == c and r["kind"] in ("read", "write")}
    aims = []
    for scenario, name, aim in (("sign-up hot", "hot-course sign-ups (batching on) / floor app", 1.6),
                                ("my-courses", "my-courses / floor app", 0.6)):  # fmt: skip
        ratio = (pairs.get((scenario, c)) or {}).get("ratio")
        aims.append({"name": f"{name} @{c}", "aim": f">= {aim}x", "measured": ratio,
                     "shown": "not measured" if ratio is None else f"{ratio:.2f}x",
                     "met": ratio is not None and ratio >= aim})  # fmt: skip
    p99 = {s: service[s]["p99_ms"] for s in ("sign-up hot", "my-courses") if s in service}
    aims.append({"name": f"p99 @{c}: hot-course sign-up, my-courses", "aim": "< 100 ms", "measured": p99,
                 "shown": ", ".join(f"{v:.0f} ms" for v in p99.values()) or "not measured",
                 "met": len(p99) == 2 and max(p99.values()) < 100})  # fmt: skip
    runs_at_c = [r for r in results["runs"] if r["clients"] == c and r["kind"] in ("read", "write", "compare")]
    count = sum(_status_503(r) for r in runs_at_c)
    default_pool = not any("POOL" in item.upper() for item in results["config"]["service_env"])
    aims.append({"name": f"503 answers @{c} (every service run)" + ("" if default_pool else " [pool changed]"),
                 "aim": "none", "measured": count, "shown": str(count), "met": count == 0})  # fmt: skip
    return aims


# --- the table ---------------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    head = (f"{'scenario':<22}{'clients':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>10}{'errors':>8}"
            f"{'ratio':>8}  {'to':<22}{'cores srv/pg/gen/other':>24}")  # fmt: skip
    out = [head, "-" * len(head)]
    best = results["floors"]["pgbench_best"]
    for case in ("hot", "spread"):
        for r in (r for r in results["pgbench"] if r["case"] == case):
            out.append(_row(r, "*" if r["clients"] == best[case]["clients"] else ""))
    for scenario in TABLE_ORDER:
        out.append("")
        for r in sorted((r for r in results["runs"] if r["scenario"] == scenario), key=lambda r: r["clients"]):
            out.append(_row(r, "!" if r.get("overload") else ""))
    out.append("-" * len(head))
    out.append("* pgbench's best client count (the floor for writes); ! overload-only run; ratio: service / floor")
    out.append("")
    out += _floors(results)
    out += _floor_app(results)
    out += _aims(results)
    out += _rush(results)
    out += _overload(results)
    out += _go_service(results)
    out += _checks(results)
    return "\n".join(out)


def _row(r: dict[str, Any], mark: str = "") -> str:
    cpu = r.get("cpu_cores") or {}
    cores = "/".join(f"{cpu.get(k, 0):.2f}" for k in ("server", "postgres", "loadgen", "other"))
    ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
    clients = f"{r['clients']}{mark}"
    return (f"{r['scenario']:<22}{clients:>8}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>10.2f}"
            f"{r['errors']:>8}{ratio:>8}  {r.get('floor', ''):<22}{cores:>24}")  # fmt: skip


def _floors(results: dict[str, Any]) -> list[str]:
    """The floors, and the registration rush against pgbench's best."""
    best = results["floors"]["pgbench_best"]
    hot, spread = best["hot"], best["spread"]
    out = [f"floors: pgbench hot {hot['tps']:.0f} tps (c={hot['clients']}), spread {spread['tps']:.0f} tps "
           f"(c={spread['clients']}); hello peak {results['floors']['hello_peak']:.0f} req/s"]  # fmt: skip
    out.append("sign-ups, each by a new student (sign-ups/s, p50/p99 ms, ratio to pgbench's best):")
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


def _floor_app(results: dict[str, Any]) -> list[str]:
    out = ["the service against the floor app (raw ASGI + asyncpg, the service's SQL and JWT check, same uvicorn"
           " and workers, one statement per request):",
           f"  {'scenario':<22}{'clients':>8}{'service/s':>11}{'p50/p99 ms':>16}{'503':>6}"
           f"{'floor/s':>10}{'p50/p99 ms':>16}{'503':>6}{'ratio':>8}"]  # fmt: skip
    for p in results["floor_app"]:
        s, f = p["service"], p["floor"]
        ratio = f"{p['ratio']:.2f}x" if p["ratio"] is not None else "-"
        out.append(f"  {p['scenario']:<22}{p['clients']:>8}{s['rps']:>11.0f}{_p50_99(s):>16}{s['503']:>6}"
                   f"{f['rps']:>10.0f}{_p50_99(f):>16}{f['503']:>6}{ratio:>8}")  # fmt: skip
    return out


def _p50_99(run: dict[str, Any]) -> str:
    return f"{run['p50_ms']:.1f}/{run['p99_ms']:.1f}"


def _aims(results: dict[str, Any]) -> list[str]:
    out = ["aims (reported, not asserted):"]
    for aim in results["aims"]:
        verdict = "met" if aim["met"] else "NOT met"
        out.append(f"  {aim['name']:<58} {aim['shown']:>14}  (aim {aim['aim']})  {verdict}")
    return out


def _rush(results: dict[str, Any]) -> list[str]:
    rushes = results.get("rush", [])
    if not rushes:
        return []
    first = rushes[0]
    out = [f"rush: {first['students']} distinct students at once over {first['connections']} connections, waitlist "
           "false (full: the last 200 answered; refusals/s: 409s answered after that, per second):",
           f"  {'target':<10}{'seats':>6}{'full ms':>9}{'all ms':>8}{'refusals/s':>12}{'answers/s':>11}"
           f"{'p50/p99 ms':>16}  {'answers':<27}{'db enrolled/cap/rows':<22}check"]  # fmt: skip
    for r in rushes:
        d = r["database"]
        answers = " ".join(f"{v}x{k}" for k, v in sorted(r["statuses"].items()))
        cells = f"{d['enrolled']}/{d['capacity']}/{d['rows']}"
        out.append(f"  {r['target']:<10}{r['seats']:>6}{r['full_ms']:>9.0f}{r['all_answered_ms']:>8.0f}"
                   f"{r['refusals_per_s']:>12.0f}{r['answers_per_s']:>11.0f}{_p50_99(r):>16}  {answers:<27}"
                   f"{cells:<22}{_rush_verdict(r)}")  # fmt: skip
    return out


def _rush_verdict(r: dict[str, Any]) -> str:
    """ok; or the database right but some answers 503 (shed after the pool wait); or MISMATCH."""
    if r["ok"]:
        return "ok"
    statuses, seats = r["statuses"], r["seats"]
    shed = statuses.get("503", 0)
    if r["database"]["ok"] and statuses.get("200", 0) == seats and shed and set(statuses) <= {"200", "409", "503"}:
        return f"NOT ok: {shed} shed with 503 (db ok)"
    return "MISMATCH"


def _go_service(results: dict[str, Any]) -> list[str]:
    """The original Go service's figures on this machine, as context (not measured by this run)."""
    c = AIM_CLIENTS
    here = {r["scenario"]: r["rps"] for r in results["runs"] if r["clients"] == c}
    cells = []
    for scenario, rate in GO_SERVICE.items():
        ours = here.get(scenario)
        cells.append(f"{GO_NAMES[scenario]} {rate:,}/s" + (f" (this run: {ours:,.0f}/s)" if ours else ""))
    return [f"context, the original Go service (gin + gorm + MariaDB, wrk -t2 -c{c}, 2 workers, same machine; "
            "not measured here):", "  " + "; ".join(cells)]  # fmt: skip


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
    others = max((r["pg_others_connections"] for r in results["runs"] if "pg_others_connections" in r), default=0)
    usable = int(results["postgres"]["max_connections"]) - int(results["postgres"].get("reserved", 3))
    need = results["config"]["workers"] * results.get("pool_connections_per_worker", 25)
    if usable - others < need + 5:
        out.append(f"PostgreSQL: other databases held up to {others} of {usable} connections, leaving "
                   f"{usable - others}; the service may open {need} (a shortage shows as 503s)")  # fmt: skip
    for skipped in results.get("pgbench_skipped", []):
        out.append(f"pgbench {skipped['case']} c={skipped['clients']} skipped: the server accepted only "
                   f"{skipped['free']} more connections")  # fmt: skip
    source = results.get("source")
    if source:
        out.append(f"service source: commit {source['commit']}, {source['src_files_changed']} file(s) under src/ "
                   "changed from it when the run started")  # fmt: skip
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
