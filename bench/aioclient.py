"""The asyncio load generator that wrk was measured against (bench/loadgen_cost.py).

As cheap as a Python client gets: uvloop, one asyncio.Protocol per keep-alive connection,
requests pre-built as bytes, responses parsed only for the status line and Content-Length,
no coroutine per request. Closed loop like wrk: each connection sends its next request when
the previous answer is complete.

    python bench/aioclient.py URL --connections 64 --duration 5 [--file LINES --expected 200 --once]

Prints one line "WRKJSON {...}" shaped like bench/wrk/requests.lua's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from urllib.parse import urlsplit


def build_requests(host: str, lines: list[str]) -> list[bytes]:
    out = []
    for line in lines:
        path, token, body = line.rstrip("\n").split("\t", 2)
        head = [f"{'GET' if body == '-' else 'POST'} {path} HTTP/1.1", f"Host: {host}"]
        if token != "-":
            head.append(f"Authorization: Bearer {token}")
        payload = b""
        if body != "-":
            payload = body.encode()
            head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        out.append(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
    return out


class Stats:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.latencies: list[int] = []
        self.bad = 0
        self.unexpected: dict[int, int] = {}
        self.errors = 0
        self.bytes = 0


class Connection(asyncio.Protocol):
    def __init__(self, requests: list[bytes], stats: Stats, deadline: float, once: bool, offset: int, step: int):
        self.requests, self.stats, self.deadline = requests, stats, deadline
        self.index, self.step = offset, step
        self.buffer = b""
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        if time.perf_counter() >= self.deadline:
            self.transport.close()
            return
        self.sent = time.perf_counter_ns()
        self.transport.write(self.requests[self.index % len(self.requests)])  # type: ignore[attr-defined]
        self.index += self.step

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                    break
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            status = int(head[9:12])
            self.buffer = self.buffer[total:]
            stats = self.stats
            stats.latencies.append(time.perf_counter_ns() - self.sent)
            stats.bytes += total
            if status != stats.expected:
                stats.bad += 1
                stats.unexpected[status] = stats.unexpected.get(status, 0) + 1
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.stats.errors += 1
        if not self.closed.done():
            self.closed.set_result(None)


async def run(url: str, lines: list[str], connections: int, duration: float, expected: int, once: bool) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = build_requests(f"{host}:{port}", lines)
    stats = Stats(expected)
    loop = asyncio.get_running_loop()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    deadline = started + duration
    protocols = []
    for k in range(connections):
        _, protocol = await loop.create_connection(
            lambda k=k: Connection(requests, stats, deadline, once, k, connections), host, port
        )
        protocols.append(protocol)
    await asyncio.gather(*(p.closed for p in protocols))
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    lat = sorted(stats.latencies) or [0]

    def pct(p: float) -> int:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] // 1000

    return {
        "requests": len(stats.latencies),
        "duration_us": int(elapsed * 1e6),
        "bytes": stats.bytes,
        "bad": stats.bad,
        "exhausted": 0,
        "lines": len(lines),
        "cpu_window_s": round(
            cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 3
        ),  # the client's own CPU while it was sending: without interpreter start-up
        "unexpected": {str(k): v for k, v in stats.unexpected.items()},
        "errors": {"connect": 0, "read": stats.errors, "write": 0, "status": 0, "timeout": 0},
        "latency_us": {
            "mean": sum(lat) / len(lat) / 1000,
            "max": lat[-1] // 1000,
            "p50": pct(50),
            "p90": pct(90),
            "p95": pct(95),
            "p99": pct(99),
            "p999": pct(99.9),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--connections", "-c", type=int, default=64)
    parser.add_argument("--duration", "-d", type=float, default=5.0)
    parser.add_argument("--file", help="request lines as for bench/wrk/requests.lua (default: GET the URL's path)")
    parser.add_argument("--expected", type=int, default=200)
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args()
    if args.file:
        with open(args.file) as handle:
            lines = handle.readlines()
    else:
        lines = [f"{urlsplit(args.url).path or '/'}\t-\t-"]
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        result = asyncio.run(run(args.url, lines, args.connections, args.duration, args.expected, args.once))
    else:
        result = uvloop.run(run(args.url, lines, args.connections, args.duration, args.expected, args.once))
    print("WRKJSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
