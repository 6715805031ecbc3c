"""Promotion: put a model trained offline into service (and, re-exported from the
kernel's :mod:`learnloop.rollback`, rollback to an earlier release).

:func:`warm_start` trains a model on a dataset with the chosen VW arguments;
:func:`promote` publishes it as the decision point's next release, sets the
decision point's ``vw_args`` to those arguments and writes an audit record;
:func:`rollback` republishes an earlier release's model bytes the same way. No
I/O here beyond the kernel stores passed in, so both modes share it: the
runtime (:mod:`runtime.releases`) passes the local stores or the Redis ones.

The order of the steps (publish, configure, audit) and why: :mod:`learnloop.rollback`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from pydantic import JsonValue

from learnloop.audit import AuditLog
from learnloop.decision_points import DecisionPointStore
from learnloop.errors import InvalidInput
from learnloop.modelstore.base import ModelStore
from learnloop.rollback import (
    check_vw_args,
    decision_point_config,
    new_audit_id,
    publish_next,
    rollback,
    with_vw_args,
)
from offline_learner.training import fit
from schemas.audit import DatasetReference, ModelAuditRecord
from schemas.events import JoinedExample, ModelRelease

__all__ = ["WarmStart", "promote", "rollback", "warm_start"]


@dataclass(frozen=True, slots=True)
class WarmStart:
    """A model trained offline, ready to promote, and what it was trained on."""

    model: bytes
    vw_args: str
    dataset: DatasetReference


def warm_start(
    examples: Iterable[JoinedExample],
    vw_args: str,
    *,
    decision_point: str | None = None,
    source: str = "",
    summary: Mapping[str, JsonValue] | None = None,
    progress: Callable[[int], None] | None = None,
) -> WarmStart:
    """Train a fresh model with ``vw_args`` on ``examples`` (in event order, activated
    only, as the online learner would), counting what it read on the way.

    Parameters
    ----------
    examples:
        Joined examples in event order (a ``Dataset``, a list, any iterable).
    decision_point:
        Learn only this decision point's examples (a dataset may hold several).
    source, summary:
        Where the examples came from and its summary, recorded in the audit record.
    """
    check_vw_args(vw_args)
    counts = _Counts()
    selected = counts.count(examples, decision_point)
    policy = fit(selected, vw_args, progress)
    try:
        model = policy.to_bytes()
    finally:
        policy.close()
    if counts.rows == 0:
        which = f" of decision point {decision_point!r}" if decision_point else ""
        raise InvalidInput(
            f"the dataset {source or ''} holds no examples{which}: nothing to train on; "
            "check the dataset path and --decision-point"
        )
    reference = DatasetReference(
        path=source,
        rows=counts.rows,
        examples_learned=counts.activated,
        start=counts.first,
        end=counts.last,
        summary=dict(summary or {}),
    )
    return WarmStart(model=model, vw_args=vw_args, dataset=reference)


class _Counts:
    """Rows, activated rows and the time span of what passes through :meth:`count`."""

    def __init__(self) -> None:
        self.rows = 0
        self.activated = 0
        self.first: datetime | None = None
        self.last: datetime | None = None

    def count(
        self, examples: Iterable[JoinedExample], decision_point: str | None
    ) -> Iterator[JoinedExample]:
        for example in examples:
            decision = example.decision
            if decision_point is not None and decision.decision_point != decision_point:
                continue
            self.rows += 1
            self.activated += decision.activated
            if self.first is None or decision.timestamp < self.first:
                self.first = decision.timestamp
            if self.last is None or decision.timestamp > self.last:
                self.last = decision.timestamp
            yield example


async def promote(
    store: ModelStore,
    decision_points: DecisionPointStore,
    audit: AuditLog,
    *,
    decision_point: str,
    warm: WarmStart,
    estimate: Mapping[str, JsonValue] | None,
    by: str,
    now: datetime,
) -> tuple[ModelRelease, ModelAuditRecord]:
    """Publish ``warm`` as the next release of ``decision_point``, make its ``vw_args`` the
    decision point's and audit it (the order is in the module docstring)."""
    config = await decision_point_config(decision_points, decision_point)
    updated = with_vw_args(config, warm.vw_args)
    audit_id = new_audit_id(decision_point, "promote")
    stored, previous = await publish_next(
        store,
        decision_point,
        warm.model,
        now,
        vw_args=updated.vw_args,
        examples_learned=warm.dataset.examples_learned,
        source="promotion",
        audit_id=audit_id,
    )
    await decision_points.put(updated)
    record = ModelAuditRecord(
        audit_id=audit_id,
        timestamp=now,
        action="promote",
        by=by,
        decision_point=decision_point,
        version=stored.version,
        previous_version=None if previous is None else previous.version,
        vw_args_before=config.vw_args,
        vw_args_after=updated.vw_args,
        dataset=warm.dataset,
        estimate=dict(estimate) if estimate is not None else None,
    )
    await audit.append(record)
    return stored, record
