"""One stored job document, rendered as each Personalizer API version answers it (pure).

The job process writes one :class:`~schemas.personalizer_evaluations.JobDocument`; v1.0
and 2022-09-01-preview describe the same evaluation very differently (lowercase
``pending``/``completed`` with IPS/SNIPS sums, against PascalCase ``Running``/
``Succeeded`` with an expected reward, a ``[low, high]`` interval and a time series
aggregated on request). These functions make either shape; the routes only add I/O.

>>> from datetime import UTC, datetime
>>> t = datetime(2026, 1, 1, tzinfo=UTC)
>>> job = JobDocument(id="e", kind="evaluation", name="n", start_time=t, end_time=t,
...                   creation_time=t, job_id="j")
>>> v1_evaluation(job)["status"], preview_details(job)["status"]
('pending', 'Running')
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar
from urllib.parse import urlencode

from schemas.personalizer_evaluations import (
    Data,
    Evaluation,
    EvaluationDetails,
    EvaluationResult,
    FeatureImportance,
    FeatureImportanceDetails,
    FeatureScore,
    JobDocument,
    PersonalizerEvaluation,
    PolicyOutcome,
    PolicyResultSummary,
    PreviewPolicyResult,
    SeriesPoint,
    Summary,
    TimeSeries,
    V1PolicyResult,
)

STALE_HEARTBEAT_SECONDS: Final = 60.0
"""A running job beats every 5 s; one silent this long has lost its process."""
START_GRACE_SECONDS: Final = 120.0
"""A job whose process never recorded itself this long after creation never started."""
INTERVALS: Final = (5, 60, 360, 720, 1440)
"""The aggregation intervals (minutes) Personalizer offers for an evaluation's series."""
INT_MAX: Final = 2_147_483_647

_V1_STATUS: Final = {
    "running": "pending",
    "succeeded": "completed",
    "failed": "failed",
    "timeout": "failed",
    "canceled": "failed",
    "optimal_policy_applied": "completed",
    "online_policy_retained": "completed",
}
_PREVIEW_STATUS: Final = {
    "running": "Running",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "timeout": "Timeout",
    "canceled": "Canceled",
    "optimal_policy_applied": "OptimalPolicyApplied",
    "online_policy_retained": "OnlinePolicyRetained",
}


