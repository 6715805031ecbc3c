"""Settings, read once at the edge (environment ``LEARNLOOP_*`` and CLI flags), frozen, passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEARNLOOP_", frozen=True, extra="ignore")

    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    config: Path | None = None
    backend: Literal["embedded", "kafka"] = "embedded"

    # Security: keys are optional in development, required in production.
    admin_api_key: SecretStr | None = None
    client_api_keys: tuple[SecretStr, ...] = ()

    # HTTP limits.
    max_body_bytes: int = 1024 * 1024
    max_future_seconds: float = 300.0

    # Observability.
    tracing: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str | None = None

    # Embedded event log group commit: at most this many records per fsync.
    log_batch_max: int = 512

    # Models: how often the decision service looks for a new release.
    model_poll_seconds: float = 0.2
    release_every_examples: int = 200
    release_every_seconds: float = 1.0

    # Distributed mode.
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "learnloop."
    redis_url: str = "redis://127.0.0.1:6379/0"

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Settings:
        if self.environment == "production" and self.admin_api_key is None:
            raise ValueError(
                "LEARNLOOP_ADMIN_API_KEY must be set when LEARNLOOP_ENVIRONMENT=production"
            )
        return self
