"""The identity provider's signing keys (JWKS): fetched without threads, one fetch at a time, replaced whole."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time

import httpx
import jwt

log = logging.getLogger("course_signup.tokens")

FETCH_TIMEOUT_SECONDS = 2.0  # the whole fetch, connect to last byte
MAX_AGE_SECONDS = 300.0  # an older key set is re-fetched in the background, so removed keys stop verifying
UNKNOWN_KID_SECONDS = 10.0  # a kid missing from a fetched set is refused at once for this long
MAX_UNKNOWN_KIDS = 10_000
MAX_KID_LENGTH = 256  # a longer kid is refused without a fetch, and never remembered
MAX_DOCUMENT_BYTES = 1024 * 1024


class ProviderKeys:
    """The current key set by `kid`. A known kid is answered from memory; only an unknown one may wait for a fetch."""

    def __init__(self, url: str, *, cooldown_seconds: float, max_age_seconds: float = MAX_AGE_SECONDS) -> None:
        self._url = url
        self._cooldown = cooldown_seconds
        self._max_age = max_age_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._published: list[str] = []  # the fetched keys, canonical JSON: tells a changed set apart
        self._loaded_at = -math.inf  # monotonic time of the last successful fetch
        self._started_at = -math.inf  # monotonic time the last fetch began
        self._unknown: dict[str, float] = {}  # kid -> monotonic time until which it is refused unasked
        self._fetch: asyncio.Task[None] | None = None
        self._tls = httpx.create_ssl_context()  # once: loading CA certificates per fetch would block the loop
        # Bumped whenever a fetch changes the set; what was verified under an older generation is re-checked.
        self.generation = 0

    async def find(self, kid: str) -> tuple[jwt.PyJWK | None, int]:
        """The key for this kid (None if the provider does not publish it) and the generation it belongs to."""
        key = self._keys.get(kid)
        if key is not None:
            self.refresh_if_stale()  # in the background: this request keeps the key in hand
            return key, self.generation
        now = time.monotonic()
        if len(kid) > MAX_KID_LENGTH or self._unknown.get(kid, -math.inf) > now:
            return None, self.generation
        if self._fetch is None and now - self._started_at < self._cooldown:
            self._remember_unknown(kid)
            return None, self.generation
        # Shielded: a caller that goes away does not cancel the fetch the others are waiting for.
        await asyncio.shield(self._start_fetch())
        key = self._keys.get(kid)
        if key is None:
            self._remember_unknown(kid)
        return key, self.generation

    def refresh_if_stale(self) -> None:
        """Start a background fetch when the set is older than its maximum age (at most once per cooldown)."""
        now = time.monotonic()
        if now - self._loaded_at >= self._max_age and now - self._started_at >= self._cooldown:
            self._start_fetch()

    def _start_fetch(self) -> asyncio.Task[None]:
        # Single flight: every caller that needs a fetch while one runs waits for that one.
        if self._fetch is None:
            self._started_at = time.monotonic()
            self._fetch = asyncio.create_task(self._refresh(), name="jwks-fetch")
        return self._fetch

    def _remember_unknown(self, kid: str) -> None:
        if len(self._unknown) >= MAX_UNKNOWN_KIDS:
            self._unknown.clear()
        self._unknown[kid] = time.monotonic() + UNKNOWN_KID_SECONDS

    async def _refresh(self) -> None:
        try:
            async with asyncio.timeout(FETCH_TIMEOUT_SECONDS):
                document = await self._download()
            published, keys = _signing_keys(document)
        except Exception as exc:  # whatever the provider answers, a bad fetch is a 401, never a 500
            # The keys in hand stay: a provider that is down does not lock every user out.
            log.warning(
                "could not fetch the identity provider's keys from %s: %s: %s", self._url, type(exc).__name__, exc
            )
            return
        finally:
            self._fetch = None
        if published != self._published:
            self._keys, self._published = keys, published
            self._unknown.clear()
            self.generation += 1
        self._loaded_at = time.monotonic()

    async def _download(self) -> object:
        async with (
            httpx.AsyncClient(verify=self._tls, timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=True) as http,
            http.stream("GET", self._url, headers={"Accept": "application/json"}) as response,
        ):
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ValueError(f"the key set is larger than {MAX_DOCUMENT_BYTES} bytes")
        return json.loads(body)


def _signing_keys(document: object) -> tuple[list[str], dict[str, jwt.PyJWK]]:
    """The set's signing keys by kid, and the set in canonical form; ValueError if it is not a JWK set."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("the response is not a JWK set")
    published = sorted(json.dumps(key, sort_keys=True) for key in document["keys"])
    if not document["keys"]:
        return published, {}  # the provider withdrew every key
    keys = jwt.PyJWKSet.from_dict(document)  # skips keys it cannot use; raises if none is usable
    return published, {key.key_id: key for key in keys if key.key_id and key.public_key_use in ("sig", None)}
