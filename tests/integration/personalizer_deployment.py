"""Shared helpers of the Personalizer integration tests: the real SDK against a real service.

A :class:`Deployment` is one running ``learnloop serve`` (embedded or ``--backend
kafka``) with an admin key and a client key; it hands out the unchanged
``azure-ai-personalizer`` clients for any loop (``/loops/{loop}/personalizer``, so each
test owns its loop and a mode change in one never leaks into another) and reads what
the service logged, from the embedded log or from the Kafka topics. Every Personalizer
loop here gets the shortest ``rewardWaitTime`` (5 s) first: a joined example then comes
out a few seconds after its rank, without pushing event time ahead of the wall clock
(a clock tick would, and every later rank would open an already-closed window).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
from azure.ai import personalizer as sdk
from azure.core.credentials import AzureKeyCredential

from learnloop.eventlog.base import Streams
from learnloop.eventlog.sqlite import SqliteEventLog
from learnloop.kafka.topics import TopicNames
from runtime.processes import ServiceProcess
from schemas.events import DecisionEvent, JoinedExample, RewardEvent
from tests.integration.kafka_topics import read_topic

if TYPE_CHECKING:  # the package's names are the patched classes; its stubs see the generated
    from azure.ai.personalizer._patch import PersonalizerAdministrationClient, PersonalizerClient

ADMIN_KEY = "personalizer-admin-key-0123456789abcdef"
CLIENT_KEY = "personalizer-client-key-0123456789abcdef"
WAIT = "PT5S"
WAIT_SECONDS = 5.0
SETTLE_SECONDS = 1.5

# Fast release cadence: the learner releases every few examples, the API swaps at once.
FAST_LOOP_ENV = {
    "LEARNLOOP_ADMIN_API_KEY": ADMIN_KEY,
    "LEARNLOOP_CLIENT_API_KEYS": json.dumps([CLIENT_KEY]),
    "LEARNLOOP_RELEASE_EVERY_EXAMPLES": "5",
    "LEARNLOOP_RELEASE_EVERY_SECONDS": "0.5",
    "LEARNLOOP_MODEL_SWAP_MIN_SECONDS": "0.1",
    "LEARNLOOP_MODEL_POLL_SECONDS": "0.1",
}

Reader = Callable[[str], Awaitable[list[bytes]]]
Json = MutableMapping[str, Any]
"""What the SDK answers (its ``JSON`` type)."""


def embedded_reader(data_dir: Path) -> Reader:
    """Read one stream of the embedded log (the service holds it; WAL allows a reader)."""

    async def read(stream: str) -> list[bytes]:
        log = SqliteEventLog(data_dir / "log")
        try:
            return [r.value for r in await log.read([stream], -1, 1_000_000)]
        finally:
            await log.close()

    return read


def kafka_reader(bootstrap: str, topic_prefix: str) -> Reader:
    """Read one stream's topic from the beginning (the distributed mode's log)."""
    names = TopicNames(topic_prefix)

    async def read(stream: str) -> list[bytes]:
        # A record's value is the event's JSON, as in the embedded log.
        return [value for _, _, _, value, _ in await read_topic(bootstrap, names.topic(stream))]

    return read


@dataclass
class Deployment:
    """One running service, its keys and where its log is read from."""

    service: ServiceProcess
    read: Reader
    configured: set[str] = field(default_factory=set)
    changed_at: float = 0.0

    @property
    def url(self) -> str:
        return self.service.url

    def endpoint(self, loop: str | None) -> str:
        """The SDK's endpoint: it appends ``/personalizer`` itself."""
        return self.url if loop is None else f"{self.url}/loops/{loop}"

    def client(self, loop: str | None, key: str = CLIENT_KEY) -> PersonalizerClient:
        found = sdk.PersonalizerClient(self.endpoint(loop), AzureKeyCredential(key))
        return cast("PersonalizerClient", found)

    def admin(self, loop: str | None, key: str = ADMIN_KEY) -> PersonalizerAdministrationClient:
        return sdk.PersonalizerAdministrationClient(self.endpoint(loop), AzureKeyCredential(key))

    def http(self, key: str = ADMIN_KEY) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key}, timeout=10.0)

    def loop(
        self, loop: str | None, **changes: Any
    ) -> tuple[PersonalizerClient, PersonalizerAdministrationClient]:
        """The two clients of a loop whose reward wait time is 5 s (set once, as a team
        would: read the configuration, change fields, write it back)."""
        admin = self.admin(loop)
        key = loop or ""
        if key not in self.configured:
            configure(admin, rewardWaitTime=WAIT)
            self.configured.add(key)
        if changes:
            configure(admin, **changes)
        self.changed_at = time.monotonic()
        return self.client(loop), admin

    def settle(self) -> None:
        """Wait until every process has read the last configuration change: the other
        API workers and the join re-read decision points every second (a rank before
        that could be served in the old mode, or joined with the old window)."""
        time.sleep(max(0.0, self.changed_at + SETTLE_SECONDS - time.monotonic()))

    # -- what the service logged ---------------------------------------------------------

    async def decisions(self, loop: str) -> list[DecisionEvent]:
        events = [DecisionEvent.model_validate_json(v) for v in await self.read(Streams.DECISIONS)]
        return [e for e in events if e.decision_point == loop]

    async def rewards(self) -> list[RewardEvent]:
        return [RewardEvent.model_validate_json(v) for v in await self.read(Streams.REWARDS)]

    async def joined(self, loop: str) -> list[JoinedExample]:
        examples = [JoinedExample.model_validate_json(v) for v in await self.read(Streams.JOINED)]
        return [e for e in examples if e.decision.decision_point == loop]

    async def wait_joined(
        self, loop: str, event_ids: set[str], timeout: float = 30.0
    ) -> dict[str, JoinedExample]:
        """The joined examples of these decisions, once all have come out (bounded: the
        examples found so far when time runs out)."""
        deadline = time.monotonic() + timeout
        while True:
            found = {e.event_id: e for e in await self.joined(loop) if e.event_id in event_ids}
            if set(found) >= event_ids or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.25)

    def model(self, loop: str) -> dict[str, Any]:
        """``GET /v1/models/{loop}``: the served model's version, examples learned, metrics."""
        with self.http(CLIENT_KEY) as http:
            response = http.get(f"/v1/models/{loop}")
            response.raise_for_status()
            found: dict[str, Any] = response.json()
            return found

    def wait_model(
        self, loop: str, ready: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        """The served model once ``ready`` says so (each API worker swaps on its own poll);
        the last one seen when time runs out."""
        deadline = time.monotonic() + timeout
        while not ready(found := self.model(loop)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return found

    def decisions_metric(self, loop: str) -> float:
        """The service's own count of the loop's decisions (``/metrics``, all workers)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10.0).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("learnloop_decisions_total{") and f'decision_point="{loop}"' in line:
                total += float(line.rpartition(" ")[2])
        return total


def configure(admin: PersonalizerAdministrationClient, **changes: Any) -> Json:
    """Read the service configuration, change some fields, write it back (what the
    Personalizer samples do); the configuration the service answered."""
    config = dict(admin.get_service_configuration())
    config.update(changes)
    return admin.update_service_configuration(config)


def error_code(exc: Exception) -> tuple[int | None, str | None]:
    """An SDK error's HTTP status and Personalizer error code (from the JSON body)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    try:
        body = response.json() if response is not None else None
    except ValueError:
        body = None
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    return status, code


def rank_body(kind: str, actions: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A rank request: the user's kind as context, one feature per action."""
    return {
        "contextFeatures": [{"user": {"kind": kind}}],
        "actions": [
            {"id": a, "features": [{"name": a, "shade": f"s{i % 2}"}]}
            for i, a in enumerate(actions or ["x", "y", "z"])
        ],
        **extra,
    }


@contextmanager
def embedded_deployment(
    root: Path, workers: int = 2, env: dict[str, str] | None = None
) -> Iterator[Deployment]:
    """``learnloop serve --workers N`` over ``root / "data"`` with the keys and the fast
    release cadence (``env`` adds to it); on exit it must have stopped cleanly, with no
    process crashed on the way (the supervisor would have restarted it unseen)."""
    log_file = root / "serve.log"
    service = ServiceProcess(
        root / "data", env=FAST_LOOP_ENV | (env or {}), log_file=log_file, workers=workers
    ).start()
    try:
        yield Deployment(service, embedded_reader(root / "data"))
        assert service.running, service.log_tail()
    finally:
        code = service.stop()
    assert code == 0, service.log_tail()
    log = log_file.read_text()
    assert "Traceback" not in log and "exited with code" not in log, log[-4000:]
