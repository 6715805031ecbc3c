"""How an automatic (``Auto``) evaluation ends: apply the optimized settings, or keep online.

:mod:`app.personalizer.auto_optimize` starts an ``Auto`` evaluation with policy
optimization; when its replay has succeeded, :func:`runtime.personalizer_job_run.run_job`
hands the job to :func:`settle`, in the job process. The optimized settings are applied
only when all of these hold, else the online ones are retained:

- the policy search found settings *significantly* better than the online ones on the
  held-out later part of the range (otherwise it reports none: the ``Offline
  experimentation`` result is missing), and
- over the whole range they are also the evaluation's optimal policy (the highest lower
  bound of the 95 % interval; the online policy wins ties), and
- the loop still has the learning settings the evaluation compared against (someone who
  changed them while the job ran made a newer decision than the job's).

Applying is what ``applyFromEvaluation`` does
(:func:`app.personalizer.evaluation_jobs.adopted`): the decision point's ``vw_args``
change, the learner starts a fresh model with them and every API worker serves it after
its next decision-point poll. The status ends ``optimal_policy_applied`` (preview
``OptimalPolicyApplied``) or ``online_policy_retained`` (``OnlinePolicyRetained``); the
description says why.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from app.personalizer.errors import PersonalizerError
from app.personalizer.evaluation_jobs import adopted
from learnloop.decision_points import DecisionPointStore
from learnloop.settings import Settings
from runtime.job_stores import open_decision_points
from schemas.personalizer_evaluations import JobDocument

log = logging.getLogger("learnloop.personalizer.auto")

Settle = Callable[[JobDocument, str], Awaitable[JobDocument]]
"""Ends a succeeded ``Auto`` job of a loop: the job with its final status."""


def _retained(job: JobDocument, why: str) -> JobDocument:
    job.status = "online_policy_retained"
    job.message = " ".join(p for p in (job.message, f"Online policy retained: {why}.") if p)
    return job


async def settle(job: JobDocument, loop: str, decision_points: DecisionPointStore) -> JobDocument:
    """Apply the optimized settings to the loop's decision point or retain the online
    ones (see the module docstring); the job with its final status and description."""
    found = [r for r in job.results if r.slot_id is None and r.source == "OfflineExperimentation"]
    if not found:
        return _retained(job, "the policy search found no settings significantly better")
    if job.optimal_policy != found[0].name:
        return _retained(
            job, f"over the whole range the best policy was {job.optimal_policy!r}, not the "
            "optimized settings",
        )  # fmt: skip
    config = await decision_points.get(loop)
    if config is None:
        return _retained(job, f"the loop {loop!r} no longer exists")
    if config.vw_args != job.online_arguments:
        return _retained(job, "the loop's learning settings changed while the evaluation ran")
    try:
        updated = adopted(config, found[0].name, found[0].arguments)
    except PersonalizerError as exc:
        return _retained(job, f"the optimized settings cannot be used: {exc.message}")
    if updated.vw_args == config.vw_args:
        return _retained(job, "the optimized settings are the online ones")
    await decision_points.put(updated)
    log.info("loop %s: automatic optimization applied %r", loop, updated.vw_args)
    job.status = "optimal_policy_applied"
    note = f"Optimal policy applied: vw_args were {config.vw_args!r}, now {updated.vw_args!r}."
    job.message = " ".join(p for p in (job.message, note) if p)
    return job


def settle_with(settings: Settings) -> Settle:
    """:func:`settle` over the decision-point store of ``settings`` (opened for it)."""

    async def run(job: JobDocument, loop: str) -> JobDocument:
        async with open_decision_points(settings) as decision_points:
            return await settle(job, loop, decision_points)

    return run


__all__ = ["Settle", "settle", "settle_with"]
