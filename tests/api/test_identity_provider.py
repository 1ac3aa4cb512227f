"""RS256/ES256 tokens from an identity provider's JWKS, served by a local HTTP server the test starts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from course_signup.adapters import migrations
from course_signup.settings import Settings
from tests.api.helpers import assert_error
from tests.conftest import running_app


class Provider:
    """A JWKS endpoint whose key set and speed the test controls."""

    def __init__(self) -> None:
        self.keys: list[dict[str, object]] = []
        self.delay = 0.0
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.fetches += 1
                time.sleep(provider.delay)
                body = json.dumps({"keys": provider.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/jwks.json"

    def publish(self, kid: str, public_key: object, algorithm: str) -> None:
        codec = RSAAlgorithm if algorithm == "RS256" else ECAlgorithm
        jwk = json.loads(codec.to_jwk(public_key))  # type: ignore[arg-type]
        self.keys.append({**jwk, "kid": kid, "alg": algorithm, "use": "sig"})


@pytest.fixture
def provider() -> Iterator[Provider]:
    idp = Provider()
    thread = threading.Thread(target=idp.server.serve_forever, daemon=True)
    thread.start()
    yield idp
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
