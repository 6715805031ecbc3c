"""learnloop's Python client: decisions, outcomes and feature flags over HTTP, and an
OpenFeature provider (:class:`learnloop_client.openfeature.LearnloopProvider`).

It depends on httpx and openfeature-sdk only, never on the learnloop service, so a
front-end or back-end team installs just this package.
"""

from learnloop_client.client import AsyncLearnloopClient, LearnloopClient
from learnloop_client.errors import (
    AuthenticationError,
    Conflict,
    FlagNotFound,
    InvalidRequest,
    LearnloopError,
    NotFound,
    ProtocolError,
    ServerError,
    Unavailable,
)
from learnloop_client.models import (
    Context,
    Decision,
    FlagEvaluation,
    Outcome,
    OutcomesAccepted,
    RankedAction,
    RewardAccepted,
)

__all__ = [
    "AsyncLearnloopClient",
    "AuthenticationError",
    "Conflict",
    "Context",
    "Decision",
    "FlagEvaluation",
    "FlagNotFound",
    "InvalidRequest",
    "LearnloopClient",
    "LearnloopError",
    "NotFound",
    "Outcome",
    "OutcomesAccepted",
    "ProtocolError",
    "RankedAction",
    "RewardAccepted",
    "ServerError",
    "Unavailable",
]
