"""Creating evaluation jobs and adopting evaluated learning settings, shared by their callers.

Three callers need the same rules and must not drift apart: the evaluation routes (a
client asks), the auto-optimization scheduler (:mod:`app.personalizer.auto_optimize`, no
request at all) and the job process itself when an ``Auto`` evaluation ends
(``runtime/personalizer_auto_apply.py``). So what a new job document holds, how it is
stored and launched, and how evaluated settings become the loop's ``vw_args`` live here,
with no web request in their signatures.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Final, Literal

from app.personalizer.errors import PersonalizerError
from app.personalizer.jobs import JobKind, JobLauncher
from learnloop.errors import InvalidInput
from learnloop.personalizer_store import PersonalizerStore
from learnloop.policy import VWPolicy
from learnloop.rollback import check_vw_args, with_vw_args
from schemas.config import DecisionPointConfig
from schemas.personalizer_evaluations import JobDocument, PolicyContract, learning_args

WHAT: Final = {"evaluation": "evaluation", "feature_importance": "feature importance"}


def check_learning_settings(name: str, arguments: str, code: str) -> str:
    """The settings as ``vw_args``, or ``400 code``: learnloop's rules for ``vw_args``
    (``--cb_explore_adf``, no files), then VW itself must accept them."""
    args = learning_args(arguments)
    try:
        check_vw_args(args)
    except InvalidInput as exc:
        raise PersonalizerError(400, code, f"policy {name!r}: {exc}") from None
    try:
        VWPolicy(args).close()
    except RuntimeError as exc:
        raise PersonalizerError(400, code, f"policy {name!r}: VW refused {args!r}: {exc}") from None
    return args


def adopted(config: DecisionPointConfig, name: str, arguments: str) -> DecisionPointConfig:
    """``config`` with the evaluated policy's settings as its ``vw_args`` (what
    ``applyFromEvaluation`` writes), or ``400 InvalidPolicyConfiguration``."""
    args = check_learning_settings(name, arguments, "InvalidPolicyConfiguration")
    try:
        return with_vw_args(config, args)
    except InvalidInput as exc:
        raise PersonalizerError(400, "InvalidPolicyConfiguration", str(exc)) from None


def new_job(
    config: DecisionPointConfig,
    kind: JobKind,
    job_id: str,
    *,
    name: str,
    start_time: datetime,
    end_time: datetime,
    now: datetime,
    policies: Sequence[PolicyContract] = (),
    optimize: bool = False,
    evaluation_type: Literal["Manual", "Auto"] = "Manual",
) -> JobDocument:
    """A ``running`` job over ``[start_time, end_time)``; its ``Online`` policy is the
    loop's ``vw_args`` now."""
    return JobDocument(
        id=job_id,
        kind=kind,
        name=name,
        start_time=start_time,
        end_time=end_time,
        creation_time=now,
        job_id=str(uuid.uuid4()),
        online_arguments=config.vw_args,
        policies=list(policies),
        optimize=optimize,
        evaluation_type=evaluation_type,
    )


def require_launcher(launcher: JobLauncher | None) -> JobLauncher:
    """The launcher, or ``503``: without one nothing would ever run the job."""
    if launcher is None:
        raise PersonalizerError(
            503,
            "InternalServerError",
            "this service runs no evaluation jobs (no job launcher is configured)",
        )
    return launcher


async def start_job(
    launcher: JobLauncher | None,
    store: PersonalizerStore,
    loop: str,
    job: JobDocument,
    exists_code: str,
) -> None:
    """Store the job (``409 exists_code`` if its id exists) and launch it (``503``,
    nothing kept, when it cannot start)."""
    running = require_launcher(launcher)
    if not await store.put_if_absent(loop, job.kind, job.id, job.model_dump(mode="json")):
        raise PersonalizerError(
            409, exists_code, f"{WHAT[job.kind]} {job.id!r} already exists in loop {loop!r}"
        )
    try:
        await running.launch(job.kind, loop, job.id)
    except Exception as exc:
        await store.delete(loop, job.kind, job.id)
        raise PersonalizerError(
            503, "InternalServerError", f"the {WHAT[job.kind]} job could not start: {exc}"
        ) from exc
