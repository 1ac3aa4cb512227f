"""Prometheus metrics; multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set (serve sets it for workers > 1)."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("http_requests_total", "HTTP requests by route template and status.", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SIGNUPS = Counter(
    "signups_total", "Sign-up outcomes: enrolled, waitlisted, full, duplicate, closed, other.", ["outcome"]
)
_CACHE = Counter("course_cache_lookups_total", "Catalogue cache lookups by result.", ["result"])
CACHE_HITS, CACHE_MISSES = _CACHE.labels("hit"), _CACHE.labels("miss")
POOL_IN_USE = Gauge("db_pool_connections_in_use", "Database connections checked out.", multiprocess_mode="livesum")
POOL_WAIT = Histogram(
    "db_pool_wait_seconds",
    "Time a request waited for a database connection (past DB_POOL_TIMEOUT it is answered 503).",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)

_OUTCOME_BY_ERROR = {
    "CourseFullError": "full",
    "AlreadyEnrolledError": "duplicate",
    "AlreadyWaitlistedError": "duplicate",
    "RegistrationClosedError": "closed",
}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def observe_signup(status: int, error_name: str | None) -> None:
    if status == 200:
        outcome = "enrolled"
    elif status == 202:
        outcome = "waitlisted"
    else:
        outcome = _OUTCOME_BY_ERROR.get(error_name or "", "other")
    SIGNUPS.labels(outcome).inc()


def render() -> tuple[bytes, str]:
    """The exposition text: every worker's figures in multiprocess mode, this process's otherwise."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
