"""``/v1/outcomes``: what shoppers did, one outcome or a batch."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import Discriminator, Field, Tag

from app.api.deps import ClientKey, FeedbackDep, TraceParentDep
from schemas.api import OutcomeRequest, OutcomesAccepted

router = APIRouter(prefix="/v1/outcomes", tags=["outcomes"], dependencies=[ClientKey])

MAX_BATCH = 1000


def _shape(value: Any) -> str:
    return "batch" if isinstance(value, list) else "one"


OutcomeBody = Annotated[
    Annotated[OutcomeRequest, Tag("one")]
    | Annotated[list[OutcomeRequest], Field(min_length=1, max_length=MAX_BATCH), Tag("batch")],
    Discriminator(_shape),
]


@router.post(
    "",
    status_code=202,
    response_model=OutcomesAccepted,
    summary="Report outcomes (one object or a list of up to 1000)",
)
async def post_outcomes(
    body: Annotated[OutcomeBody, Body()], feedback: FeedbackDep, parent: TraceParentDep
) -> OutcomesAccepted:
    """Log outcomes, all or nothing. ``duplicates`` counts retries of known ``outcome_id``s."""
    items = body if isinstance(body, list) else [body]
    result = await feedback.outcomes(items, parent)
    return OutcomesAccepted(accepted=result.accepted, duplicates=result.duplicates)
