"""Bodies of the Azure Personalizer-compatible API (``/personalizer/...``): rank and events.

The JSON names are Personalizer's own (camelCase, as its REST specification
``2022-09-01-preview`` and ``v1.0`` spell them) so the ``azure-ai-personalizer``
SDK and hand-written clients work unchanged; the Python names are snake_case and
either is accepted (``populate_by_name``). Unknown fields are ignored rather than
refused, as Personalizer's own service did, so a client sending something newer
than this contract still ranks.

The models check shape only (types, required fields, the specification's
``maxLength``): a body failing them is a ``400 BadRequest``. What learnloop needs
beyond the specification (at most 50 actions, unique ids, ids that fit learnloop's
patterns, rewards within -1..1) is checked by :mod:`app.personalizer.rank` with
Personalizer's specific codes (``InvalidRankRequest``, ``InvalidRewardRequest``).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

MAX_ACTIONS: Final = 50
"""Personalizer's documented limit of actions per rank (and of slots per multi-slot rank)."""

PersonalizerId = Annotated[str, Field(max_length=256)]


class _Body(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class RankableAction(_Body):
    """One candidate: its id and its features (a list of JSON objects)."""

    id: PersonalizerId
    # The specification requires ``features``; an action sent without any ranks as
    # an action with no features rather than failing.
    features: list[Any] | None = None


class RankRequest(_Body):
    """``POST rank``: one context, the candidate actions, which ones to leave out."""

    context_features: list[Any] | None = Field(default=None, alias="contextFeatures")
    actions: list[RankableAction]
    excluded_actions: list[str] | None = Field(default=None, alias="excludedActions")
    event_id: PersonalizerId | None = Field(default=None, alias="eventId")
    defer_activation: bool | None = Field(default=False, alias="deferActivation")


class RankedAction(_Body):
    id: str
    probability: float


class RankResponse(_Body):
    """The ranking (chosen action first), the event id to reward, and the chosen id."""

    ranking: list[RankedAction]
    event_id: str = Field(alias="eventId")
    reward_action_id: str = Field(alias="rewardActionId")


class RewardRequest(_Body):
    """``POST events/{eventId}/reward``: the reward, from -1 to 1."""

    value: float


class SlotRequest(_Body):
    """One slot of a multi-slot rank: its id, features, exclusions and its own baseline."""

    id: Annotated[str, Field(min_length=1, max_length=256)]
    features: list[Any] | None = None
    excluded_actions: list[str] | None = Field(default=None, alias="excludedActions")
    baseline_action: str = Field(alias="baselineAction")


class MultiSlotRankRequest(_Body):
    """``POST multislot/rank``: one context, the actions, and the slots to fill in order."""

    context_features: list[Any] | None = Field(default=None, alias="contextFeatures")
    actions: list[RankableAction]
    slots: list[SlotRequest]
    event_id: PersonalizerId | None = Field(default=None, alias="eventId")
    defer_activation: bool | None = Field(default=False, alias="deferActivation")


class SlotResponse(_Body):
    id: str
    reward_action_id: str = Field(alias="rewardActionId")


class MultiSlotRankResponse(_Body):
    """The action chosen for each slot, in the request's slot order."""

    slots: list[SlotResponse]
    event_id: str = Field(alias="eventId")


class SlotReward(_Body):
    slot_id: Annotated[str, Field(min_length=1, max_length=256)] = Field(alias="slotId")
    value: float


class MultiSlotRewardRequest(_Body):
    """``POST multislot/events/{eventId}/reward``: a reward per slot."""

    reward: list[SlotReward]


ErrorCode = Literal[
    "BadRequest",
    "InvalidServiceConfiguration",
    "InvalidLearningModeServiceConfiguration",
    "InvalidPolicyConfiguration",
    "InvalidPolicyContract",
    "InvalidEvaluationContract",
    "InvalidContract",
    "DuplicateCustomPolicyNames",
    "NoLogsExistInDateRange",
    "LogsSizeExceedAllowedLimit",
    "InvalidRewardRequest",
    "InvalidEventIdToActivate",
    "InvalidRankRequest",
    "InvalidExportLogsRequest",
    "InvalidRequest",
    "InvalidSasUri",
    "InvalidModelMetadata",
    "ApprenticeModeNeverTurnedOn",
    "MissingAppId",
    "InvalidRewardWaitTime",
    "InvalidLogRetentionDays",
    "InvalidMultiSlotApiAccess",
    "PayloadSizeExceeded",
    "InvalidModelImportSignature",
    "InvalidModelImportFormat",
    "FeatureImportanceAlreadyExists",
    "EvaluationAlreadyExists",
    "InvalidModelRetrainDays",
    "InvalidApiAccess",
    "ModelFileAccessDenied",
    "ProblemTypeIncompatibleWithAutoOptimization",
    "ResourceNotFound",
    "FrontEndNotFound",
    "EvaluationNotFound",
    "FeatureImportanceNotFound",
    "LearningSettingsNotFound",
    "EvaluationModelNotFound",
    "LogsPropertiesNotFound",
    "RequestTimeout",
    "ModelRankingError",
    "InternalServerError",
    "ModelDownloadFailed",
    "RankNullResponse",
    "UpdateConfigurationFailed",
    "InferenceModelUpdateFailed",
    "ModelResetFailed",
    "ModelPublishFailed",
    "ModelMetadataUpdateFailed",
    "EvaluationsGetListFailed",
    "OperationNotAllowed",
]
"""The error codes of the ``2022-09-01-preview`` API, in the specification's order (v1.0's
18 codes are among them except ``InvalidContainer``, which the preview calls ``InvalidSasUri``)."""

ERROR_CODES: Final[tuple[str, ...]] = get_args(ErrorCode)


class PersonalizerErrorDetail(_Body):
    """The ``error`` object: a code clients branch on and a message people read."""

    code: str
    message: str
    target: str | None = None


class ErrorResponse(_Body):
    """Every Personalizer error body (the code is repeated in ``x-ms-error-code``)."""

    error: PersonalizerErrorDetail
