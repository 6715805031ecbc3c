"""The administration documents of the Personalizer-compatible API, in Personalizer's JSON.

Service configuration, learning settings (policy), model and log properties, field for
field in Azure Personalizer's camelCase (v1.0 and 2022-09-01-preview). One
:class:`ServiceConfiguration` serves both versions: the preview only adds fields, so
the v1.0 answer is the same document without them (:func:`service_configuration_json`).

Durations: Personalizer's current clients send ISO 8601 (``PT10M``, ``P7D``), its
first ones .NET time spans (``00:10:00``, ``1.00:00:00``), and the Python SDK's own
docstring shows ``str(timedelta)`` (``1 day, 0:00:00``); all three are read, and the
answer is always the shortest ISO 8601 form.

>>> ServiceConfiguration.model_validate({"rewardWaitTime": "00:10:00"}).reward_wait_time
datetime.timedelta(seconds=600)
>>> iso_duration(timedelta(days=1, minutes=30))
'P1DT30M'
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
)
from pydantic.alias_generators import to_camel

from schemas.personalizer_evaluations import PolicyContract

__all__ = [
    "ApprenticeBatchMetrics",
    "ApprenticeModeMetrics",
    "DateRange",
    "Duration",
    "LearningMode",
    "LogsProperties",
    "ModelProperties",
    "PolicyContract",
    "ServiceConfiguration",
    "iso_duration",
    "parse_duration",
    "service_configuration_json",
]

# -- durations ---------------------------------------------------------------------------

_ISO: Final = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_TIMESPAN: Final = re.compile(
    r"^(?:(?P<days>\d+)(?:\.|\s+days?,\s*))?"
    r"(?P<hours>\d{1,2}):(?P<minutes>\d{2}):(?P<seconds>\d{2}(?:\.\d+)?)$"
)


def parse_duration(value: object) -> timedelta:
    """A duration from ISO 8601, a .NET time span or ``str(timedelta)``.

    Years and months are refused: their length depends on the calendar.

    >>> forms = ("PT5S", "P2D", "1.00:00:00", "2 days, 0:00:05")
    >>> [parse_duration(v).total_seconds() for v in forms]
    [5.0, 172800.0, 86400.0, 172805.0]
    >>> parse_duration("P1M")
    Traceback (most recent call last):
    ...
    ValueError: 'P1M' is not a duration: use ISO 8601 without years or months (e.g. PT10M, P1D)
    """
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("a duration must be a string such as PT10M")
    text = value.strip()
    found = _ISO.match(text.upper())
    if found and text.upper() not in ("P", "PT") and not text.upper().endswith("T"):
        parts = {k: float(v) for k, v in found.groupdict().items() if v is not None}
        return timedelta(**parts)
    found = _TIMESPAN.match(text)
    if found:
        parts = {k: float(v) for k, v in found.groupdict().items() if v is not None}
        return timedelta(**parts)
    raise ValueError(
        f"{value!r} is not a duration: use ISO 8601 without years or months (e.g. PT10M, P1D)"
    )


def iso_duration(value: timedelta) -> str:
    """The shortest ISO 8601 form Personalizer answers (``PT10M``, ``P7D``, ``PT0S``).

    >>> [iso_duration(timedelta(seconds=s)) for s in (0, 5, 600, 3600 * 4, 90.5)]
    ['PT0S', 'PT5S', 'PT10M', 'PT4H', 'PT1M30.5S']
    """
    total = value.total_seconds()
    sign = "-" if total < 0 else ""
    micros = round(abs(total) * 1_000_000)
    days, micros = divmod(micros, 86_400_000_000)
    hours, micros = divmod(micros, 3_600_000_000)
    minutes, micros = divmod(micros, 60_000_000)
    seconds = micros / 1_000_000
    date = f"{days}D" if days else ""
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if seconds:
        time += f"{seconds:.6f}".rstrip("0").rstrip(".") + "S"
    if not date and not time:
        return "PT0S"
    return f"{sign}P{date}" + (f"T{time}" if time else "")


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(iso_duration, return_type=str, when_used="json-unless-none"),
]
"""A Personalizer duration: read in any of its clients' forms, written as ISO 8601."""


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Time = Annotated[datetime, AfterValidator(_as_utc)]
Number = Annotated[float, AfterValidator(_finite)]
LearningMode = Literal["Online", "Apprentice", "LoggingOnly"]


