"""JWT issue and verify (PyJWT): HS256 with a shared secret, RS256/ES256 from an identity provider's JWKS."""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from course_signup.adapters import database
from course_signup.adapters.jwks import ProviderKeys
from course_signup.domain import rules
from course_signup.domain.errors import InvalidInputError, UnauthenticatedError
from course_signup.settings import Settings

log = logging.getLogger("course_signup.tokens")

SECRET_FILE = "jwt-secret"
ASYMMETRIC_ALGORITHMS = ["RS256", "ES256"]
VERIFIED_CACHE_SIZE = 50_000
MIN_SECRET_BYTES = 32  # HS256 keys shorter than the hash (RFC 7518 3.2) can be brute-forced offline
LAST_NUMERIC_DATE = 253_402_300_799  # 9999-12-31T23:59:59Z: the latest exp, iat or nbf a token may carry


class SecretError(ValueError):
    """The HS256 secret cannot be used (empty or too short); the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for."""

    student_id: str
    is_admin: bool


def load_or_create_secret(settings: Settings) -> str | None:
    """The HS256 secret: configured, or generated once into the data directory (mode 0600)."""
    if settings.jwt_secret is not None:
        return validate_secret(settings.jwt_secret.get_secret_value(), "COURSE_SIGNUP_JWT_SECRET")
    if settings.jwt_jwks_url:
        return None
    path = Path(settings.data_dir) / SECRET_FILE
    if not path.exists():
        database.secure_data_dir(settings)  # 0700, so the secret is never readable by others
        # O_EXCL: when several workers start at once, exactly one writes the secret.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
            if not settings.embedded:
                log.warning(
                    "no JWT secret configured: generated %s; every process behind a load balancer "
                    "must share one (set COURSE_SIGNUP_JWT_SECRET)",
                    path,
                )
    for _ in range(50):  # another worker may be between creating and writing the file
        secret = path.read_text().strip()
        if secret:
            return validate_secret(secret, f"file {path}")
        time.sleep(0.02)
    raise RuntimeError(f"empty JWT secret file: {path}")


def validate_secret(secret: str, source: str) -> str:
    """The secret, if it is long enough to sign with; else SecretError naming where it came from."""
    size = len(secret.encode())
    if not secret.strip():
        raise SecretError(f"the JWT secret ({source}) is empty")
    if size < MIN_SECRET_BYTES:
        raise SecretError(
            f"the JWT secret ({source}) is {size} bytes; it must be at least {MIN_SECRET_BYTES} "
            "(generate one with: openssl rand -base64 48)"
        )
    return secret


class TokenService:
    """Verifies bearer tokens; issues HS256 tokens for the `token` command and tests."""

    def __init__(self, settings: Settings, *, secret: str | None) -> None:
        self._secret = secret
        # Verified tokens, so a client's repeated requests skip the signature check; only valid
        # tokens are kept, each until its expiry, and a provider's token only while its key set
        # is unchanged (the generation it was verified under): a withdrawn key stops working.
        self._verified: dict[str, tuple[Principal, float, int | None]] = {}
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self._provider = (
            ProviderKeys(settings.jwt_jwks_url, cooldown_seconds=settings.jwt_jwks_refresh_cooldown_seconds)
            if settings.jwt_jwks_url
            else None
        )

    def issue(self, email: str, *, admin: bool = False, ttl_seconds: int = 3600) -> str:
        if self._secret is None:
            raise RuntimeError("no JWT secret configured: tokens come from the identity provider")
        now = int(time.time())
        claims = {
            "sub": rules.normalize_email(email),
            "role": "admin" if admin else "student",
            "iat": now,
            "exp": now + ttl_seconds,
        }
        if self._issuer:
            claims["iss"] = self._issuer
        if self._audience:
            claims["aud"] = self._audience
        return jwt.encode(claims, self._secret, algorithm="HS256")

    async def verify(self, token: str) -> Principal:
        """The token's principal; UnauthenticatedError for anything not valid."""
        known = self._verified.get(token)
        if known is not None and time.time() < known[1] and self._key_set_unchanged(known[2]):
            return known[0]
        principal, expires, generation = await self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, expires, generation)
        return principal

    def _key_set_unchanged(self, generation: int | None) -> bool:
        if generation is None or self._provider is None:
            return True
        self._provider.refresh_if_stale()
        return generation == self._provider.generation

    async def _verify(self, token: str) -> tuple[Principal, float, int | None]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise UnauthenticatedError("The bearer token is malformed.") from None
        algorithm = header.get("alg")
        # Each key type accepts only its own algorithms, so "none" and HS256-signed-with-a-public-key
        # (algorithm confusion) never verify.
        generation: int | None = None
        if algorithm == "HS256" and self._secret is not None:
            key: object = self._secret
            algorithms = ["HS256"]
        elif algorithm in ASYMMETRIC_ALGORITHMS and self._provider is not None:
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise UnauthenticatedError("The bearer token names no signing key.")
            key, generation = await self._provider.find(kid)
            if key is None:
                raise UnauthenticatedError("The bearer token's signing key is not available.")
            algorithms = ASYMMETRIC_ALGORITHMS
        else:
            raise UnauthenticatedError("The bearer token's algorithm is not accepted.")
        try:
            claims = jwt.decode(
                token,
                key,  # type: ignore[arg-type]
                algorithms=algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthenticatedError("The bearer token has expired.") from None
        except jwt.PyJWTError:
            raise UnauthenticatedError("The bearer token is not valid.") from None
        expires = _numeric_dates(claims)["exp"]
        # Remembered until it expires (by the same leeway the check allows), never longer.
        return _principal(claims), expires + self._leeway, generation


def _numeric_dates(claims: dict[str, object]) -> dict[str, int]:
    """exp, iat and nbf as integers; UnauthenticatedError for one outside 1970..9999 (1e400 would overflow)."""
    dates = {}
    for name in ("exp", "iat", "nbf"):
        if name in claims:
            try:
                value = int(claims[name])  # type: ignore[call-overload]
            except (TypeError, ValueError, OverflowError):
                value = -1
            if not 0 <= value <= LAST_NUMERIC_DATE:
                raise UnauthenticatedError(f"The bearer token's {name} claim is not a valid time.")
            dates[name] = value
    return dates


def _principal(claims: dict[str, object]) -> Principal:
    subject, role = claims.get("sub"), claims.get("role", "student")
    if not isinstance(subject, str) or role not in ("student", "admin"):
        raise UnauthenticatedError("The bearer token's claims are not valid.")
    try:
        student_id = rules.normalize_email(subject)
    except InvalidInputError:
        raise UnauthenticatedError("The bearer token's subject is not an e-mail address.") from None
    return Principal(student_id=student_id, is_admin=role == "admin")
