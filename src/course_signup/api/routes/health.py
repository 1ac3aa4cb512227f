"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from course_signup.adapters import metrics
from course_signup.api.envelope import error, ok
from course_signup.api.schemas import Envelope, HealthOut, ReadyOut, error_response, replica_out
from course_signup.services import health

router = APIRouter(tags=["health"])


@router.get("/health", operation_id="health", response_model=Envelope[HealthOut])
async def get_health() -> Response:
    """The process is up; touches no dependency."""
    return ok({"health": "Okay"})


@router.get(
    "/ready",
    operation_id="ready",
    response_model=Envelope[ReadyOut],
    responses={
        503: error_response(
            503,
            "A dependency does not answer; `data` names it (database, redis, broker, admission).",
            "Not ready: database unavailable.",
        )
    },
)
async def get_ready(request: Request) -> Response:
    """200 when the database (and Redis and the broker, where configured) answer; else 503 naming what is down.

    Read replicas are reported with their lag, but do not decide readiness: their reads fall back to the primary.
    """
    down = await health.unavailable(request.app.state.probes)
    if down:
        return error(503, f"Not ready: {', '.join(down)} unavailable.", {"Retry-After": "1"})
    answer: dict[str, object] = {name: "ok" for name in request.app.state.probes}
    if request.app.state.replicas is not None:
        answer["replicas"] = [replica_out(status) for status in request.app.state.replicas.report()]
    return ok(answer)


@router.get(
    "/metrics", operation_id="metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}}
)
async def get_metrics() -> Response:
    """Prometheus text format: requests and latency by route and status, sign-ups by outcome."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
