"""Readiness: which configured dependencies do not answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

PROBE_TIMEOUT_SECONDS = 2.0

Probe = Callable[[], Awaitable[object]]


async def unavailable(probes: Mapping[str, Probe]) -> list[str]:
    """Names of the probes that fail or take longer than the timeout, checked in parallel."""

    async def failed(probe: Probe) -> bool:
        try:
            await asyncio.wait_for(probe(), PROBE_TIMEOUT_SECONDS)
        except Exception:
            return True
        return False

    results = await asyncio.gather(*(failed(probe) for probe in probes.values()))
    return [name for name, bad in zip(probes, results, strict=True) if bad]
