"""Generate the JSON Schema files in ``schemas/json/`` from the pydantic models.

Run ``make schemas`` (``python -m schemas.export``) after changing a model; a test
fails while the committed files are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.api import (
    ActivationAccepted,
    DecisionRequest,
    DecisionResponse,
    HealthStatus,
    ModelInfo,
    OutcomeRequest,
    OutcomesAccepted,
    ReleaseHistory,
    RewardAccepted,
    RewardRequest,
    RollbackRequest,
)
from schemas.audit import ModelAuditRecord
from schemas.config import DecisionPointConfig, DecisionPointUpdate
from schemas.events import (
    ActivationEvent,
    DecisionEvent,
    JoinedExample,
    ModelRelease,
    OutcomeEvent,
    RewardEvent,
)
from schemas.flags import (
    Flag,
    FlagChange,
    FlagDefinition,
    FlagEvaluation,
    FlagEvaluationRequest,
    FlagsEvaluation,
)
from schemas.personas import PersonaModelRelease, SegmentModel, SegmentsFile
from schemas.profiles import PersonaLabel, ProfileUpdate, UserForgotten, UserProfile, UserView

JSON_DIR = Path(__file__).parent / "json"

MODELS: tuple[type[BaseModel], ...] = (
    DecisionRequest,
    DecisionResponse,
    OutcomeRequest,
    RewardRequest,
    OutcomesAccepted,
    RewardAccepted,
    ActivationAccepted,
    ModelInfo,
    ReleaseHistory,
    RollbackRequest,
    HealthStatus,
    DecisionEvent,
    OutcomeEvent,
    RewardEvent,
    ActivationEvent,
    JoinedExample,
    ModelRelease,
    ModelAuditRecord,
    DecisionPointConfig,
    DecisionPointUpdate,
    UserProfile,
    ProfileUpdate,
    UserView,
    PersonaLabel,
    UserForgotten,
    PersonaModelRelease,
    SegmentsFile,
    SegmentModel,
    FlagDefinition,
    Flag,
    FlagEvaluationRequest,
    FlagEvaluation,
    FlagsEvaluation,
    FlagChange,
)


def rendered() -> dict[str, str]:
    """File name -> JSON Schema text for every contract model."""
    return {
        f"{model.__name__}.schema.json": json.dumps(
            model.model_json_schema(), indent=2, sort_keys=True
        )
        + "\n"
        for model in MODELS
    }


def write(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(path)
    sys.exit(0)
