"""The Kafka runner's pure parts: arrival-order merge of the join inputs, and the
per-partition join with its offsets, checkpoint and idle advance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from join_service.arrival_merge import ArrivalMerge, InputRecord
from join_service.partition_join import PartitionJoin
from learnloop.eventlog.base import Streams
from schemas import DecisionEvent, OutcomeEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)
D, O, R, A = Streams.JOIN_INPUTS  # noqa: E741


def decision(n: int, at: float) -> DecisionEvent:
    return DecisionEvent(
        event_id=f"d{n}", timestamp=T0 + timedelta(seconds=at), decision_point="home",
        context={"session_id": f"s{n}"}, persona="visitor", actions=[{"id": "a"}],
        chosen_index=0, probabilities=[1.0], model_version="0",
    )  # fmt: skip


def outcome(n: int, at: float, kind: str = "basket_add") -> OutcomeEvent:
    return OutcomeEvent(
        outcome_id=f"o{n}-{at}", event_id=f"d{n}", type=kind, timestamp=T0 + timedelta(seconds=at)
    )


def rec(stream: str, offset: int, arrival_ms: int, event=None) -> InputRecord:  # type: ignore[no-untyped-def]
    return InputRecord(stream, offset, arrival_ms, event)


def caught_up_merge(**highwaters: int) -> ArrivalMerge:
    merge = ArrivalMerge(Streams.JOIN_INPUTS, max_wait_seconds=1.0)
    for stream in Streams.JOIN_INPUTS:
        merge.set_highwater(stream, highwaters.get(stream, 0))
    return merge


@pytest.mark.parametrize(
    ("pushed", "highwaters", "now", "released"),
    [
        # Everything fetched: released by arrival time, whatever the topic.
        ([rec(D, 0, 30), rec(O, 0, 10), rec(O, 1, 20)], {D: 1, O: 2}, 0.0, [10, 20, 30]),
        # The outcomes stream holds more at the broker: wait for it ...
        ([rec(D, 0, 30)], {D: 1, O: 1}, 0.5, []),
        # ... but not for ever when it delivers nothing.
        ([rec(D, 0, 30)], {D: 1, O: 1}, 1.0, [30]),
        # Ties on arrival: event time decides, then the stream order (decisions first).
        (
            [rec(O, 0, 10, outcome(1, 5.0)), rec(D, 0, 10, decision(1, 5.0))],
            {D: 1, O: 1},
            0.0,
            ["d1", "o1-5.0"],
        ),
    ],
)
def test_merge_releases_in_arrival_order_once_every_lagging_stream_is_read(
    pushed: list[InputRecord], highwaters: dict[str, int], now: float, released: list[object]
) -> None:
    merge = caught_up_merge(**highwaters)
    for record in pushed:
        merge.push(record, now=0.0)
    out = merge.pop_ready(now)
    names = [r.arrival_ms if r.event is None else getattr(r.event, "outcome_id", None)
             or r.event.event_id for r in out]  # fmt: skip
    assert names == released


def test_a_stream_that_keeps_delivering_is_waited_for() -> None:
    merge = caught_up_merge(decisions=1, outcomes=100)
    merge.push(rec(D, 0, 500), now=0.0)
    for offset in range(99):  # outcomes arrive steadily, each older than the decision
        merge.push(rec(O, offset, offset), now=0.1 * offset)
        released = merge.pop_ready(now=0.1 * offset + 0.05)
        assert all(r.stream == O for r in released)
    merge.push(rec(O, 99, 99), now=10.0)
    assert [r.stream for r in merge.pop_ready(now=10.0)][-1] == D
    assert merge.passed_over == 0


def test_merge_ignores_records_it_has_seen_and_counts_passed_over_ones() -> None:
    merge = ArrivalMerge(Streams.JOIN_INPUTS, max_wait_seconds=0.5, next_offsets={D: 5})
    merge.push(rec(D, 3, 1), now=0.0)  # below the resume offset: in the snapshot already
    assert len(merge) == 0
    merge.push(rec(D, 5, 1), now=0.0)
    merge.push(rec(D, 5, 1), now=0.0)  # delivered twice
    assert len(merge) == 1 and merge.next_offset(D) == 6
    assert merge.pop_ready(now=0.6) != [] and merge.passed_over == 1  # highwaters unknown


def test_partition_join_checkpoint_resumes_at_the_offsets_it_reflects() -> None:
    part = PartitionJoin(0, max_wait_seconds=1.0, now=0.0)
    for stream in Streams.JOIN_INPUTS:
        part.merge.set_highwater(stream, {D: 1, O: 1}.get(stream, 0))
    part.offer(rec(D, 0, 1, decision(1, 0.0)), now=0.0)
    part.offer(rec(O, 0, 2, outcome(1, 3.0)), now=0.0)
    assert part.step(now=0.0).consumed == {D: 1, O: 1}
    checkpoint = part.checkpoint()
    assert checkpoint.offsets == {D: 1, O: 1, R: 0, A: 0} and not part.dirty

    restored = PartitionJoin.restore(0, checkpoint, max_wait_seconds=1.0, now=5.0)
    restored.merge.set_highwater(D, 2)
    for stream in (O, R, A):
        restored.merge.set_highwater(stream, checkpoint.offsets[stream])
    restored.offer(rec(O, 0, 2, outcome(1, 3.0)), now=5.0)  # replayed: already joined
    restored.offer(rec(D, 1, 3, decision(2, 25.0)), now=5.0)  # closes d1's window
    output = restored.step(now=5.0)
    assert [(e.event_id, e.reward) for e in output.joined] == [("d1", 3.0)]
    assert output.consumed == {D: 1}


def test_an_idle_partition_advances_only_once_it_has_read_everything() -> None:
    part = PartitionJoin(0, max_wait_seconds=100.0, now=0.0)
    for stream in Streams.JOIN_INPUTS:
        part.merge.set_highwater(stream, 1 if stream == D else 0)
    part.offer(rec(D, 0, 1, decision(1, 0.0)), now=0.0)
    part.step(now=0.0)
    part.merge.set_highwater(O, 1)  # an outcome waits at the broker: not idle
    assert part.step(now=30.0).joined == []
    part.merge.set_highwater(O, 0)
    assert [e.event_id for e in part.step(now=30.0).joined] == ["d1"]  # idle 30 s >= window
