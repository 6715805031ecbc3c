"""Offline evaluations and feature importances of the Personalizer-compatible API.

Two families of models live here:

- the **wire models** of Azure Personalizer's REST API, field for field in its
  camelCase: the v1.0 ones (``EvaluationContract``, ``Evaluation`` with ``policyResults``
  and IPS/SNIPS sums) and the 2022-09-01-preview ones (``PreviewEvaluationContract``,
  ``PersonalizerEvaluation`` with ``content`` time series, ``FeatureImportance``, the
  paged lists, ``PolicyReferenceContract``). The two versions describe the same job
  very differently, so they are separate models rather than one with options;
- **one internal job document**, :class:`JobDocument` (snake_case, never sent as is):
  what the route stores when a job is created and what the job process
  (``runtime/personalizer_job_run.py``) fills in. ``app/personalizer/evaluation_views.py``
  renders it into either version's answer, so the job runs once whichever API asked.

Times are UTC; a time without an offset is read as UTC (Personalizer's clients send both).

>>> c = EvaluationContract.model_validate({"name": "e", "startTime": "2019-01-01T00:00:00Z",
...     "endTime": "2019-01-02T00:00:00", "policies": []})
>>> c.end_time.isoformat()
'2019-01-02T00:00:00+00:00'
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


def as_utc(value: datetime) -> datetime:
    """A time in UTC; one without an offset is taken to be UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Time = Annotated[datetime, AfterValidator(as_utc)]
Name = Annotated[str, Field(max_length=256)]


