"""Contracts between learnloop services: pydantic v2 models and their JSON Schemas.

This package imports nothing of ours; every other package imports it.
"""

from schemas.api import (
    DecisionRequest,
    DecisionResponse,
    OutcomeRequest,
    RankedAction,
    RewardRequest,
)
from schemas.config import Aggregation, DecisionPointConfig, DecisionPointUpdate
from schemas.events import (
    SCHEMA_VERSION,
    ActivationEvent,
    Arm,
    CloseReason,
    DecisionEvent,
    Event,
    JoinedExample,
    JoinInput,
    ModelRelease,
    OutcomeEvent,
    RewardEvent,
)
from schemas.features import Action, Context, FeatureMap

__all__ = [
    "SCHEMA_VERSION",
    "Action",
    "ActivationEvent",
    "Aggregation",
    "Arm",
    "CloseReason",
    "Context",
    "DecisionEvent",
    "DecisionPointConfig",
    "DecisionPointUpdate",
    "DecisionRequest",
    "DecisionResponse",
    "Event",
    "FeatureMap",
    "JoinInput",
    "JoinedExample",
    "ModelRelease",
    "OutcomeEvent",
    "OutcomeRequest",
    "RankedAction",
    "RewardEvent",
    "RewardRequest",
]
