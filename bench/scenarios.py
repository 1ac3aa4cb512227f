"""The HTTP scenarios: the hello floor, the service's sweep, overload, batching off, the floor app, integrity."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import harness
import rush
from stack import Stack, log
from workload import Workload

RUSH_CLIENTS = (1, 16, 64)
FLOOR_CLIENTS = (16, 64)  # where the floor app and the service without batching are measured (quick: 64)
OVERLOAD_FACTOR = 4
OVERLOAD_MAX_CLIENTS = 1024


class Scenarios:
    """Load runs against the hello app and the service, recorded in results["runs"]."""

    def __init__(self, stack: Stack, workload: Workload, results: dict[str, Any]) -> None:
        self.stack = stack
        self.args = stack.args
        self.workload = workload
        self.results = results
        self.signups_counted = 0
        self.in_flight_bound = 0

    def http_run(
        self, scenario: str, *, port: int, lines: Path, clients: int, duration: int, mode: str = "cycle",
        server: harness.Server | None, record: bool = True, kind: str = "",
    ) -> dict[str, Any]:  # fmt: skip
        meter = harness.CpuMeter(server_pid=server.pid if server else None, pg_pid=self.stack.pg_pid,
                                 database=self.args.database)  # fmt: skip
        time.sleep(0.3)  # let the previous run's connections close
        drained = harness.wait_idle(server.pid) if server else 0.0
        others = self.stack.others_connections()  # what other sessions on the shared server hold
        run = harness.run_load(
            tool=self.args.loadgen, port=port, lines_file=lines, expected=200, mode=mode, clients=clients,
            duration=duration, threads=self.args.wrk_threads, meter=meter,
        )  # fmt: skip
        run.update(scenario=scenario, kind=kind, pg_others_connections=others, drained_s=round(drained, 2))
        if mode == "once":
            self.signups_counted += run["ok"]
            self.in_flight_bound += clients
        if record:
            self.results["runs"].append(run)
            log(
                f"{scenario:<18} c={clients:<4} {run['rps']:>9.1f} req/s  p50 {run['p50_ms']:.2f} ms  "
                f"p99 {run['p99_ms']:.2f} ms  errors {run['errors']}"
                + (f" {run['unexpected']}" if run["unexpected"] else "")
                + (f"  [ran out of students: {run['exhausted']}]" if run["exhausted"] else "")
            )
        return run

    def signup_run(
        self, case: str, clients: int, duration: int, rate: float, record: bool = True, *,
        scenario: str | None = None, port: int | None = None, server: harness.Server | None = None,
        kind: str = "write",
    ) -> dict[str, Any]:  # fmt: skip
        """`clients` sign-ups at a time, each by a new student; by default to the service."""
        count = int(rate * duration * 2 + 50 * clients + 500)
        lines = self.workload.signup_lines(case, count)
        self.stack.checkpoint()
        return self.http_run(
            scenario or f"sign-up {case}", port=port or self.args.port, lines=lines, clients=clients,
            duration=duration, mode="once", server=server or self.stack.service, record=record,
            kind=kind,
        )  # fmt: skip

    def hello_floor(self, files: dict[str, Path]) -> None:
        """The read floor: bench/hello.py under the same uvicorn and worker count, at every concurrency."""
        a = self.args
        self.stack.start_hello()
        assert self.stack.hello is not None
        for clients in a.concurrency:
            self.http_run("hello", port=a.port + 1, lines=files["hello"], clients=clients, duration=a.duration,
                          server=self.stack.hello, kind="floor")  # fmt: skip
        self.stack.stop("hello")

    def sweep(self, files: dict[str, Path]) -> dict[str, float]:
        """The service at every concurrency, then the hot course's rush; returns the best sign-up rates."""
        a = self.args
        # Warm-up (not recorded): pools filled, statements prepared, and a sign-up rate to size the
        # student lists by (each list holds twice what the fastest rate so far could use).
        port = a.port
        for name in ("courses", "my-courses"):
            self.http_run(name, port=port, lines=files[name], clients=16, duration=1, server=self.stack.service,
                          record=False)  # fmt: skip
        warm = 1 if a.quick else 2
        rates = {
            case: self.signup_run(case, 64, warm, rate=3000, record=False)["rps"] for case in ("spread", "hot")
        }  # fmt: skip
        for clients in sorted(set(a.concurrency) | set(RUSH_CLIENTS)):
            if clients in a.concurrency:
                for name in ("courses", "my-courses"):
                    self.http_run(name, port=port, lines=files[name], clients=clients, duration=a.duration,
                                  server=self.stack.service, kind="read")  # fmt: skip
            run = self.signup_run("spread", clients, a.duration, rates["spread"])
            rates["spread"] = max(rates["spread"], run["rps"])
        for clients in RUSH_CLIENTS:
            run = self.signup_run("hot", clients, a.duration, rates["hot"])
            rates["hot"] = max(rates["hot"], run["rps"])
        return rates

    def overload(self, files: dict[str, Path], rates: dict[str, float]) -> None:
        """At 4x the saturating concurrency (the fewest clients reaching 90% of the best rate)."""
        a = self.args
        out = []
        for scenario in ("sign-up spread", "sign-up hot", "courses", "my-courses"):
            runs = [r for r in self.results["runs"] if r["scenario"] == scenario]
            best = max(r["rps"] for r in runs)
            saturating = min(r["clients"] for r in runs if r["rps"] >= 0.9 * best)
            clients = min(OVERLOAD_FACTOR * saturating, OVERLOAD_MAX_CLIENTS)
            run = next((r for r in runs if r["clients"] == clients), None)
            if run is None:
                if scenario.startswith("sign-up"):
                    case = scenario.split()[1]
                    run = self.signup_run(case, clients, a.duration, rates[case])
                else:
                    run = self.http_run(scenario, port=a.port, lines=files[scenario], clients=clients,
                                        duration=a.duration, server=self.stack.service, kind="read")  # fmt: skip
                run["overload"] = True
            most = max(runs, key=lambda r: r["clients"])
            out.append({
                "scenario": scenario, "saturating_clients": saturating, "saturating_rps": best, "clients": clients,
                "rps": run["rps"], "p95_ms": run["p95_ms"], "p99_ms": run["p99_ms"], "max_ms": run["max_ms"],
                "unanswered": run["unanswered"], "bad_status": run["bad_status"], "unexpected": run["unexpected"],
                "p95_under_5s": run["p95_ms"] < 5000, "all_answered": run["unanswered"] == 0,
                "most_clients": {
                    "clients": most["clients"], "rps": most["rps"], "p95_ms": most["p95_ms"],
                    "unanswered": most["unanswered"], "unexpected": most["unexpected"],
                },
            })  # fmt: skip
        self.results["overload"] = out

    @property
    def floor_clients(self) -> tuple[int, ...]:
        return (64,) if self.args.quick else FLOOR_CLIENTS

    def rush(self, target: str, port: int, server: harness.Server | None) -> None:
        """The rush (bench/rush.py) against one server, on its own 50- and 500-seat courses."""
        assert server is not None
        self.results.setdefault("rush", []).extend(rush.run(self.stack, self.workload, target, port, server))

    def unbatched(self) -> None:
        """The service again with COURSE_SIGNUP_BATCH_ADMISSION=false: the hot course, then the rush."""
        a = self.args
        self.stack.stop("service")
        self.stack.migrate()  # a migration added to the tree since the start would stop the service starting
        self.stack.start_service(batch_admission="false")
        rate = self.signup_run("hot", 64, 1 if a.quick else 2, rate=3000, record=False)["rps"]  # warm-up
        for clients in self.floor_clients:
            run = self.signup_run("hot", clients, a.duration, rate, scenario="sign-up hot unbatched", kind="compare")
            rate = max(rate, run["rps"])
        self.rush("unbatched", a.port, self.stack.service)
        self.stack.stop("service")

    def floor_app(self, files: dict[str, Path]) -> None:
        """The raw floor app (bench/floor_app.py): hot-course sign-ups and my-courses, then the rush."""
        a = self.args
        port = a.port + 2
        self.stack.start_floor()
        floor = self.stack.floor
        self.http_run("floor my-courses", port=port, lines=files["my-courses"], clients=16, duration=1,
                      server=floor, record=False)  # fmt: skip
        rate = self.signup_run("hot", 64, 1 if a.quick else 2, rate=3000, record=False, scenario="floor sign-up hot",
                               port=port, server=floor, kind="floor")["rps"]  # fmt: skip
        for clients in self.floor_clients:
            run = self.signup_run("hot", clients, a.duration, rate, scenario="floor sign-up hot", port=port,
                                  server=floor, kind="floor")  # fmt: skip
            rate = max(rate, run["rps"])
            self.http_run("floor my-courses", port=port, lines=files["my-courses"], clients=clients,
                          duration=a.duration, server=floor, kind="floor")  # fmt: skip
        self.rush("floor", port, floor)
        self.stack.stop("floor")

    def integrity(self) -> dict[str, Any]:
        """Every 200 counted is an enrollment row (rows may exceed it by requests in flight at a run's end)."""
        query = (
            "SELECT (SELECT count(*) FROM enrollments WHERE student_id LIKE 'u%@bench.example'), "
            "(SELECT count(*) FROM course_events WHERE student_id LIKE 'u%@bench.example'), "
            "(SELECT count(*) FROM courses c WHERE enrolled <> "
            "(SELECT count(*) FROM enrollments e WHERE e.course_id = c.course_id AND e.status = 'enrolled'))"
        )  # one statement: one snapshot
        # Requests still queued in the service when the last run's clock stopped finish (or time out
        # waiting for a connection) first.
        deadline, last = time.monotonic() + 15, None
        while True:
            rows, events, drift = (int(v) for v in self.stack.psql(query).split("|"))
            if (rows, events) == last or time.monotonic() > deadline:
                break
            last = rows, events
            time.sleep(1.0)
        ok = self.signups_counted <= rows <= self.signups_counted + self.in_flight_bound and events == rows
        return {
            "enrollment_rows": rows, "event_rows": events, "ok_answers_counted": self.signups_counted,
            "in_flight_bound": self.in_flight_bound, "courses_with_counter_drift": drift, "ok": ok and drift == 0,
        }  # fmt: skip