class _Wire(BaseModel):
    """Personalizer's JSON: camelCase names, unknown fields ignored (clients send extras)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


INPUT_FORMAT_ARGS = frozenset({"--dsjson", "--json"})
"""VW flags that name an input format, not a learning setting: Personalizer's learning
settings carry ``--dsjson`` (its log format); learnloop feeds VW text lines, and VW
given ``--dsjson`` would parse them as JSON."""


def learning_args(arguments: str) -> str:
    """Personalizer learning settings as learnloop's ``vw_args`` (input formats dropped).

    >>> learning_args("--cb_explore_adf --epsilon 0.2 --dsjson --cb_type ips")
    '--cb_explore_adf --epsilon 0.2 --cb_type ips'
    """
    return " ".join(w for w in arguments.split() if w not in INPUT_FORMAT_ARGS)


ONLINE_POLICY = "Online"
BASELINE_POLICY = "Baseline"
RANDOM_POLICY = "Random"
OPTIMIZED_POLICY = "Offline experimentation"
BUILT_IN_POLICIES = frozenset({ONLINE_POLICY, BASELINE_POLICY, RANDOM_POLICY, OPTIMIZED_POLICY})
"""The policies every evaluation reports beside the custom ones (a custom policy may not
take one of these names): what the loop logged, the first action, uniform random, and
what policy optimization found."""


# -- requests ----------------------------------------------------------------------------


class PolicyContract(_Wire):
    """A named set of learning settings: VW command-line arguments."""

    name: Name
    arguments: Annotated[str, Field(max_length=1024)]


class EvaluationContract(_Wire):
    """v1.0 ``POST /evaluations``: the server chooses the id."""

    name: Name
    start_time: Time
    end_time: Time
    policies: list[PolicyContract]
    enable_offline_experimentation: bool = False


class PreviewEvaluationContract(_Wire):
    """2022-09-01-preview ``PUT /evaluations/{id}``: the flag is renamed."""

    name: Name
    start_time: Time
    end_time: Time
    policies: list[PolicyContract]
    enable_policy_optimization: bool = False


class FeatureImportanceContract(_Wire):
    """2022-09-01-preview ``PUT /featureImportances/{id}``."""

    name: Name
    start_time: Time
    end_time: Time


class PolicyReferenceContract(_Wire):
    """``POST /configurations/applyFromEvaluation``: which evaluated policy to adopt."""

    evaluation_id: Name
    policy_name: Name


# -- the internal job document --------------------------------------------------------------

JobStatus = Literal[
    "running",
    "succeeded",
    "failed",
    "timeout",
    "canceled",
    "optimal_policy_applied",
    "online_policy_retained",
]
"""A job's state. An ``Auto`` evaluation that finished ends in one of the last two (it
applied the settings it found, or kept the online ones) instead of ``succeeded``."""


def succeeded(status: JobStatus) -> bool:
    """Whether the job finished with a result (a manual or an automatic evaluation).

    >>> succeeded("online_policy_retained"), succeeded("failed")
    (True, False)
    """
    return status in ("succeeded", "optimal_policy_applied", "online_policy_retained")


PolicySource = Literal["Online", "Baseline", "Random", "Custom", "OfflineExperimentation"]
JobKindName = Literal["evaluation", "feature_importance"]


class SeriesPoint(BaseModel):
    """A cumulative estimate after the first ``n`` activated decisions (up to ``time``)."""

    time: datetime
    n: int
    value: float
    half_width: float
    """Half the 95 % interval; see ``runtime/personalizer_job_run.py`` for how it is
    carried from the final interval back to earlier points."""


class PolicyOutcome(BaseModel):
    """One evaluated policy: the primary estimate (SNIPS) with its 95 % interval, IPS,
    and the estimate over time."""

    name: str
    arguments: str
    source: PolicySource
    slot_id: str | None = None
    """The slot of a multi-slot loop this result is for; ``None``: all decisions."""
    value: float | None
    lower: float | None
    upper: float | None
    ips: float | None = None
    weight_sum: float | None = None
    """Sum of the importance weights (SNIPS' denominator), where it is known."""
    n: int = 0
    series: list[SeriesPoint] = Field(default_factory=list)


class FeatureScoreDoc(BaseModel):
    """One context feature's importance: the policy's loss without it (``drop``, with its
    interval) and that loss scaled to 0..1 against the largest (``score``)."""

    namespace: str
    feature_name: str
    score: float
    drop: float
    lower: float
    upper: float


class JobDocument(BaseModel):
    """What is stored under ``(loop, kind, id)``; see the module docstring."""

    model_config = ConfigDict(extra="ignore")

    id: str
    kind: JobKindName
    name: str
    start_time: Time
    end_time: Time
    creation_time: Time
    job_id: str
    """v1.0's ``jobId`` (the job run's own id)."""
    online_arguments: str = ""
    """The loop's learning settings when the job was created: the ``Online`` policy's."""
    policies: list[PolicyContract] = Field(default_factory=list)
    optimize: bool = False
    evaluation_type: Literal["Manual", "Auto"] = "Manual"
    status: JobStatus = "running"
    error_code: str | None = None
    message: str | None = None
    pid: int | None = None
    host: str | None = None
    started: Time | None = None
    heartbeat: Time | None = None
    finished: Time | None = None
    n: int = 0
    """Activated decisions the job evaluated."""
    first_event: Time | None = None
    last_event: Time | None = None
    results: list[PolicyOutcome] = Field(default_factory=list)
    optimal_policy: str | None = None
    """The name of the policy the evaluation recommends (``applyFromEvaluation`` takes it)."""
    feature_scores: list[FeatureScoreDoc] = Field(default_factory=list)


# -- v1.0 answers ------------------------------------------------------------------------

V1Status = Literal["completed", "pending", "failed", "notSubmitted"]


class PolicyResultSummary(_Wire):
    time_stamp: datetime
    ips_estimator_numerator: float
    ips_estimator_denominator: float
    snips_estimator_denominator: float
    aggregate_time_window: str = "PT0S"
    confidence_interval: float


class V1PolicyResult(_Wire):
    name: str
    arguments: str
    summary: list[PolicyResultSummary] | None = None
    total_summary: PolicyResultSummary | None = None


class Evaluation(_Wire):
    """v1.0's evaluation (``GET /v1.0/evaluations/{id}``, and each item of the list)."""

    id: str
    name: str
    start_time: datetime
    end_time: datetime
    job_id: str
    status: V1Status
    policy_results: list[V1PolicyResult]
    feature_importance: list[list[str]] = Field(default_factory=list)


# -- 2022-09-01-preview answers -------------------------------------------------------------

PreviewStatus = Literal[
    "Succeeded",
    "Running",
    "Failed",
    "NotSubmitted",
    "Timeout",
    "OptimalPolicyApplied",
    "OnlinePolicyRetained",
    "Canceled",
]


class Summary(_Wire):
    expected_reward: float
    confidence_interval: list[float]


class Data(_Wire):
    time_stamp: datetime
    expected_reward: float
    confidence_interval: list[float]


class TimeSeries(_Wire):
    data: list[Data]


class PreviewPolicyResult(_Wire):
    name: str
    slot_id: str | None = None
    arguments: str
    policy_source: PolicySource
    summary: Summary | None = None
    timeseries: TimeSeries


class EvaluationResult(_Wire):
    start_time: datetime
    end_time: datetime
    interval_in_minutes: int
    value: list[PreviewPolicyResult]


class EvaluationDetails(_Wire):
    """An item of the preview's evaluation list."""

    id: str
    name: str
    start_time: datetime
    end_time: datetime
    creation_time: datetime
    status: PreviewStatus
    evaluation_type: Literal["Manual", "Auto"]


class PersonalizerEvaluation(EvaluationDetails):
    """The preview's ``GET /evaluations/{id}``."""

    optimal_policy: str | None = None
    description: str | None = None
    content: EvaluationResult | None = None


class Evaluations(_Wire):
    value: list[EvaluationDetails]
    next_link: str | None = None


class FeatureScore(_Wire):
    namespace: str
    feature_name: str
    score: float


class FeatureImportanceDetails(_Wire):
    id: str
    name: str
    start_time: datetime
    end_time: datetime
    creation_time: datetime
    status: Literal["Succeeded", "Running", "Failed", "NotSubmitted", "Timeout", "Canceled"]


class FeatureImportance(FeatureImportanceDetails):
    feature_scores: list[FeatureScore] = Field(default_factory=list)
    description: str | None = None


class FeatureImportances(_Wire):
    value: list[FeatureImportanceDetails]
    next_link: str | None = None
