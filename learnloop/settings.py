"""Settings: read once at the edge (``LEARNLOOP_*`` environment, CLI flags), frozen, passed in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.features import NAME_PATTERN

# Public, so it protects nothing: production must set LEARNLOOP_PSEUDONYM_KEY.
DEVELOPMENT_PSEUDONYM_KEY = "learnloop-development-pseudonym-key"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEARNLOOP_", frozen=True, extra="ignore")

    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    config: Path | None = None
    backend: Literal["embedded", "kafka"] = "embedded"
    # API worker processes of `learnloop serve`; unset: see api_workers().
    workers: Annotated[int, Field(ge=1, le=256)] | None = None

    # Security: keys are optional in development, required in production.
    admin_api_key: SecretStr | None = None
    client_api_keys: tuple[SecretStr, ...] = ()
    # HMAC key that turns user ids into pseudonyms before they are logged. Changing it
    # breaks the link between old and new pseudonyms of the same user.
    pseudonym_key: SecretStr = SecretStr(DEVELOPMENT_PSEUDONYM_KEY)

    # HTTP limits.
    max_body_bytes: int = 1024 * 1024
    max_future_seconds: float = 300.0

    # Observability.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Prometheus /metrics of the join and learner workers (on LEARNLOOP_HOST); unset: none.
    # The API serves /metrics on its own port.
    metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    tracing: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str | None = None

    # Embedded event log group commit: at most this many records per fsync.
    log_batch_max: int = 512
    # How often the embedded join writes its state. Serialising it runs on the event
    # loop (~86 ms for 8,000 open windows), so not every second; after a crash the join
    # replays at most this much of the log (re-emitted examples are refused by key).
    join_checkpoint_seconds: float = 10.0

    # Models: how often the decision service looks for a new release (a manifest read).
    model_poll_seconds: float = 0.1
    # At most one hot swap per decision point in this many seconds (a first trained model
    # replaces an untrained one at once). Building a VW workspace holds the GIL for 4-9 ms,
    # stalling the requests in flight (once a second delays ~1.6 % of them at 1,000
    # decisions/s with 16 in flight, docs/benchmarks.md). Learning does not need more:
    # served models up to ~800 examples behind the learner kept parity with raw VW on
    # both simulated shops (docs/benchmarks.md, Learning).
    model_swap_min_seconds: float = 1.0
    # The learner releases every this many learned examples (cut exactly, whatever the
    # read batch), or after this long with any new example (quiet traffic).
    release_every_examples: int = 50
    release_every_seconds: float = 1.0

    # Personas (docs/personas.md). A logged-in user without a profile gets this persona.
    persona_default: Annotated[str, Field(pattern=NAME_PATTERN)] = "unclassified"
    # How often each API process pulls the profile change feed and looks for a new
    # persona model (both off the request path).
    persona_refresh_seconds: Annotated[float, Field(gt=0)] = 0.2
    # Which persona model answers: the CatBoost classifier, the river classifier that
    # learns from confirmed labels, or CatBoost with river answering where CatBoost is
    # absent or below persona_river_confidence and less sure than river (0.8: on the
    # simulated shop, a CatBoost of 50 labels with river at 450 labels scored macro-F1
    # 0.973 against CatBoost's 0.921; 0.5 gave 0.945; a CatBoost of 200 was never worse).
    persona_mode: Literal["catboost", "river", "catboost+river"] = "catboost"
    persona_river_confidence: Annotated[float, Field(ge=0, le=1)] = 0.8
    # Profiles each API process keeps in memory (least recently used out first) and
    # resolved personas it remembers per (user, profile version, context, model).
    persona_cache_profiles: Annotated[int, Field(ge=1)] = 200_000
    persona_cache_predictions: Annotated[int, Field(ge=1)] = 100_000

    # Feature flags (docs/flags.md): how often each API process checks the flag store's
    # change counter and reloads the flags it evaluates from memory. In the distributed
    # mode a change is also announced on Redis pub/sub; this stays the fallback.
    flag_refresh_seconds: Annotated[float, Field(gt=0, le=60)] = 0.2

    # The Azure Personalizer-compatible API (docs/personalizer.md): the decision point that
    # ``/personalizer/...`` serves (``/loops/{name}/personalizer/...`` serves another), and
    # how long an evaluation or feature-importance job may run before it counts as failed.
    personalizer_decision_point: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,128}$")] = (
        "personalizer"
    )
    personalizer_job_timeout_seconds: Annotated[float, Field(gt=0)] = 3_600.0
    # How often each API worker looks for loops whose automatic optimization is due
    # (isAutoOptimizationEnabled; app/personalizer/auto_optimize.py): a due run starts
    # at most this late. Only one worker or replica starts each run.
    personalizer_auto_check_seconds: Annotated[float, Field(gt=0)] = 60.0

    # Distributed mode.
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "learnloop."
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prefix of every Redis key and channel (unique-key index, models, decision points).
    redis_prefix: str = "learnloop:"
    # Partitions per topic (the join inputs must all have the same count) and replicas.
    kafka_partitions: Annotated[int, Field(ge=1)] = 6
    kafka_replication: Annotated[int, Field(ge=1)] = 1
    # Idempotent producer; tansu (the test broker) refuses it: set false there.
    kafka_idempotence: bool = True
    kafka_linger_ms: Annotated[int, Field(ge=0)] = 5
    # Producer batch size in bytes; tansu miscounts end offsets of multi-record batches,
    # so tests against it use a tiny value (one record per batch), see docs/distributed.md.
    kafka_max_batch_bytes: Annotated[int, Field(ge=1)] = 16384
    # Start-up: give up on an unreachable Kafka or Redis after this long.
    connect_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    # Redis connections per process; a request that finds them all busy waits for one
    # (at most connect_timeout_seconds) instead of failing.
    redis_max_connections: Annotated[int, Field(ge=2)] = 256
    # How long the Redis unique-key index remembers an appended record (idempotent retries).
    unique_key_ttl_seconds: Annotated[int, Field(ge=60)] = 7 * 24 * 3600
    # Consumer-group liveness of the join and learner workers: a killed worker's
    # partitions move to the survivors after about the session time-out.
    kafka_session_timeout_ms: Annotated[int, Field(ge=100)] = 10_000
    kafka_heartbeat_interval_ms: Annotated[int, Field(ge=50)] = 3_000
    # Kafka join worker: how often a changed partition is checkpointed to Redis and its
    # offsets committed (joined examples ship at once either way; a restart replays at
    # most this much), how often quiet partitions advance by the idle rule, and how long
    # a record may wait for a lagging input stream.
    join_worker_checkpoint_seconds: Annotated[float, Field(gt=0)] = 1.0
    join_worker_tick_seconds: Annotated[float, Field(gt=0)] = 0.2
    join_worker_max_wait_seconds: Annotated[float, Field(ge=0)] = 2.0
    # Model versions kept per decision point in the Redis model store.
    model_keep_versions: Annotated[int, Field(ge=2)] = 5

    def api_workers(self) -> int:
        """How many API worker processes ``learnloop serve`` runs: ``workers`` if set,
        else one per core, less one for the loop process in embedded mode (the join and
        learner are busy whenever traffic is; docs/benchmarks.md has the measurements).
        """
        if self.workers is not None:
            return self.workers
        cores = os.cpu_count() or 1
        return max(1, cores - 1) if self.backend == "embedded" else cores

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Settings:
        if self.environment == "production" and self.admin_api_key is None:
            raise ValueError(
                "LEARNLOOP_ADMIN_API_KEY must be set when LEARNLOOP_ENVIRONMENT=production"
            )
        return self

    @model_validator(mode="after")
    def _refuse_public_pseudonym_key(self) -> Settings:
        if (
            self.environment == "production"
            and self.pseudonym_key.get_secret_value() == DEVELOPMENT_PSEUDONYM_KEY
        ):
            raise ValueError(
                "LEARNLOOP_PSEUDONYM_KEY must be set to a secret value when "
                "LEARNLOOP_ENVIRONMENT=production (the development default is public, so "
                "logged user pseudonyms could be reversed by guessing user ids)"
            )
        return self


DEFAULTS = Settings.model_construct()
"""The settings as shipped, without reading the environment: where the constructors of
the runners and cores take their defaults for what a setting also configures
(release cadence, checkpoint interval), so each default is written once, above."""
