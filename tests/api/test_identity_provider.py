"""RS256/ES256 tokens from an identity provider's JWKS, served by a local HTTP server the test starts."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from course_signup.adapters import migrations
from course_signup.adapters.jwks import ProviderKeys
from course_signup.settings import Settings
from tests.api.helpers import assert_error
from tests.conftest import running_app


class Provider:
    """A JWKS endpoint whose key set and speed the test controls."""

    def __init__(self) -> None:
        self.keys: list[dict[str, object]] = []
        self.delay = 0.0  # seconds each answer waits, unless released first
        self.released = threading.Event()
        self.fetches = 0
        self.in_flight = 0
        self.most_in_flight = 0
        lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    provider.fetches += 1
                    provider.in_flight += 1
                    provider.most_in_flight = max(provider.most_in_flight, provider.in_flight)
                try:
                    if provider.delay:
                        provider.released.wait(provider.delay)
                    body = json.dumps({"keys": provider.keys}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the service gave up waiting
                finally:
                    with lock:
                        provider.in_flight -= 1

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/jwks.json"

    def publish(self, kid: str, public_key: object, algorithm: str) -> None:
        codec = RSAAlgorithm if algorithm == "RS256" else ECAlgorithm
        jwk = json.loads(codec.to_jwk(public_key))  # type: ignore[arg-type]
        self.keys.append({**jwk, "kid": kid, "alg": algorithm, "use": "sig"})

    def withdraw(self, kid: str) -> None:
        self.keys = [key for key in self.keys if key["kid"] != kid]


@pytest.fixture
def provider() -> Iterator[Provider]:
    idp = Provider()
    thread = threading.Thread(target=idp.server.serve_forever, daemon=True)
    thread.start()
    yield idp
    idp.released.set()
    idp.server.shutdown()


@pytest.fixture
def idp_settings(provider: Provider, tmp_path: Path) -> Settings:
    settings = Settings(
        data_dir=tmp_path,
        jwt_jwks_url=provider.url,
        jwt_issuer="https://idp.example",
        jwt_audience="course-signup",
        jwt_jwks_refresh_cooldown_seconds=0,
    )
    migrations.upgrade(settings)
    return settings


def _token(key: object, algorithm: str, kid: str, **overrides: object) -> str:
    now = int(time.time())
    claims = {
        "sub": "alice@example.com",
        "iss": "https://idp.example",
        "aud": "course-signup",
        "iat": now,
        "exp": now + 300,
        **overrides,
    }
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})  # type: ignore[arg-type]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_provider_tokens_are_accepted_and_checked(provider: Provider, idp_settings: Settings):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    provider.publish("rsa-1", rsa_key.public_key(), "RS256")
    provider.publish("ec-1", ec_key.public_key(), "ES256")
    async with running_app(idp_settings) as client:
        path = "/students/alice@example.com/courses"
        assert (await client.get(path, headers=_bearer(_token(rsa_key, "RS256", "rsa-1")))).status_code == 200
        assert (await client.get(path, headers=_bearer(_token(ec_key, "ES256", "ec-1")))).status_code == 200
        assert_error(
            await client.get(path, headers=_bearer(_token(rsa_key, "RS256", "rsa-1", iss="https://evil"))), 401
        )
        assert_error(await client.get(path, headers=_bearer(_token(rsa_key, "RS256", "rsa-1", aud="other"))), 401)
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert_error(await client.get(path, headers=_bearer(_token(stranger, "RS256", "rsa-1"))), 401)
        # Algorithm confusion: an HS256 token whose "secret" is the provider's public key.
        public_pem = rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        forged = jwt.api_jws.PyJWS()
        forged._algorithms["HS256"].prepare_key = lambda key: key  # type: ignore[method-assign]
        now = int(time.time())
        token = forged.encode(
            json.dumps(
                {
                    "sub": "alice@example.com",
                    "role": "admin",
                    "iss": "https://idp.example",
                    "aud": "course-signup",
                    "exp": now + 300,
                }
            ).encode(),
            public_pem,
            algorithm="HS256",
            headers={"kid": "rsa-1"},
        )
        assert_error(await client.get(path, headers=_bearer(token)), 401)


async def test_an_unknown_kid_refreshes_the_key_set(provider: Provider, idp_settings: Settings):
    first = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    provider.publish("k1", first.public_key(), "RS256")
    async with running_app(idp_settings) as client:
        path = "/students/alice@example.com/courses"
        assert (await client.get(path, headers=_bearer(_token(first, "RS256", "k1")))).status_code == 200
        rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        provider.publish("k2", rotated.public_key(), "RS256")
        assert (await client.get(path, headers=_bearer(_token(rotated, "RS256", "k2")))).status_code == 200


async def test_a_slow_provider_does_not_hang_requests(provider: Provider, idp_settings: Settings):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    provider.publish("slow", key.public_key(), "RS256")
    provider.delay = 20.0
    async with running_app(idp_settings) as client:
        started = time.monotonic()
        response = await client.get(
            "/students/alice@example.com/courses", headers=_bearer(_token(key, "RS256", "slow"))
        )
        elapsed = time.monotonic() - started
    assert_error(response, 401)
    # The JWKS deadline is 2.5 s; the provider would take 20 s. Loose bound: the point is "not 20 s".
    assert elapsed < 12


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not come true within 10 s")


async def test_a_key_withdrawn_by_the_provider_stops_verifying_once_the_set_is_re_fetched(
    provider: Provider, idp_settings: Settings
):
    old, current, newer = _rsa(), _rsa(), _rsa()
    provider.publish("old", old.public_key(), "RS256")
    provider.publish("current", current.public_key(), "RS256")
    async with running_app(idp_settings) as client:
        path = "/students/alice@example.com/courses"
        verified_before = _token(old, "RS256", "old")
        assert (await client.get(path, headers=_bearer(verified_before))).status_code == 200
        provider.withdraw("old")
        provider.publish("newer", newer.public_key(), "RS256")
        # A token with a kid the service has not seen makes it fetch the set again.
        assert (await client.get(path, headers=_bearer(_token(newer, "RS256", "newer")))).status_code == 200
        assert provider.fetches == 2
        assert_error(await client.get(path, headers=_bearer(verified_before)), 401)
        assert_error(await client.get(path, headers=_bearer(_token(old, "RS256", "old", jti="new"))), 401)
        assert (await client.get(path, headers=_bearer(_token(current, "RS256", "current")))).status_code == 200


async def test_a_key_set_past_its_maximum_age_is_re_fetched_in_the_background_and_drops_withdrawn_keys(
    provider: Provider,
):
    key = _rsa()
    provider.publish("k1", key.public_key(), "RS256")
    keys = ProviderKeys(provider.url, cooldown_seconds=0, max_age_seconds=0)
    found, generation = await keys.find("k1")
    assert found is not None
    provider.withdraw("k1")
    # Still answered from the keys in hand (no waiting), while a fetch starts in the background.
    found, _ = await keys.find("k1")
    assert found is not None
    await _until(lambda: keys.generation > generation)
    assert (await keys.find("k1"))[0] is None


async def test_a_known_kid_verifies_while_made_up_kids_wait_for_a_hanging_provider(
    provider: Provider, idp_settings: Settings
):
    real, stranger = _rsa(), _rsa()
    provider.publish("real", real.public_key(), "RS256")
    async with running_app(idp_settings) as client:
        path = "/students/alice@example.com/courses"
        assert (await client.get(path, headers=_bearer(_token(real, "RS256", "real")))).status_code == 200
        provider.delay = 60.0  # hangs until the test releases it
        made_up = [
            asyncio.create_task(client.get(path, headers=_bearer(_token(stranger, "RS256", f"made-up-{n}"))))
            for n in range(50)
        ]
        await _until(lambda: provider.in_flight == 1)
        fresh = _token(real, "RS256", "real", jti="never-seen")
        assert (await client.get(path, headers=_bearer(fresh))).status_code == 200
        assert provider.in_flight == 1, "the known kid was answered only after the hang ended"
        provider.released.set()
        for response in await asyncio.gather(*made_up):
            assert_error(response, 401)
    assert provider.most_in_flight == 1  # the 50 made-up kids shared one fetch
    assert provider.fetches == 2


async def test_a_known_kid_needs_no_thread_while_the_default_thread_pool_is_exhausted(
    provider: Provider, idp_settings: Settings
):
    key = _rsa()
    provider.publish("k1", key.public_key(), "RS256")
    async with running_app(idp_settings) as client:
        own_path, other_path = "/students/alice@example.com/courses", "/students/bob@example.com/courses"
        assert (await client.get(own_path, headers=_bearer(_token(key, "RS256", "k1")))).status_code == 200
        loop, gate = asyncio.get_running_loop(), threading.Event()
        blocked = [loop.run_in_executor(None, gate.wait) for _ in range(64)]
        try:
            # 403 after the token is verified, before any database work: only verification is timed.
            fresh = _token(key, "RS256", "k1", jti="never-seen")
            response = await asyncio.wait_for(client.get(other_path, headers=_bearer(fresh)), timeout=30)
        finally:
            gate.set()
            await asyncio.gather(*blocked)
        assert_error(response, 403)


async def test_a_made_up_kid_is_refused_again_without_another_fetch(provider: Provider, idp_settings: Settings):
    provider.publish("real", _rsa().public_key(), "RS256")
    stranger = _rsa()
    async with running_app(idp_settings) as client:
        path = "/students/alice@example.com/courses"
        for _ in range(3):
            assert_error(await client.get(path, headers=_bearer(_token(stranger, "RS256", "made-up"))), 401)
    assert provider.fetches == 1
