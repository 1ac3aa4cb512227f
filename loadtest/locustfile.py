"""Locust entry point for course-signup: three scenarios, pick exactly one.

    locust -f loadtest/locustfile.py --headless -H http://127.0.0.1:8000 -u 10 -r 10 -t 60s SeedUser
    locust -f loadtest/locustfile.py --headless -H http://127.0.0.1:8000 -u 400 -r 100 -t 120s --tags rush

By user class (SeedUser, RushUser, BrowseUser) or by tag (seed, rush, browse). loadtest/run.sh
wraps this with the right user counts and writes CSV/HTML reports; see loadtest/README.md.
"""

from __future__ import annotations

import sys
from typing import Any

from locust import events
from scenarios.browse import BrowseUser
from scenarios.common import TOKENS, auth_mode, log
from scenarios.rush import RushUser
from scenarios.seed import SeedUser

__all__ = ["BrowseUser", "RushUser", "SeedUser"]


@events.init.add_listener
def _one_scenario(environment: Any, **_: Any) -> None:
    """Keep the classes chosen by --tags (Locust would otherwise spawn untagged classes with no tasks),
    and refuse to mix scenarios: their checks assume they run alone."""
    options = environment.parsed_options
    tags = set(getattr(options, "tags", None) or [])
    if tags:
        environment.user_classes[:] = [cls for cls in environment.user_classes if cls.scenario in tags]
    names = sorted({cls.scenario for cls in environment.user_classes})
    if len(names) != 1:
        sys.exit(
            "loadtest: pick exactly one scenario, by user class (SeedUser, RushUser, BrowseUser) "
            f"or by tag (--tags seed|rush|browse); selected: {names or 'none'}"
        )
    distributed = any(getattr(options, name, None) for name in ("worker", "master", "processes"))
    if distributed and names == ["rush"]:
        sys.exit("loadtest: run the rush scenario in one Locust process (its final check tallies every answer)")
    try:
        TOKENS.check()  # fail before any traffic when tokens cannot be minted
    except SystemExit as exc:
        sys.exit(str(exc))
    log.info("loadtest: scenario %s, auth %s", names[0], auth_mode())
