"""The web portal over plain HTTP: pages are HTML under a strict CSP, assets come from the package, unknown paths
still answer the 404 envelope, and the development sign-in exists only on a developer's machine."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from course_signup.adapters import migrations
from course_signup.api import portal
from course_signup.settings import Settings
from tests.api.helpers import assert_error
from tests.conftest import running_app

ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from the test's own arguments only, whatever COURSE_SIGNUP_* the shell exports."""
    import os

    for name in [name for name in os.environ if name.startswith("COURSE_SIGNUP_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def migrated(tmp_path: Path, clean_environment: None) -> Path:
    """An empty embedded database in a data directory with no secret yet: a developer's first start."""
    data_dir = tmp_path / "data"
    migrations.upgrade(Settings(data_dir=data_dir))
    return data_dir


async def test_the_start_page_is_the_catalogue_in_html_under_a_strict_policy(client: httpx.AsyncClient):
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe" not in policy
    assert "frame-ancestors 'none'" in policy
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.text
    assert '<label for="q">Search</label>' in page.text
    assert "Open seats only" in page.text


@pytest.mark.parametrize("path", sorted(portal.PAGES))
async def test_every_page_loads_only_its_own_packaged_assets(client: httpx.AsyncClient, path: str):
    page = await client.get(path)
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == portal.CONTENT_SECURITY_POLICY
    html = page.text
    assert "://" not in html  # no CDN, no web font, no analytics
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # no inline script: the policy would refuse it
    assert not re.search(r"\sstyle=|<style|\son[a-z]+=", html)  # no inline style or event handler
    urls = re.findall(r"""(?:src|href)="(/portal/static/[^"]+)\"""", html)
    assert len(urls) == 4  # the icon, the style sheet, portal.js and the page's own script
    for url in urls:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert ASSET_TYPES[Path(url).suffix] in asset.headers["content-type"], url


async def test_unknown_paths_still_answer_the_404_envelope(client: httpx.AsyncClient):
    for path in ("/nowhere", "/portal", "/portal/", "/portal/nowhere", "/portal/static/nothing.js", "/index.html"):
        response = await client.get(path)
        assert_error(response, 404, "No such endpoint.")
    for path in ("/portal/static/%2e%2e/portal.py", "/portal/static/..%2fportal.py"):
        assert (await client.get(path)).status_code == 404, path
    assert_error(await client.post("/"), 405)


async def test_without_the_generated_secret_the_development_sign_in_is_absent(client: httpx.AsyncClient):
    # The shared test settings configure JWT_SECRET: no development sign-in, and no form for it.
    assert_error(await client.post("/portal/dev-sign-in", json={"email": "a@example.com"}), 404)
    assert "Development sign-in" not in (await client.get("/portal/sign-in")).text


async def test_on_a_developer_machine_the_development_sign_in_mints_working_tokens(migrated: Path):
    async with running_app(Settings(data_dir=migrated)) as http:
        assert "Development only." in (await http.get("/portal/sign-in")).text
        answer = await http.post("/portal/dev-sign-in", json={"email": " Ada@Example.com ", "registrar": True})
        assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
        token = answer.json()["data"]["token"]
        roster = await http.get("/courses/CS101/students", headers={"Authorization": f"Bearer {token}"})
        assert_error(roster, 404, "Course not found.")  # a registrar's token: past the 401 and 403 checks
        student = (await http.post("/portal/dev-sign-in", json={"email": "bob@example.com"})).json()["data"]["token"]
        forbidden = await http.get("/courses/CS101/students", headers={"Authorization": f"Bearer {student}"})
        assert_error(forbidden, 403)
        assert_error(await http.post("/portal/dev-sign-in", json={"email": "not-an-address"}), 400)
        assert_error(await http.post("/portal/dev-sign-in", json={"registrar": True}), 400)


@pytest.mark.parametrize(
    ("overrides", "present"),
    [
        ({}, True),
        ({"host": "::1"}, True),
        ({"host": "localhost"}, True),
        ({"jwt_secret": "s" * 40}, False),
        ({"jwt_jwks_url": "https://idp.example.com/jwks.json"}, False),
        ({"database_url": "postgresql+asyncpg://u@127.0.0.1/db"}, False),
        ({"host": "0.0.0.0"}, False),  # config/prod.yml and the image listen on every address
        ({"host": "192.168.1.20"}, False),
        ({"auth_mode": "none"}, False),
    ],
)
def test_the_development_sign_in_exists_only_with_the_embedded_database_and_generated_secret_on_loopback(
    overrides: dict[str, str], present: bool, clean_environment: None
):
    assert portal.dev_sign_in_enabled(Settings(**overrides)) is present


def test_config_prod_yml_has_no_development_sign_in(monkeypatch: pytest.MonkeyPatch, clean_environment: None):
    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("COURSE_SIGNUP_CONFIG", str(root / "config" / "prod.yml"))
    assert portal.dev_sign_in_enabled(Settings()) is False


async def test_with_a_jwt_secret_configured_the_sign_in_endpoint_is_a_404(migrated: Path):
    async with running_app(Settings(data_dir=migrated, jwt_secret="s" * 40)) as http:
        assert_error(await http.post("/portal/dev-sign-in", json={"email": "a@example.com"}), 404)
        assert (await http.get("/")).status_code == 200