class _Wire(BaseModel):
    """Personalizer's JSON: camelCase names, unknown fields ignored (clients send extras)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


# -- service configuration ---------------------------------------------------------------


class ApprenticeBatchMetrics(_Wire):
    """Apprentice counts of the newest model release alone (what its batch added)."""

    number_of_events: int
    sum_of_rewards: float
    sum_of_imitated_rewards: float
    number_of_imitated_events: int


class ApprenticeModeMetrics(_Wire):
    """How closely the learned policy imitates the baseline since apprentice mode began."""

    start_time: Time
    number_of_events: int
    sum_of_rewards: float
    sum_of_imitated_rewards: float
    number_of_imitated_events: int
    last_processed_event_time: Time
    last_batch_metrics: ApprenticeBatchMetrics | None = None


class ServiceConfiguration(_Wire):
    """``configurations/service``: the request of ``PUT`` and the answer of both verbs.

    Types only are checked here; ranges, the allowed aggregations and the preview's
    cross-field rules are checked by ``app.personalizer.service_config`` so that each
    refusal carries Personalizer's own error code. Fields the server owns
    (``lastConfigurationEditDate``, ``latestApprenticeModeMetrics``) are read and
    ignored in a request, since clients send back what ``GET`` answered.
    """

    reward_wait_time: Duration | None = None
    default_reward: Number | None = None
    reward_aggregation: Annotated[str, Field(max_length=256)] | None = None
    exploration_percentage: Number | None = None
    model_export_frequency: Duration | None = None
    log_mirror_enabled: bool | None = None
    log_mirror_sas_uri: str | None = None
    log_retention_days: int | None = None
    # 2022-09-01-preview only:
    model_retrain_days: int | None = None
    learning_mode: LearningMode | None = None
    is_auto_optimization_enabled: bool | None = None
    auto_optimization_frequency: Duration | None = None
    auto_optimization_start_date: Time | None = None
    last_configuration_edit_date: Time | None = None
    latest_apprentice_mode_metrics: ApprenticeModeMetrics | None = None


STABLE_REQUIRED: Final = (
    "rewardWaitTime",
    "defaultReward",
    "rewardAggregation",
    "explorationPercentage",
    "modelExportFrequency",
    "logRetentionDays",
)
"""What both versions require in a ``PUT`` (the preview adds ``modelRetrainDays``,
which defaults to 0 there: a missing one keeps the current value here)."""

STABLE_FIELDS: Final = frozenset({*STABLE_REQUIRED, "logMirrorEnabled", "logMirrorSasUri"})


def service_configuration_json(config: ServiceConfiguration, *, stable: bool) -> dict[str, Any]:
    """The answer's JSON: the v1.0 fields only under ``/v1.0``; absent values left out.

    >>> c = ServiceConfiguration(reward_wait_time=timedelta(minutes=10), learning_mode="Online")
    >>> service_configuration_json(c, stable=False)
    {'rewardWaitTime': 'PT10M', 'learningMode': 'Online'}
    >>> service_configuration_json(c, stable=True)
    {'rewardWaitTime': 'PT10M'}
    """
    data = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    if stable:
        data = {k: v for k, v in data.items() if k in STABLE_FIELDS}
    return data


# -- model and logs ----------------------------------------------------------------------


class ModelProperties(_Wire):
    """``GET model/properties``: when the served model's lineage began and last changed."""

    creation_time: Time | None = None
    last_modified_time: Time | None = None


class DateRange(BaseModel):
    """The first and last logged decision time."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    from_: Annotated[Time | None, Field(alias="from")] = None
    to: Time | None = None


class LogsProperties(_Wire):
    """``GET logs/properties``."""

    date_range: DateRange | None = None
