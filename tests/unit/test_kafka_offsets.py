"""Where the Kafka learner resumes and what it commits: never past an unreleased example."""

from __future__ import annotations

import pytest

from online_learner.kafka_offsets import OffsetLedger, resume_offset


@pytest.mark.parametrize(
    ("release_offsets", "committed", "expected"),
    [
        ([41, 17], 30, 18),  # every decision point released: after the smallest
        ([41, 17], None, 18),
        ([41, None], 30, 30),  # one without a release: the committed offset
        ([None], None, 0),  # ... or the beginning
        ([], 12, 12),  # nothing configured lives there
        ([], None, 0),
        ([-1], None, 0),  # a release that learned nothing yet
    ],
)
def test_resume_offset(
    release_offsets: list[int | None], committed: int | None, expected: int
) -> None:
    assert resume_offset(release_offsets, committed) == expected


def test_commit_waits_for_the_first_unreleased_example_of_any_decision_point() -> None:
    ledger = OffsetLedger()
    ledger.assign(0, resume_from=0)
    for offset, name in enumerate(["a", "b", "a", "b"]):
        ledger.read(0, offset)
        ledger.saw(name, 0)
        ledger.learned(name, offset)
    assert ledger.to_commit() == {0: 0}
    ledger.released("a")
    assert ledger.to_commit() == {0: 1}  # "b"@1 is still only in memory
    ledger.committed({0: 1})
    ledger.released("b")
    assert ledger.to_commit() == {0: 4}
    ledger.committed({0: 4})
    assert ledger.to_commit() == {}  # nothing new


def test_partitions_are_independent_and_revoking_forgets_memory_only_state() -> None:
    ledger = OffsetLedger()
    ledger.assign(0, resume_from=10, read_from=5)
    ledger.assign(1, resume_from=3)
    assert (ledger.position(0), ledger.is_replay(0, 7), ledger.is_replay(0, 10)) == (5, True, False)
    ledger.read(0, 11)
    ledger.saw("a", 0)
    ledger.learned("a", 11)
    ledger.read(1, 3)
    ledger.saw("b", 1)
    assert ledger.to_commit() == {0: 11, 1: 4}  # "a"@11 is only in memory
    assert ledger.owns_decision_point("a") and ledger.living_in(1) == {"b"}
    ledger.revoke_all()
    assert ledger.owned == [] and not ledger.owns_decision_point("a")
    ledger.assign(0, resume_from=12)
    assert ledger.to_commit() == {0: 12}  # "a"@11 was forgotten with the old learner
    assert ledger.living_in(0) == {"a"}  # where decision points live is kept


def test_a_decision_point_seen_in_another_partition_is_reported() -> None:
    ledger = OffsetLedger()
    assert ledger.saw("a", 0) is None
    assert ledger.saw("a", 0) is None
    assert ledger.saw("a", 2) == 0
