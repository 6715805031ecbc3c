"""The decide path's lighter types write exactly the contract's JSON, and its appends coalesce."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.decision_record import DecisionRecord
from app.event_ids import new_event_id
from app.event_writer import EventWriter
from app.metrics import ServiceMetrics
from app.pseudonyms import Pseudonyms, pseudonymize
from learnloop.errors import Unavailable
from learnloop.eventlog import MemoryEventLog, Streams
from learnloop.eventlog.base import Append, AppendResult
from learnloop.telemetry import Spans
from schemas.api import DecisionRequest, DecisionResponse, RankedAction
from schemas.dsjson import ranking_order
from schemas.events import DecisionEvent
from schemas.features import Action, Context

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# Each case: the request's context and actions as a client sends them (validated by the
# contract first, as on the real path), the policy's probabilities and the other fields.
CASES: list[dict[str, Any]] = [
    {"context": {}, "actions": [{"id": "a"}], "probabilities": [1.0], "chosen": 0},
    {
        "context": {"user_id": "u_ab12", "session_id": "s-1", "features": {"page": "home"}},
        "actions": [{"id": "a"}, {"id": "b", "features": {"price": 9.5, "sale": True}}],
        "probabilities": [0.3, 0.7],
        "chosen": 1,
    },
    {
        "context": {"features": {"hour": 9, "geo": {"region": "eu", "lat": 52.52}, "vip": False}},
        "actions": [{"id": "x", "features": {"n": 1e16, "tiny": 1e-7, "neg": -0.0}}],
        "probabilities": [1.0],
        "chosen": 0,
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "arm": "baseline",
        "activated": False,
    },
    {
        "context": {"features": {"text": 'quote " back \\ é ü 漢字 \u2028 \x01 </script>'}},
        "actions": [{"id": f"act-{i}"} for i in range(5)],
        "probabilities": [0.1, 1 / 3, 0.2 + 1e-12, 0.15, 0.2166666666666],
        "chosen": 3,
        "timestamp": T0 + timedelta(microseconds=123_456),
        "model_version": "17",
    },
    {
        "context": {"user_id": "u_1", "features": {"big": 123456789012345678.0, "e": 5e-324}},
        "actions": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
        "probabilities": [0.25, 0.5, 0.25],
        "chosen": 2,
        "timestamp": datetime(2026, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
    },
]


def _both(case: dict[str, Any]) -> tuple[DecisionRecord, DecisionEvent]:
    context = Context.model_validate(case["context"])
    actions = [Action.model_validate(a) for a in case["actions"]]
    fields = {
        "event_id": "e-1",
        "timestamp": case.get("timestamp", T0),
        "traceparent": case.get("traceparent"),
        "decision_point": "home_products",
        "persona": "visitor",
        "actions": actions,
        "chosen_index": case["chosen"],
        "probabilities": case["probabilities"],
        "model_version": case.get("model_version", "0"),
        "arm": case.get("arm", "learned"),
        "activated": case.get("activated", True),
    }
    record = DecisionRecord(
        user_id=context.user_id,
        session_id=context.session_id,
        features=context.features,
        **fields,
    )
    return record, DecisionEvent(context=context, **fields)


@pytest.mark.parametrize("case", CASES)
def test_logged_bytes_are_the_contracts_bytes(case: dict[str, Any]) -> None:
    record, event = _both(case)
    assert record.event_json() == event.model_dump_json().encode()
    assert DecisionEvent.model_validate_json(record.event_json()) == event


@pytest.mark.parametrize("case", CASES)
def test_answered_bytes_are_the_contracts_bytes(case: dict[str, Any]) -> None:
    record, event = _both(case)
    order = ranking_order(event.probabilities, event.chosen_index)
    expected = DecisionResponse(
        event_id=event.event_id,
        action_id=event.chosen_action,
        probability=event.chosen_probability,
        ranking=[
            RankedAction(id=event.actions[i].id, probability=event.probabilities[i]) for i in order
        ],
        model_version=event.model_version,
        persona=event.persona,
        arm=event.arm,
    )
    assert record.response_json() == expected.model_dump_json().encode()
    assert record.response() == expected


@pytest.mark.parametrize("case", CASES)
def test_a_replayed_event_gives_back_the_same_record_bytes(case: dict[str, Any]) -> None:
    record, _ = _both(case)
    again = DecisionRecord.from_event(DecisionEvent.model_validate_json(record.event_json()))
    assert again.event_json() == record.event_json()
    assert again.response_json() == record.response_json()


def test_request_contexts_go_into_the_log_unchanged() -> None:
    """On the real path the features come from a validated request: integers are floats."""
    request = DecisionRequest.model_validate(
        {"decision_point": "p", "context": {"features": {"hour": 9, "on": True}}}
    )
    assert request.context.features == {"hour": 9.0, "on": True}
    assert isinstance(request.context.features["hour"], float)


def test_event_ids_are_uuid4_hex_and_distinct() -> None:
    ids = [new_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:200]:
        parsed = uuid.UUID(hex=value)
        assert (parsed.hex, parsed.version, parsed.variant) == (value, 4, uuid.RFC_4122)


@pytest.mark.parametrize("user_id", ["alice", "bob@example.com", "漢字", "x" * 256])
def test_cached_pseudonyms_equal_the_hmac(user_id: str) -> None:
    pseudonyms = Pseudonyms(b"key", max_size=2)
    for _ in range(3):  # cold, cached, and after the cache started over
        assert pseudonyms.of(user_id) == pseudonymize(user_id, b"key")
        pseudonyms.of("other-1"), pseudonyms.of("other-2")


class _CountingLog(MemoryEventLog):
    """A memory log that records each append call and can be made to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []
        self.fail = False

    async def append(self, records: Sequence[Append]) -> list[AppendResult]:
        self.calls.append(len(records))
        await asyncio.sleep(0)  # like a real log: the append takes a loop turn or more
        if self.fail:
            raise Unavailable("disk full")
        return await super().append(records)


