"""/metrics with several worker processes: every scrape shows the sum over all workers."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.integration.servers import start_server


def test_metrics_add_up_across_workers(tmp_path: Path):
    server = start_server(None, tmp_path, workers=2)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for _ in range(60):  # new connections, so both workers take some
                with httpx.Client(base_url=server.url, timeout=10) as fresh:
                    assert fresh.get("/health").status_code == 200
            scrapes = [http.get("/metrics").text for _ in range(4)]
    finally:
        server.stop()
    pattern = re.compile(r'^http_requests_total\{method="GET",route="/health",status="200"\} (\S+)$', re.M)
    counts = [float(pattern.search(text).group(1)) for text in scrapes]  # type: ignore[union-attr]
    # start_server's readiness polls hit /ready, not /health: exactly our 60, whichever worker answers
    assert counts == [60.0] * 4
