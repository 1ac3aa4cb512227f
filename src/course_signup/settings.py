"""Settings: the only module that reads the environment and the optional YAML file."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

CONFIG_ENV = "COURSE_SIGNUP_CONFIG"
ENV_PREFIX = "COURSE_SIGNUP_"
SUPPORTED_SCHEMES = ("postgresql+asyncpg", "sqlite+aiosqlite")
# The schemes libpq, Heroku and most hosting panels hand out; they mean PostgreSQL, which we reach through asyncpg.
POSTGRES_ALIASES = ("postgres", "postgresql")


class Settings(BaseSettings):
    """All configuration; COURSE_SIGNUP_* variables win over the YAML file."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    data_dir: Path = Path(".course-signup")
    database_url: str | None = None  # None: embedded SQLite under data_dir
    redis_url: str | None = None  # None: in-process cache and rate limits
    broker_url: str | None = None  # RabbitMQ; needed by ADMISSION=queue and by the event relay
    # Read-only endpoints go to these streaming replicas (comma-separated URLs); empty: the primary.
    database_replica_urls: Annotated[list[str], NoDecode] = []
    # A replica that may be further behind than this is skipped (its reads go to the primary).
    replica_max_lag_seconds: float = Field(5.0, gt=0, le=3600)
    # After a student's write, their reads go to the primary for this long (read your own writes);
    # at least replica_max_lag_seconds, so that the replica they return to holds the write.
    replica_read_your_writes_seconds: float = Field(5.0, ge=0, le=3600)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    # Proxies whose X-Forwarded-For is believed (client addresses feed the anonymous rate limit).
    forwarded_allow_ips: str = "127.0.0.1"

    auth_mode: Literal["jwt", "none"] = "jwt"
    jwt_secret: SecretStr | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = Field(30, ge=0, le=30)
    # An unknown `kid` re-fetches the key set at most this often (keys rotate; attackers spam kids).
    jwt_jwks_refresh_cooldown_seconds: float = Field(10.0, ge=0, le=3600)

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"

    # Database pool: a request that waits longer than pool_timeout for a connection
    # is answered 503 with Retry-After instead of queueing until the client gives up.
    # Sized for the concurrency one worker serves, with no overflow: an overflow connection is
    # closed again on return, so under steady load the pool kept opening and closing them, and
    # each open costs the database a new backend process (seen in a profile at 64 clients).
    db_pool_size: int = Field(25, ge=1, le=200)
    db_max_overflow: int = Field(0, ge=0, le=200)
    db_pool_timeout: float = Field(2.0, gt=0, le=60)

    # Concurrent sign-ups for one course in one process are admitted by one statement.
    batch_admission: bool = True

    # database: each sign-up and drop is decided and written by PostgreSQL (or SQLite) before the answer.
    # queue: decided atomically in Redis, handed to RabbitMQ (durable, confirmed) before the answer, and
    # written to the database by `course-signup worker`. Needs REDIS_URL and BROKER_URL.
    admission: Literal["database", "queue"] = "database"
    # Queue mode: admission messages go to this many queues by course (one active consumer each).
    queue_shards: int = Field(4, ge=1, le=64)
    # Queue mode: a decision whose publish is not confirmed in this time is undone and answered 503.
    queue_publish_timeout_seconds: float = Field(2.0, gt=0, le=30)
    # Queue mode: a decision still unconfirmed after this long (its API process died) is settled
    # by the worker's reconciler: a sign-up is released, a drop or promotion is published.
    queue_pending_seconds: float = Field(10.0, gt=0, le=600)
    # The worker writes at most this many admission messages per transaction.
    worker_batch_size: int = Field(500, ge=1, le=10_000)

    # serve: on SIGTERM, finish what is in flight and exit within this many seconds.
    shutdown_timeout: float = Field(20.0, gt=0, le=600)
    # serve: a request line and headers over this many bytes are refused (431) and the connection closed.
    max_header_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # serve: a request's headers must arrive within this many seconds of its first byte (or of the
    # connection opening), else 408 and the connection is closed: a slow client cannot hold it open.
    client_header_timeout_seconds: float = Field(10.0, gt=0, le=300)

    cache_ttl_seconds: float = Field(1.0, ge=0, le=1.0)  # API.md: other processes lag at most 1 s
    # With REDIS_URL, entries each process keeps in front of the shared ones (0: Redis only).
    cache_local_entries: int = Field(4096, ge=0, le=1_000_000)
    # A Redis command slower than this counts as a failure; after one, Redis is skipped for
    # redis_retry_seconds (answers come from the database), then one command probes it.
    redis_timeout_seconds: float = Field(0.025, gt=0, le=5)
    redis_retry_seconds: float = Field(1.0, gt=0, le=300)

    rate_limit_enabled: bool = False
    rate_limit_writes: str = "20/minute"  # per token subject on sign-up and drop
    rate_limit_anonymous: str = "600/minute"  # per client address on public endpoints

    cors_origins: list[str] = []
    max_body_bytes: int = 64 * 1024

    @field_validator("log_level", "log_format", "auth_mode", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("set but empty; unset it to use the embedded database")
        try:
            scheme = make_url(value).drivername
        except ArgumentError:
            raise ValueError("not a database URL (scheme://user:password@host:port/name)") from None
        if scheme in POSTGRES_ALIASES:
            return "postgresql+asyncpg" + value[value.index("://") :]
        if scheme not in SUPPORTED_SCHEMES:
            raise ValueError(
                f"unsupported scheme {scheme}://; use postgresql+asyncpg:// (postgres:// and "
                "postgresql:// mean the same) or sqlite+aiosqlite://"
            )
        return value

    @field_validator("database_replica_urls", mode="before")
    @classmethod
    def _split_replicas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_replica_urls")
    @classmethod
    def _supported_replicas(cls, value: list[str], info: ValidationInfo) -> list[str]:
        urls = [cls._supported_database(url) for url in value]
        if any(url is None or not url.startswith("postgresql") for url in urls):
            raise ValueError("replicas must be PostgreSQL URLs")
        primary = info.data.get("database_url", "postgresql")  # absent: its own error is reported
        if urls and (primary is None or primary.startswith("sqlite")):
            raise ValueError("replicas need a PostgreSQL primary in COURSE_SIGNUP_DATABASE_URL")
        return [url for url in urls if url is not None]

    @field_validator("replica_read_your_writes_seconds")
    @classmethod
    def _reads_return_to_a_replica_that_holds_the_write(cls, value: float, info: ValidationInfo) -> float:
        max_lag = info.data.get("replica_max_lag_seconds")
        if info.data.get("database_replica_urls") and max_lag is not None and value < max_lag:
            raise ValueError(
                f"must be at least COURSE_SIGNUP_REPLICA_MAX_LAG_SECONDS ({max_lag:g}): a student's reads "
                "go back to a replica when it runs out, and only a replica that lags less holds their write"
            )
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty HMAC key would sign tokens anyone can forge; unset means "generate one".
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("set but empty; set a long random value, or unset it to generate one")
        return value

    @model_validator(mode="after")
    def _queue_mode_complete(self) -> Settings:
        missing = self.missing_for_queue_mode()
        if missing:
            raise ValueError(f"queue admission needs {', '.join(missing)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @property
    def embedded(self) -> bool:
        """True when the database is the embedded SQLite file under data_dir."""
        return self.database_url is None

    @property
    def embedded_database(self) -> Path:
        return (self.data_dir / "course_signup.db").resolve()

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.embedded_database}"

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @property
    def queue_mode(self) -> bool:
        return self.admission == "queue"

    def missing_for_queue_mode(self) -> list[str]:
        """The settings ADMISSION=queue needs and does not have (empty when it can run)."""
        if not self.queue_mode:
            return []
        needed = {"COURSE_SIGNUP_REDIS_URL": self.redis_url, "COURSE_SIGNUP_BROKER_URL": self.broker_url}
        missing = [name for name, value in needed.items() if not value]
        if self.is_sqlite:
            missing.append("COURSE_SIGNUP_DATABASE_URL (PostgreSQL)")
        return missing


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    config_file = os.environ.get(CONFIG_ENV)
    if config_file and not Path(config_file).is_file():
        raise SystemExit(f"course-signup: config file not found: {config_file}")
    try:
        return Settings()
    except ValidationError as exc:
        raise SystemExit(f"course-signup: {describe(exc)}") from None


def describe(exc: ValidationError) -> str:
    """A validation failure as one line, naming each setting by its environment variable."""
    problems = []
    for error in exc.errors():
        name = ENV_PREFIX + str(error["loc"][0]).upper() if error["loc"] else "settings"
        problems.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)
