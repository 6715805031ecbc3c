"""Fixtures that start real servers once per test session, and name one set of topics per test.

- ``redis_url`` — a ``redis-server`` on a free loopback port;
- ``kafka_bootstrap`` — the tansu Kafka-protocol broker on a free loopback port;
- ``topic_prefix`` / ``redis_prefix`` — uuid-based, so tests never see each other's data;
- ``kafka_settings`` — :class:`Settings` for the distributed mode against these servers,
  with tansu's quirks applied (no idempotent producer, one record per producer batch;
  see docs/distributed.md).

The servers start only when a test asks for them, and are stopped (terminate,
then kill) at the end of the session. A missing binary fails the tests: never skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from learnloop.settings import Settings
from tests.integration.servers import ServerProcess, ServerStartError, start_redis, start_tansu

# aiokafka puts every record into its own batch below this size: tansu then reports
# correct end offsets (it miscounts them for multi-record batches).
TANSU_MAX_BATCH_BYTES = 16


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    try:
        server = start_redis(tmp_path_factory.mktemp("redis"))
    except ServerStartError as exc:
        pytest.fail(f"cannot start redis-server for the integration tests: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    try:
        server = start_tansu(tmp_path_factory.mktemp("tansu"))
    except ServerStartError as exc:
        pytest.fail(
            f"cannot start the tansu broker for the integration tests: {exc}", pytrace=False
        )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: ServerProcess) -> str:
    return f"redis://{redis_server.address}/0"


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: ServerProcess) -> str:
    return kafka_broker.address


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic prefix per test: ``t<12 hex>.``."""
    return f"t{uuid.uuid4().hex[:12]}."


@pytest.fixture
def redis_prefix() -> str:
    """A fresh Redis key prefix per test: ``t<12 hex>:``."""
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def kafka_settings(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, redis_prefix: str
) -> Settings:
    """Distributed-mode settings against the test servers, with tansu's quirks applied."""
    return Settings(
        backend="kafka",
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        topic_prefix=topic_prefix,
        redis_prefix=redis_prefix,
        kafka_partitions=3,
        kafka_idempotence=False,
        kafka_max_batch_bytes=TANSU_MAX_BATCH_BYTES,
        connect_timeout_seconds=5.0,
    )
