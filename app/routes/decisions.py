"""``/v1/decisions``: decide, then reward or activate a decision."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from app.api.auth import require_client_key
from app.api.deps import ClientKey, FeedbackDep, TraceParentDep
from app.api.json_body import body_schema, read_body
from app.decide import Decider
from learnloop.telemetry import extract_parent
from schemas.api import (
    ActivationAccepted,
    DecisionRequest,
    DecisionResponse,
    RewardAccepted,
    RewardRequest,
)

router = APIRouter(prefix="/v1/decisions", tags=["decisions"])

DecisionId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:\-]+$",
        description="The event_id a decision was answered with.",
    ),
]


@router.post(
    "",
    response_model=DecisionResponse,
    summary="Choose an action for a context",
    openapi_extra=body_schema(DecisionRequest),
)
async def decide(request: Request) -> Response:
    """Score the candidate actions, sample one, log the decision durably, answer.

    Idempotent per ``event_id``: sending the same ``event_id`` again returns the
    logged answer and writes nothing.
    """
    # The hot route does by hand what FastAPI's dependencies and body parameter would
    # (key check, body, trace parent, decider): the same answers and errors at half
    # the framework cost per request (see app/api/json_body.py).
    await require_client_key(request)
    body = await read_body(request, DecisionRequest)
    parent = extract_parent(request.headers) if "traceparent" in request.headers else None
    decider: Decider = request.app.state.decider
    decided = await decider.decide(body, parent)
    # The bytes of DecisionResponse's JSON, written directly: validating the answer
    # against response_model again and encoding it cost more than the decision itself.
    return Response(decided.response_json(), media_type="application/json")


@router.post(
    "/{event_id}/reward",
    status_code=202,
    dependencies=[ClientKey],
    response_model=RewardAccepted,
    summary="Post a reward value for a decision",
)
async def reward(
    event_id: DecisionId, body: RewardRequest, feedback: FeedbackDep, parent: TraceParentDep
) -> RewardAccepted:
    """Log a direct reward; it overrides the outcomes of the decision's window."""
    event = await feedback.reward(event_id, body, parent)
    return RewardAccepted(event_id=event.event_id, reward_id=event.reward_id)


@router.post(
    "/{event_id}/activate",
    status_code=202,
    dependencies=[ClientKey],
    response_model=ActivationAccepted,
    summary="Mark a deferred decision as shown",
)
async def activate(
    event_id: DecisionId, feedback: FeedbackDep, parent: TraceParentDep
) -> ActivationAccepted:
    """Activate a decision made with ``defer_activation``; repeating it is harmless."""
    event = await feedback.activate(event_id, parent)
    return ActivationAccepted(event_id=event.event_id)