def _json(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


# -- liveness --------------------------------------------------------------------------------


def expired(job: JobDocument, now: datetime, timeout_seconds: float) -> JobDocument | None:
    """The job as it must now be recorded when it is ``running`` but cannot still be
    (ran past the time-out, lost its heartbeat, never started); ``None`` when it is fine.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> job = JobDocument(id="e", kind="evaluation", name="n", start_time=t, end_time=t,
    ...                   creation_time=t, job_id="j")
    >>> expired(job, t + timedelta(seconds=10), 3600) is None
    True
    >>> expired(job, t + timedelta(seconds=600), 3600).message
    'the job process never started'
    >>> expired(job, t + timedelta(hours=2), 3600).status
    'timeout'
    """
    if job.status != "running":
        return None
    began = job.started or job.creation_time
    update: dict[str, Any] | None = None
    if (now - began).total_seconds() > timeout_seconds:
        update = {
            "status": "timeout",
            "error_code": "RequestTimeout",
            "message": f"the job did not finish within {timeout_seconds:g} s",
        }
    elif job.heartbeat is None:
        if (now - job.creation_time).total_seconds() > START_GRACE_SECONDS:
            update = {"status": "failed", "message": "the job process never started"}
    elif (now - job.heartbeat).total_seconds() > STALE_HEARTBEAT_SECONDS:
        update = {
            "status": "failed",
            "message": f"the job process (pid {job.pid} on {job.host}) stopped answering",
        }
    if update is None:
        return None
    return job.model_copy(update={**update, "finished": now})


# -- v1.0 ------------------------------------------------------------------------------------


def _v1_summary(
    point_time: datetime, n: int, value: float, half: float, weights: float | None
) -> PolicyResultSummary:
    return PolicyResultSummary(
        time_stamp=point_time,
        ips_estimator_numerator=value * (weights if weights is not None else n),
        ips_estimator_denominator=float(n),
        snips_estimator_denominator=float(weights if weights is not None else n),
        confidence_interval=half,
    )


def _v1_result(outcome: PolicyOutcome, end: datetime) -> V1PolicyResult:
    summary = [
        _v1_summary(p.time, p.n, p.value, p.half_width, p.n * _weight_ratio(outcome))
        for p in outcome.series
    ]
    total = None
    if outcome.value is not None:
        half = _half(outcome)
        total = _v1_summary(end, outcome.n, outcome.value, half, outcome.weight_sum)
    return V1PolicyResult(
        name=outcome.name, arguments=outcome.arguments, summary=summary, total_summary=total
    )


def _weight_ratio(outcome: PolicyOutcome) -> float:
    """Mean importance weight (sum of weights per decision), carried to earlier points."""
    if outcome.weight_sum is None or not outcome.n:
        return 1.0
    return outcome.weight_sum / outcome.n


def _half(outcome: PolicyOutcome) -> float:
    if outcome.lower is None or outcome.upper is None:
        return 0.0
    half = (outcome.upper - outcome.lower) / 2
    return half if math.isfinite(half) else 0.0


def v1_evaluation(job: JobDocument) -> dict[str, Any]:
    """v1.0's ``Evaluation``: before results, the custom policies with their settings.

    ``snipsEstimatorDenominator`` is the sum of importance weights and
    ``ipsEstimatorNumerator`` the weighted reward sum, so ``numerator / snips
    denominator`` is the SNIPS estimate; ``confidenceInterval`` is its 95 % half-width.
    """
    if job.results:  # v1.0 had no multi-slot: the overall results only
        end = job.last_event or job.end_time
        results = [_v1_result(r, end) for r in job.results if r.slot_id is None]
    else:
        results = [V1PolicyResult(name=p.name, arguments=p.arguments) for p in job.policies]
    return _json(
        Evaluation(
            id=job.id,
            name=job.name,
            start_time=job.start_time,
            end_time=job.end_time,
            job_id=job.job_id,
            status=_V1_STATUS[job.status],
            policy_results=results,
            feature_importance=feature_tiers(job),
        )
    )


def feature_tiers(job: JobDocument) -> list[list[str]]:
    """v1.0's ``featureImportance`` (groups of feature names, most important first):
    features whose drop is significant, then the rest; empty without scores."""
    if not job.feature_scores:
        return []
    named = [
        (f"{s.namespace}.{s.feature_name}" if s.namespace else s.feature_name, s)
        for s in job.feature_scores
    ]
    strong = [name for name, s in named if s.lower > 0]
    rest = [name for name, s in named if not s.lower > 0]
    return [tier for tier in (strong, rest) if tier]


# -- 2022-09-01-preview -----------------------------------------------------------------------


def preview_details(job: JobDocument) -> dict[str, Any]:
    """An item of the preview's evaluation list."""
    return _json(_details(job))


def _details(job: JobDocument) -> EvaluationDetails:
    return EvaluationDetails(
        id=job.id,
        name=job.name,
        start_time=job.start_time,
        end_time=job.end_time,
        creation_time=job.creation_time,
        status=_PREVIEW_STATUS[job.status],
        evaluation_type=job.evaluation_type,
    )


def aggregate(
    series: Sequence[SeriesPoint],
    start: datetime,
    end: datetime,
    interval_minutes: int,
    window: str,
) -> list[Data]:
    """The points of ``[start, end]``, one per ``interval_minutes`` bucket (its last).

    ``Expanding`` (the default): the cumulative estimate at the bucket's end, as the
    replay measured it. ``Rolling``: the estimate over that bucket's decisions alone,
    recovered from two cumulative points (the mean of the decisions between them,
    exact for a weighted mean with the weights spread evenly); its interval widens as
    the bucket holds fewer decisions.
    """
    step = timedelta(minutes=interval_minutes)
    last_of: dict[int, SeriesPoint] = {}
    for point in series:
        if start <= point.time <= end:
            last_of[int((point.time - start) / step)] = point
    data: list[Data] = []
    previous: SeriesPoint | None = None
    kept = [last_of[k] for k in sorted(last_of)]
    for point in kept:
        value, half = point.value, point.half_width
        if window == "Rolling" and previous is not None and point.n > previous.n:
            value = (point.value * point.n - previous.value * previous.n) / (point.n - previous.n)
            half = point.half_width * math.sqrt(point.n / (point.n - previous.n))
        stamp = start + step * (int((point.time - start) / step) + 1)
        data.append(
            Data(
                time_stamp=min(stamp, end),
                expected_reward=value,
                confidence_interval=[value - half, value + half],
            )
        )
        previous = point
    return data


def preview_evaluation(
    job: JobDocument,
    start: datetime,
    end: datetime,
    interval_minutes: int = 5,
    window: str = "Expanding",
) -> dict[str, Any]:
    """The preview's ``Evaluation``, its series aggregated over ``[start, end]``."""
    content = None
    if job.results:
        value = []
        for r in job.results:
            summary = None
            if r.value is not None and r.lower is not None and r.upper is not None:
                summary = Summary(expected_reward=r.value, confidence_interval=[r.lower, r.upper])
            points = aggregate(r.series, start, end, interval_minutes, window)
            value.append(
                PreviewPolicyResult(
                    name=r.name,
                    slot_id=r.slot_id,
                    arguments=r.arguments,
                    policy_source=r.source,
                    summary=summary,
                    timeseries=TimeSeries(data=points),
                )
            )
        content = EvaluationResult(
            start_time=start, end_time=end, interval_in_minutes=interval_minutes, value=value
        )
    details = _details(job)
    return _json(
        PersonalizerEvaluation(
            **details.model_dump(),
            optimal_policy=job.optimal_policy,
            description=job.message,
            content=content,
        )
    )


def feature_importance_details(job: JobDocument) -> dict[str, Any]:
    return _json(_fi_details(job))


def _fi_details(job: JobDocument) -> FeatureImportanceDetails:
    return FeatureImportanceDetails(
        id=job.id,
        name=job.name,
        start_time=job.start_time,
        end_time=job.end_time,
        creation_time=job.creation_time,
        status=_PREVIEW_STATUS[job.status],
    )


def feature_importance(job: JobDocument) -> dict[str, Any]:
    """The preview's ``FeatureImportance``: scores 0..1, most important first."""
    return _json(
        FeatureImportance(
            **_fi_details(job).model_dump(),
            feature_scores=[
                FeatureScore(namespace=s.namespace, feature_name=s.feature_name, score=s.score)
                for s in job.feature_scores
            ],
            description=job.message,
        )
    )


# -- lists -------------------------------------------------------------------------------------

T = TypeVar("T")
_CLAUSE = re.compile(r"^\s*(\w+)\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)
_FILTERABLE: Final = {"evaluationtype": "evaluationType", "status": "status", "name": "name"}


def parse_filter(expression: str | None) -> list[tuple[str, str]]:
    """``field eq 'value'`` clauses joined by ``and`` (a ``metadata=`` prefix allowed), on
    ``evaluationType``, ``status`` or ``name``; :class:`ValueError` for anything else.

    >>> parse_filter("metadata=evaluationType eq 'Manual'")
    [('evaluationType', 'Manual')]
    """
    if expression is None or not expression.strip():
        return []
    text = expression.strip()
    if text.lower().startswith("metadata="):
        text = text[len("metadata=") :]
    clauses = []
    for part in re.split(r"\s+and\s+", text, flags=re.IGNORECASE):
        found = _CLAUSE.match(part)
        if found is None or found.group(1).lower() not in _FILTERABLE:
            raise ValueError(
                f"filter {expression!r} is not understood: use field eq 'value' (joined by "
                "and) on evaluationType, status or name"
            )
        clauses.append((_FILTERABLE[found.group(1).lower()], found.group(2)))
    return clauses


def matches(item: dict[str, Any], clauses: list[tuple[str, str]]) -> bool:
    return all(str(item.get(field, "")).lower() == value.lower() for field, value in clauses)


def page(
    items: Sequence[T],
    render: Callable[[T], dict[str, Any]],
    link: Callable[[dict[str, str]], str],
    *,
    top: int | None,
    skip: int,
    maxpagesize: int | None,
) -> dict[str, Any]:
    """``{value, nextLink}``: ``items[skip:]`` up to ``top`` in all, at most ``maxpagesize``
    (100 by default) per page; ``nextLink`` (absolute, made by ``link`` from its query
    parameters) asks for the rest, with ``top`` reduced and ``skip`` advanced."""
    total = INT_MAX if top is None else top
    size = 100 if maxpagesize is None else maxpagesize
    chosen = list(items[skip : skip + min(total, size)])
    out: dict[str, Any] = {"value": [render(i) for i in chosen]}
    remaining = total - len(chosen)
    if remaining > 0 and skip + len(chosen) < len(items):
        query = {"top": str(remaining), "skip": str(skip + len(chosen)), "maxpagesize": str(size)}
        out["nextLink"] = link(query)
    return out


def next_link(base_url: str, query: dict[str, str], keep: dict[str, str]) -> str:
    """``base_url`` with ``keep`` (``api-version``, ``filter``) and the paging ``query``."""
    return f"{base_url}?{urlencode({**keep, **query})}"