def _writer(log: _CountingLog) -> EventWriter:
    return EventWriter(log, Spans(None), ServiceMetrics())


def _decision(key: str) -> Append:
    return Append(stream=Streams.DECISIONS, value=key.encode(), key=key, unique_key=key)


def test_concurrent_appends_coalesce_and_each_caller_gets_its_own_result() -> None:
    log = _CountingLog()
    writer = _writer(log)

    async def run() -> list[AppendResult]:
        keys = [f"k{i}" for i in range(50)] + ["k3", "k7"]  # two duplicates of earlier keys
        return await asyncio.gather(*(writer.append_one(_decision(k)) for k in keys))

    results = asyncio.run(run())

    assert sum(log.calls) == 52 and len(log.calls) < 52 / 10  # few appends for many callers
    assert [r.value for r in results[:50]] == [f"k{i}".encode() for i in range(50)]
    assert [r.existed for r in results] == [False] * 50 + [True, True]
    assert results[50].offset == results[3].offset
    assert len({r.offset for r in results[:50]}) == 50


def test_a_failed_batch_fails_every_caller_in_it_and_the_next_batch_still_goes() -> None:
    log = _CountingLog()
    writer = _writer(log)

    async def run() -> tuple[list[object], AppendResult]:
        log.fail = True
        failed = await asyncio.gather(
            *(writer.append_one(_decision(f"k{i}")) for i in range(5)), return_exceptions=True
        )
        log.fail = False
        return failed, await writer.append_one(_decision("after"))

    failed, after = asyncio.run(run())

    assert all(isinstance(f, Unavailable) for f in failed)
    assert after.existed is False and after.value == b"after"


@pytest.mark.parametrize("callers", [1, 2, 3, 8])
def test_callers_that_append_again_at_once_are_never_left_waiting(callers: int) -> None:
    """Like decision callers in a loop: each appends again as soon as it is answered."""
    log = _CountingLog()
    writer = _writer(log)

    async def caller(k: int) -> int:
        for i in range(30):
            await writer.append_one(_decision(f"c{k}-{i}"))
        return k

    async def run() -> list[int]:
        running = asyncio.gather(*(caller(k) for k in range(callers)))
        return await asyncio.wait_for(running, timeout=30)  # a lost record hangs: fail instead

    assert asyncio.run(run()) == list(range(callers))
    assert sum(log.calls) == 30 * callers
