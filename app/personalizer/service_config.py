"""Personalizer's service configuration ⇄ a learnloop decision point plus a settings document.

Pure: no I/O, no web framework. The routes read the decision point, the settings
document (store kind ``settings``, key ``service``) and the newest releases, and this
module turns them into Personalizer's :class:`ServiceConfiguration`, or plans an update
into the two documents to write. Every refusal is planned before anything is written,
so a refused update changes nothing.

What maps where (``docs/personalizer.md`` has the table):

- ``rewardWaitTime`` → ``window_seconds``; ``defaultReward`` → ``default_reward``;
  ``rewardAggregation`` ``earliest``/``average`` → ``direct_aggregation`` ``first``/``mean``;
- ``explorationPercentage`` → the ``--epsilon`` of ``vw_args`` when the policy explores
  epsilon-greedily; under another explorer (``--squarecb``, ``--cover``, …) it is only
  kept in the settings document, because it has no meaning there;
- ``learningMode`` → ``learning_mode``;
- the rest (export frequency, log retention and mirror, retrain days, auto-optimization)
  only lives in the settings document: learnloop keeps them and answers them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from app.personalizer.errors import PersonalizerError
from app.personalizer.exploration import epsilon_of, explorer, with_epsilon
from schemas.config import DecisionPointConfig, DirectAggregation
from schemas.config import LearningMode as LoopMode
from schemas.personalizer_admin import (
    STABLE_REQUIRED,
    ApprenticeBatchMetrics,
    ApprenticeModeMetrics,
    LearningMode,
    ServiceConfiguration,
)

MIN_WAIT: Final = timedelta(seconds=5)
MAX_WAIT: Final = timedelta(days=2)  # DecisionPointConfig.window_seconds' limit too
INT32_MAX: Final = 2_147_483_647
_MODES: Final[dict[LearningMode, LoopMode]] = {
    "Online": "online",
    "Apprentice": "apprentice",
    "LoggingOnly": "logging",
}
_AGGREGATIONS: Final[dict[str, DirectAggregation]] = {
    "earliest": "first",
    "average": "mean",
    "latest": "latest",  # learnloop's own; answered for a loop configured that way
}


class ServiceSettings(BaseModel):
    """The settings document: what Personalizer configures and a decision point has not.

    Stored as JSON (``model_dump(mode="json")``); a missing document is all defaults.
    """

    model_config = ConfigDict(extra="ignore")

    model_export_frequency_seconds: float | None = None
    log_mirror_enabled: bool = False
    log_mirror_sas_uri: str | None = None
    log_retention_days: int = -1
    model_retrain_days: int = 0
    is_auto_optimization_enabled: bool = False
    auto_optimization_frequency_seconds: float | None = None
    auto_optimization_start_date: datetime | None = None
    last_configuration_edit_date: datetime | None = None
    policy_name: str | None = None
    """The ``name`` of the last ``PUT configurations/policy`` (the loop's name until then)."""
    exploration_percentage: float | None = None
    """Kept for a policy whose explorer is not epsilon-greedy (not applied there)."""
    apprentice_start_time: datetime | None = None
    apprentice_baseline: dict[str, float] = {}
    """The apprentice counters of the current release when apprentice mode was switched
    on: the metrics answered count from there (the learner's counters are lifelong)."""

    @classmethod
    def load(cls, document: dict[str, Any] | None) -> ServiceSettings:
        return cls.model_validate(document or {})

    def document(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def exploration_percentage(config: DecisionPointConfig, settings: ServiceSettings) -> float:
    """What ``explorationPercentage`` answers: the policy's epsilon, else the stored value."""
    if explorer(config.vw_args) == "epsilon":
        return epsilon_of(config.vw_args)
    if settings.exploration_percentage is not None:
        return settings.exploration_percentage
    return epsilon_of(config.vw_args)


# -- reading -----------------------------------------------------------------------------


def read_configuration(
    config: DecisionPointConfig,
    settings: ServiceSettings,
    *,
    export_every: timedelta,
    apprentice: ApprenticeModeMetrics | None = None,
) -> ServiceConfiguration:
    """The configuration Personalizer answers for a loop.

    ``export_every`` is what ``modelExportFrequency`` says until someone sets it: how
    often learnloop's learner really releases a model.
    """
    aggregation = {v: k for k, v in _AGGREGATIONS.items()}[config.direct_aggregation]
    mode = {v: k for k, v in _MODES.items()}[config.learning_mode]
    exported = settings.model_export_frequency_seconds
    auto_every = settings.auto_optimization_frequency_seconds
    return ServiceConfiguration(
        reward_wait_time=timedelta(seconds=config.window_seconds),
        default_reward=config.default_reward,
        reward_aggregation=aggregation,
        exploration_percentage=exploration_percentage(config, settings),
        model_export_frequency=export_every if exported is None else timedelta(seconds=exported),
        log_mirror_enabled=settings.log_mirror_enabled,
        log_mirror_sas_uri=settings.log_mirror_sas_uri,
        log_retention_days=settings.log_retention_days,
        model_retrain_days=settings.model_retrain_days,
        learning_mode=mode,
        is_auto_optimization_enabled=settings.is_auto_optimization_enabled,
        auto_optimization_frequency=None if auto_every is None else timedelta(seconds=auto_every),
        auto_optimization_start_date=settings.auto_optimization_start_date,
        last_configuration_edit_date=settings.last_configuration_edit_date,
        latest_apprentice_mode_metrics=apprentice,
    )


# -- updating ----------------------------------------------------------------------------


def _refuse(code: str, message: str, *, stable: bool) -> PersonalizerError:
    """v1.0 knows only the general code; the preview has one per rule."""
    return PersonalizerError(400, "InvalidServiceConfiguration" if stable else code, message)


def plan_update(
    config: DecisionPointConfig,
    settings: ServiceSettings,
    wanted: ServiceConfiguration,
    *,
    stable: bool,
    now: datetime,
    apprentice_counters: dict[str, float] | None = None,
) -> tuple[DecisionPointConfig, ServiceSettings]:
    """The decision point and settings document after ``PUT configurations/service``.

    ``stable``: a v1.0 call, whose configuration has no preview fields (they keep their
    values). ``apprentice_counters``: the current release's ``apprentice_*`` metrics,
    the baseline of the answered metrics if this update switches apprentice mode on.
    Raises :class:`PersonalizerError` (400) for anything Personalizer refused.
    """
    sent = wanted.model_dump(by_alias=True, exclude_none=True)
    missing = [name for name in STABLE_REQUIRED if name not in sent]
    if missing:
        raise PersonalizerError(
            400,
            "InvalidServiceConfiguration",
            f"the service configuration must give {', '.join(missing)} "
            "(GET configurations/service answers a complete one to edit)",
        )
    assert wanted.reward_wait_time is not None and wanted.default_reward is not None
    assert wanted.reward_aggregation is not None and wanted.exploration_percentage is not None
    assert wanted.model_export_frequency is not None and wanted.log_retention_days is not None

    wait = wanted.reward_wait_time
    if not MIN_WAIT <= wait <= MAX_WAIT:
        raise _refuse(
            "InvalidRewardWaitTime",
            f"rewardWaitTime {wait.total_seconds():g} s is out of range: "
            "it must be between 5 seconds (PT5S) and 2 days (P2D)",
            stable=stable,
        )
    if not -1.0 <= wanted.default_reward <= 1.0:
        raise _refuse(
            "InvalidServiceConfiguration",
            f"defaultReward {wanted.default_reward:g} must be between -1 and 1",
            stable=stable,
        )
    aggregation = _AGGREGATIONS.get(wanted.reward_aggregation.strip().lower())
    if aggregation is None:
        raise _refuse(
            "InvalidServiceConfiguration",
            f"rewardAggregation {wanted.reward_aggregation!r} is not supported: "
            "use earliest or average",
            stable=stable,
        )
    if not 0.0 <= wanted.exploration_percentage <= 1.0:
        raise _refuse(
            "InvalidServiceConfiguration",
            f"explorationPercentage {wanted.exploration_percentage:g} must be between 0 and 1",
            stable=stable,
        )
    if wanted.model_export_frequency <= timedelta(0):
        raise _refuse(
            "InvalidServiceConfiguration",
            "modelExportFrequency must be a positive duration (e.g. PT5M)",
            stable=stable,
        )
    retention = wanted.log_retention_days
    least = math.ceil((wait + timedelta(days=1)) / timedelta(days=1))
    if retention > INT32_MAX or (retention != -1 and retention < least):
        raise _refuse(
            "InvalidLogRetentionDays",
            f"logRetentionDays {retention} must be -1 (keep forever) or at least {least} "
            "(rewardWaitTime plus one day, rounded up)",
            stable=stable,
        )

    mode = config.learning_mode
    retrain = settings.model_retrain_days
    auto = settings.is_auto_optimization_enabled
    auto_every = settings.auto_optimization_frequency_seconds
    auto_start = settings.auto_optimization_start_date
    if not stable:
        mode = _MODES[wanted.learning_mode] if wanted.learning_mode is not None else mode
        retrain = wanted.model_retrain_days if wanted.model_retrain_days is not None else 0
        if retrain < 0 or retrain > INT32_MAX or (retention != -1 and retrain > retention):
            raise _refuse(
                "InvalidModelRetrainDays",
                f"modelRetrainDays {retrain} must be between 0 and logRetentionDays",
                stable=stable,
            )
        if wanted.is_auto_optimization_enabled is not None:
            auto = wanted.is_auto_optimization_enabled
        if wanted.auto_optimization_frequency is not None:
            if wanted.auto_optimization_frequency <= timedelta(0):
                raise _refuse(
                    "InvalidServiceConfiguration",
                    "autoOptimizationFrequency must be a positive duration (e.g. P7D)",
                    stable=stable,
                )
            auto_every = wanted.auto_optimization_frequency.total_seconds()
        if wanted.auto_optimization_start_date is not None:
            auto_start = wanted.auto_optimization_start_date
        rewards_changed = (
            wait.total_seconds() != config.window_seconds
            or wanted.default_reward != config.default_reward
            or aggregation != config.direct_aggregation
        )
        if mode != config.learning_mode and rewards_changed:
            raise PersonalizerError(
                400,
                "InvalidLearningModeServiceConfiguration",
                "the learning mode cannot change in the same update as rewardWaitTime, "
                "defaultReward or rewardAggregation: send two updates",
            )

    vw_args = config.vw_args
    stored_exploration = settings.exploration_percentage
    if explorer(vw_args) == "epsilon":
        if wanted.exploration_percentage != epsilon_of(vw_args):
            vw_args = with_epsilon(vw_args, wanted.exploration_percentage)
        stored_exploration = None
    else:
        stored_exploration = wanted.exploration_percentage

    data = config.model_dump()
    data.update(
        vw_args=vw_args,
        window_seconds=wait.total_seconds(),
        default_reward=wanted.default_reward,
        direct_aggregation=aggregation,
        learning_mode=mode,
    )
    updated = DecisionPointConfig.model_validate(data)

    start = settings.apprentice_start_time
    baseline = settings.apprentice_baseline
    if mode == "apprentice" and config.learning_mode != "apprentice":
        start = now.astimezone(UTC)
        baseline = {
            k: v for k, v in (apprentice_counters or {}).items() if k.startswith("apprentice_")
        }
    new_settings = settings.model_copy(
        update={
            "model_export_frequency_seconds": wanted.model_export_frequency.total_seconds(),
            "log_mirror_enabled": bool(wanted.log_mirror_enabled),
            "log_mirror_sas_uri": wanted.log_mirror_sas_uri,
            "log_retention_days": retention,
            "model_retrain_days": retrain,
            "is_auto_optimization_enabled": auto,
            "auto_optimization_frequency_seconds": auto_every,
            "auto_optimization_start_date": auto_start,
            "last_configuration_edit_date": now.astimezone(UTC),
            "exploration_percentage": stored_exploration,
            "apprentice_start_time": start,
            "apprentice_baseline": baseline,
        }
    )
    return updated, new_settings


# -- apprentice metrics ------------------------------------------------------------------

_COUNTERS: Final = ("events", "imitated", "reward_sum", "imitated_reward_sum")


def _counts(metrics: dict[str, float] | None) -> dict[str, float]:
    metrics = metrics or {}
    return {name: float(metrics.get(f"apprentice_{name}", 0.0)) for name in _COUNTERS}


def _minus(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """``a - b``; a counter that went down (a lineage restarted) counts from zero."""
    if a["events"] < b["events"]:
        return dict(a)
    return {k: a[k] - b.get(k, 0.0) for k in a}


def _epoch(seconds: float) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None


def apprentice_metrics(
    config: DecisionPointConfig,
    settings: ServiceSettings,
    current: dict[str, float] | None,
    previous: dict[str, float] | None,
    *,
    now: datetime,
) -> ApprenticeModeMetrics | None:
    """``latestApprenticeModeMetrics`` from the current and the previous release's metrics.

    Counted since apprentice mode was switched on (the stored baseline); the last
    batch is what the current release added to the previous one. ``None`` when there
    is nothing to say: no apprentice events and the loop is not in apprentice mode.

    >>> from schemas.config import DecisionPointConfig
    >>> c = DecisionPointConfig(name="p", learning_mode="apprentice")
    >>> m = apprentice_metrics(c, ServiceSettings(), {"apprentice_events": 4.0,
    ...     "apprentice_imitated": 3.0, "apprentice_reward_sum": 2.0,
    ...     "apprentice_imitated_reward_sum": 1.5, "apprentice_first_event_time": 1.0e9,
    ...     "apprentice_last_event_time": 1.0e9 + 60}, {"apprentice_events": 1.0},
    ...     now=datetime(2026, 1, 1, tzinfo=UTC))
    >>> m.number_of_events, m.number_of_imitated_events, m.last_batch_metrics.number_of_events
    (4, 3, 3)
    """
    counts = _counts(current)
    if counts["events"] == 0 and config.learning_mode != "apprentice":
        return None
    total = _minus(counts, _counts(settings.apprentice_baseline))
    if total["events"] == 0 and config.learning_mode != "apprentice":
        return None
    batch = _minus(counts, _counts(previous)) if previous is not None else total
    metrics = current or {}
    start = (
        settings.apprentice_start_time
        or _epoch(metrics.get("apprentice_first_event_time", 0.0))
        or now.astimezone(UTC)
    )
    last = _epoch(metrics.get("apprentice_last_event_time", 0.0)) or start
    return ApprenticeModeMetrics(
        start_time=start,
        number_of_events=int(total["events"]),
        sum_of_rewards=total["reward_sum"],
        sum_of_imitated_rewards=total["imitated_reward_sum"],
        number_of_imitated_events=int(total["imitated"]),
        last_processed_event_time=last,
        last_batch_metrics=ApprenticeBatchMetrics(
            number_of_events=int(batch["events"]),
            sum_of_rewards=batch["reward_sum"],
            sum_of_imitated_rewards=batch["imitated_reward_sum"],
            number_of_imitated_events=int(batch["imitated"]),
        ),
    )
