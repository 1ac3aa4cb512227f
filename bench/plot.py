"""bench/results/latest.png: throughput and p99 latency against clients, every scenario beside its floor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SERIES = [
    ("hello", "hello floor (plain ASGI)", "0.55", "--", "o"),
    ("courses", "GET /courses", "tab:blue", "-", "o"),
    ("my-courses", "GET my-courses", "tab:green", "-", "s"),
    ("sign-up spread", "POST sign-up, spread", "tab:orange", "-", "^"),
    ("sign-up hot", "POST sign-up, hot course", "tab:red", "-", "v"),
    ("sign-up hot unbatched", "POST sign-up, hot, batching off", "tab:purple", "-", "v"),
    ("floor my-courses", "floor app: my-courses", "tab:green", "--", "s"),
    ("floor sign-up hot", "floor app: sign-up, hot", "tab:red", "--", "v"),
    ("pgbench spread", "pgbench sign-up SQL, spread", "tab:orange", ":", "^"),
    ("pgbench hot", "pgbench sign-up SQL, hot", "tab:red", ":", "v"),
]


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"] + results["pgbench"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6))
    for scenario, label, color, style, marker in SERIES:
        points = sorted((r["clients"], r["rps"], r["p99_ms"]) for r in runs if r["scenario"] == scenario)
        if not points:
            continue
        xs = [p[0] for p in points]
        left.plot(xs, [p[1] for p in points], style, color=color, marker=marker, label=label)
        right.plot(xs, [p[2] for p in points], style, color=color, marker=marker, label=label)
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent clients (keep-alive connections)")
        axis.grid(True, which="both", alpha=0.3)
        ticks = sorted({r["clients"] for r in runs})
        axis.set_xticks(ticks, [str(t) for t in ticks])
    left.set_yscale("log")
    left.set_ylabel("requests (transactions) per second")
    left.set_title("throughput")
    right.set_yscale("log")
    right.set_ylabel("p99 latency, ms")
    right.set_title("p99 latency")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False)
    m, c = results["machine"], results["config"]
    fig.suptitle(
        f"course-signup on PostgreSQL: {c['workers']} uvicorn worker(s), {m['cpus']} CPUs ({m['cpu_model']}), "
        f"{c['duration_s']} s per point, {results['started']}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
