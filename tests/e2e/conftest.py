"""The portal in a real browser: Debian's chromium driven by Playwright, against a real `serve` process.

`serve` runs on a fresh embedded database with the secret it generates itself, so the development sign-in
exists. Every request each page makes is recorded; a test fails if one leaves the server's origin, if a page
throws, or if the Content-Security-Policy refuses anything.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import IN_CI
from tests.integration.servers import Server, start_server

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1100, "height": 820}
TOKEN_KEY = "course-signup.token"  # where portal.js keeps the bearer token (sessionStorage)


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the browser tests need {reason} in CI (.ci/run installs chromium)")
    pytest.skip(f"no browser: {reason}")


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # As a developer runs it: the embedded database and the secret it generates (so the dev sign-in exists).
    running = start_server(None, tmp_path_factory.mktemp("portal"), secret=None)
    yield running
    running.stop()


class Api:
    """The JSON API as another client uses it, with tokens from the development sign-in."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)

    def token(self, email: str, *, admin: bool = False) -> str:
        answer = self.http.post("/portal/dev-sign-in", json={"email": email, "registrar": admin})
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]["token"]

    def call(self, method: str, path: str, *, as_: str, admin: bool = False, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(as_, admin=admin)}"}
        return self.http.request(method, path, headers=headers, **kwargs)

    def create_course(self, course_id: str, name: str, **fields: Any) -> None:
        body = {"courseId": course_id, "name": name, **fields}
        answer = self.call("POST", "/courses", as_="setup@example.com", admin=True, json=body)
        assert answer.status_code == 201, answer.text

    def sign_up(self, student: str, course_id: str, *, waitlist: bool = False) -> dict[str, Any]:
        body = {"courseId": course_id, "waitlist": waitlist}
        answer = self.call("POST", f"/students/{student}/courses", as_=student, json=body)
        assert answer.status_code in (200, 202), answer.text
        return answer.json()["data"]

    def drop(self, student: str, course_id: str) -> dict[str, Any]:
        answer = self.call("DELETE", f"/students/{student}/courses/{course_id}", as_=student)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]

    def course(self, course_id: str) -> httpx.Response:
        return self.http.get(f"/courses/{course_id}")


@pytest.fixture(scope="package")
def api(server: Server) -> Iterator[Api]:
    client = Api(server.url)
    yield client
    client.http.close()


# Package scope: Playwright's sync API keeps an event loop running while it is started, and the
# tests after this folder call asyncio.run(); the browser is closed when the folder is done.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium")
    if executable is None:
        _unavailable("Debian's chromium package (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python (pip install -e '.[dev]')")
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        yield launched
        launched.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A fresh tab (its own sessionStorage) that records every request and every script or CSP failure."""
    context = browser.new_context(viewport=DESKTOP, base_url=server.url)
    requested: list[str] = []
    failures: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    tab = context.new_page()
    tab.on("pageerror", lambda error: failures.append(f"script error: {error}"))
    # Chromium reports a refused load as a console error naming the policy; 4xx answers the page
    # expects (409 Course is full.) are console errors too, so only the policy's are failures.
    tab.on(
        "console", lambda message: failures.append(message.text) if "Content Security Policy" in message.text else None
    )
    yield tab
    context.close()
    origin = urlsplit(server.url)
    foreign = [url for url in requested if urlsplit(url)[:2] != origin[:2]]
    assert requested, "the page made no request at all"
    assert not foreign, f"requests that left {server.url}: {foreign}"
    assert not failures, failures


def screenshot(tab: Any, name: str, *, full_page: bool = True) -> None:
    """docs/screenshots/<name>.png, overwritten on every run so the README shows the current pages."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)
