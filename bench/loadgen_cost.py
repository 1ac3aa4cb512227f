"""Which load generator costs less CPU per request on this box: wrk (+ Lua) or the asyncio client?

    python bench/loadgen_cost.py [--workers 2] [--duration 5] [--clients 16,64,256]

Runs bench/hello.py under uvicorn (the cheapest server we have, so the generator's share is as
large as it gets) and drives it with each generator in turn, measuring the generator's own CPU
(getrusage of the reaped child) per completed request, the server's CPU, and the throughput the
server reached. Saves bench/results/loadgen_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import harness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--clients", default="16,64,256")
    parser.add_argument("--port", type=int, default=18091)
    parser.add_argument("--wait-quiet", type=float, default=60, help="seconds to wait for an idle machine")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="course-signup-loadgen-"))
    lines = harness.write_lines(tmp / "hello.lines", [("/", "-", "-")])
    server = harness.Server(
        "hello",
        harness.hello_command(args.port, args.workers),
        env=dict(os.environ),
        log_path=tmp / "hello.log",
    )
    results = []
    background = None
    try:
        server.wait_ready(args.port, "/")
        background = harness.wait_quiet(0.25, args.wait_quiet)
        print(f"background load before the runs: {background:.2f} cores (other users of this machine)")
        meter = harness.CpuMeter(server_pid=server.pid)
        configs = [("wrk", 1), ("wrk", 2), ("asyncio", 1)]
        print(f"{'generator':<14}{'clients':>8}{'req/s':>10}{'gen us/req':>12}{'(user)':>8}{'srv us/req':>12}"
              f"{'gen cores':>11}{'srv cores':>11}{'other':>7}")  # fmt: skip
        for c in clients:
            for tool, threads in configs:
                time.sleep(0.5)
                run = harness.run_load(
                    tool=tool, port=args.port, lines_file=lines, expected=200, mode="cycle",
                    clients=c, duration=args.duration, threads=threads, meter=meter,
                )  # fmt: skip
                name = f"{tool} -t{threads}" if tool == "wrk" else tool
                run["generator"] = name
                results.append(run)
                per = run["cpu_us_per_request"]
                cores = run["cpu_cores"]
                window = run["loadgen_window_us_per_request"]
                print(
                    f"{name:<14}{c:>8}{run['rps']:>10.0f}{per['loadgen']:>12.1f}{per['loadgen_user']:>8.1f}"
                    f"{per['server']:>12.1f}{cores['loadgen']:>11.2f}{cores['server']:>11.2f}{cores['other']:>7.2f}"
                    + (f"  (in-run only: {window:.1f} us/req)" if window else "")
                    + (f"  errors={run['errors']}" if run["errors"] else "")
                )
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out = harness.BENCH / "results" / "loadgen_cost.json"
    out.parent.mkdir(exist_ok=True)
    summary = {"workers": args.workers, "duration": args.duration, "background_cores": background, "runs": results}
    out.write_text(json.dumps(summary, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
