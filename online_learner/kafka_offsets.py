"""Which Kafka offsets the learner may resume at and commit: the bookkeeping, without I/O.

In Kafka mode a decision point's joined examples live in one partition of the
``joined`` topic, and :class:`~online_learner.learner.OnlineLearner` checks their
offsets within it. The Kafka runner (:mod:`online_learner.kafka_runner`) uses
this ledger to answer two questions:

- *where to resume a partition* (:func:`resume_offset`): after the smallest
  ``last_offset`` of the releases of its decision points, or at the committed
  offset when one of them has no release;
- *what to commit* (:meth:`OffsetLedger.to_commit`): the offset below which every
  example of the partition is in a published model, i.e. the smaller of the next
  offset to read and the first example of any decision point that was learned but
  not yet released. A crash therefore never skips an example a model lacks.

>>> ledger = OffsetLedger()
>>> ledger.assign(0, resume_from=10)
>>> ledger.read(0, 10); ledger.saw("home", 0); ledger.learned("home", 10)
>>> ledger.read(0, 11)
>>> ledger.to_commit()  # "home"@10 is only in memory
{0: 10}
>>> ledger.released("home"); ledger.to_commit()
{0: 12}
>>> ledger.committed({0: 12}); ledger.to_commit()
{}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def resume_offset(release_offsets: Iterable[int | None], committed: int | None) -> int:
    """The offset to resume a partition at.

    ``release_offsets`` holds, per decision point living in the partition, the
    ``last_offset`` of its current release, or ``None`` when it has none. With a
    release for each, resume after the smallest (every model skips what it holds);
    otherwise at the committed offset (below it, a decision point without a release
    has nothing learned: commits never pass an unreleased example), or at 0.

    >>> resume_offset([41, 17], committed=30)
    18
    >>> resume_offset([41, None], committed=30)
    30
    >>> resume_offset([], committed=None)
    0
    """
    offsets = list(release_offsets)
    if offsets and None not in offsets:
        return min(o for o in offsets if o is not None) + 1
    return committed if committed is not None else 0


@dataclass(slots=True)
class _Partition:
    resume_from: int  # offsets below it are replayed only to refill the event-id memory
    next_offset: int  # where committing may go: after the last record read, or resume_from
    position: int  # the next offset to read (replay included)
    committed: int | None = None  # what was last committed


class OffsetLedger:
    """Owned partitions, where each decision point lives, and what is only in memory."""

    def __init__(self) -> None:
        self._owned: dict[int, _Partition] = {}
        self._homes: dict[str, int] = {}  # decision point -> partition of its examples
        self._first_pending: dict[str, int] = {}  # first offset learned, not yet released

    @property
    def owned(self) -> list[int]:
        return sorted(self._owned)

    def owns(self, partition: int) -> bool:
        return partition in self._owned

    def assign(self, partition: int, resume_from: int, read_from: int | None = None) -> None:
        """Start owning ``partition``: read from ``read_from`` (default ``resume_from``),
        learn from ``resume_from`` on."""
        start = resume_from if read_from is None else min(read_from, resume_from)
        self._owned[partition] = _Partition(resume_from, resume_from, start)

    def position(self, partition: int) -> int:
        """The next offset to read in ``partition`` (where to seek after dropping a batch)."""
        return self._owned[partition].position

    def revoke_all(self) -> None:
        """Own nothing; forget what was only in memory (the learner is rebuilt)."""
        self._owned.clear()
        self._first_pending.clear()

    def is_replay(self, partition: int, offset: int) -> bool:
        """Whether ``offset`` was read only to refill the memory of event ids."""
        return offset < self._owned[partition].resume_from

    def read(self, partition: int, offset: int) -> None:
        """A record of ``partition`` at ``offset`` was processed."""
        owned = self._owned.get(partition)
        if owned is not None:
            owned.next_offset = max(owned.next_offset, offset + 1)
            owned.position = max(owned.position, offset + 1)

    def saw(self, decision_point: str, partition: int) -> int | None:
        """Note where ``decision_point`` lives; return its previous partition if it moved."""
        previous = self._homes.setdefault(decision_point, partition)
        self._homes[decision_point] = partition
        return previous if previous != partition else None

    def living_in(self, partition: int) -> set[str]:
        """Decision points whose examples were seen in ``partition``."""
        return {name for name, home in self._homes.items() if home == partition}

    def owns_decision_point(self, decision_point: str) -> bool:
        """Whether the partition of ``decision_point`` is owned (so this worker publishes it)."""
        return self._homes.get(decision_point) in self._owned

    def learned(self, decision_point: str, offset: int) -> None:
        """An example of ``decision_point`` at ``offset`` is in the live model only."""
        self._first_pending.setdefault(decision_point, offset)

    def released(self, decision_point: str) -> None:
        """Everything ``decision_point`` learned is in a published model."""
        self._first_pending.pop(decision_point, None)

    def to_commit(self) -> dict[int, int]:
        """Per owned partition, the offset safe to commit, where it moved forward."""
        out: dict[int, int] = {}
        for partition, owned in self._owned.items():
            safe = owned.next_offset
            for name, first in self._first_pending.items():
                if self._homes.get(name) == partition:
                    safe = min(safe, first)
            if owned.committed is None or safe > owned.committed:
                out[partition] = safe
        return out

    def committed(self, offsets: Mapping[int, int]) -> None:
        """``offsets`` (from :meth:`to_commit`) are committed."""
        for partition, offset in offsets.items():
            if partition in self._owned:
                self._owned[partition].committed = offset
