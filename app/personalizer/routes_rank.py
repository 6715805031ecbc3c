"""Personalizer's rank and events routes: ``rank``, ``events/{eventId}/reward|activate``
and, in the preview API only (v1.0 has none), their ``multislot/`` versions.

They need a client key. A reward is a learnloop direct reward (``RewardEvent``), an
activation learnloop's ``ActivationEvent``; both are refused with nothing logged when
the event is not a decision of this loop (404) or the reward is outside -1..1 (400).
Events name their loop without creating it: a reward sent to a mistyped loop is a 404,
not a new decision point.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Request, Response

from app.decide import Decider
from app.event_writer import EventWriter
from app.feedback import FeedbackRecorder
from app.personalizer import rank as ranking
from app.personalizer.deps import ClientKey, LoopName, ServingLoop
from app.personalizer.errors import PersonalizerError
from app.personalizer.log_span import note_ranked
from learnloop.eventlog.base import Streams
from schemas.api import RewardRequest as LearnloopReward
from schemas.personalizer import (
    MultiSlotRankRequest,
    MultiSlotRankResponse,
    MultiSlotRewardRequest,
    RankRequest,
    RankResponse,
    RewardRequest,
    SlotReward,
)

router = APIRouter(dependencies=[ClientKey], tags=["Rank", "Events"])
preview_router = APIRouter(dependencies=[ClientKey], tags=["MultiSlotRank", "MultiSlotEvents"])

_NO_CONTENT = 204
EventIdPath = Annotated[str, Path(alias="eventId")]


def _decider(request: Request) -> Decider:
    decider: Decider = request.app.state.decider
    return decider


def _feedback(request: Request) -> FeedbackRecorder:
    feedback: FeedbackRecorder = request.app.state.feedback
    return feedback


def _writer(request: Request) -> EventWriter:
    return _feedback(request).writer


def _check_value(value: float, where: str = "value") -> None:
    """Personalizer's rewards are -1..1 (NaN is no reward either)."""
    if not -1.0 <= value <= 1.0:
        raise PersonalizerError(
            400, "InvalidRewardRequest", f"{where} is {value!r}: a reward must be within -1 and 1"
        )


def _unknown(event_id: str, code: str = "ResourceNotFound") -> PersonalizerError:
    return PersonalizerError(
        404,
        code,
        f"no event {event_id[:128]!r} was ranked at this loop: use the eventId a rank "
        "answered (event ids are matched exactly, case-sensitively)",
    )


async def _is_decision(request: Request, loop: str, event_id: str) -> bool:
    """Whether ``event_id`` names a logged decision of this loop."""
    if not ranking.event_id_fits(event_id):
        return False
    stored = await _writer(request).find(Streams.DECISIONS, event_id)
    return stored is not None and orjson.loads(stored.value)["decision_point"] == loop


@router.post("/rank", status_code=201, response_model=RankResponse, response_model_by_alias=True)
async def rank(body: RankRequest, request: Request, loop: ServingLoop) -> RankResponse:
    """Rank the actions for a context: a learnloop decision."""
    response, decided_at = await ranking.rank(_decider(request), loop.name, body)
    await note_ranked(request, loop.name, decided_at)
    return response


@router.post("/events/{eventId}/reward", status_code=_NO_CONTENT, response_class=Response)
async def reward(
    event_id: EventIdPath, body: RewardRequest, request: Request, loop: LoopName
) -> Response:
    """A reward for a ranked event: a learnloop direct reward."""
    _check_value(body.value)
    if not await _is_decision(request, loop, event_id):
        raise _unknown(event_id)
    await _feedback(request).reward(event_id, LearnloopReward(value=body.value))
    return Response(status_code=_NO_CONTENT)


@router.post("/events/{eventId}/activate", status_code=_NO_CONTENT, response_class=Response)
async def activate(event_id: EventIdPath, request: Request, loop: LoopName) -> Response:
    """The ranked event was shown (after ``deferActivation``): learnloop's activation."""
    if not await _is_decision(request, loop, event_id):
        raise _unknown(event_id, "InvalidEventIdToActivate")
    await _feedback(request).activate(event_id)
    return Response(status_code=_NO_CONTENT)


@preview_router.post(
    "/multislot/rank",
    status_code=201,
    response_model=MultiSlotRankResponse,
    response_model_by_alias=True,
)
async def rank_multislot(
    body: MultiSlotRankRequest, request: Request, loop: ServingLoop
) -> MultiSlotRankResponse:
    """Rank for several slots: a learnloop decision per slot, no action used twice."""
    response, decided_at = await ranking.rank_multislot(_decider(request), loop.name, body)
    await note_ranked(request, loop.name, decided_at)
    return response


def _by_slot(
    rewards: Sequence[SlotReward], slots: Sequence[ranking.SlotDecision]
) -> list[tuple[str, float]]:
    """Each reward's slot decision id, all checked before any is logged."""
    ids = {s.slot_id: s.event_id for s in slots}
    if not rewards:
        raise PersonalizerError(400, "InvalidRewardRequest", "'reward' is empty: send a reward")
    out = []
    for index, item in enumerate(rewards):
        _check_value(item.value, f"reward[{index}].value")
        if item.slot_id not in ids:
            raise PersonalizerError(
                400,
                "InvalidRewardRequest",
                f"reward[{index}].slotId {item.slot_id!r} is no slot of this event "
                f"(its slots: {sorted(ids)}); nothing was recorded",
            )
        out.append((ids[item.slot_id], item.value))
    return out


@preview_router.post(
    "/multislot/events/{eventId}/reward", status_code=_NO_CONTENT, response_class=Response
)
async def reward_multislot(
    event_id: EventIdPath,
    body: MultiSlotRewardRequest,
    request: Request,
    loop: LoopName,
) -> Response:
    """A reward per slot: a learnloop direct reward on each slot's decision."""
    slots = await ranking.slot_decisions(_writer(request), loop, event_id)
    if not slots:
        raise _unknown(event_id)
    feedback = _feedback(request)
    for decision_id, value in _by_slot(body.reward, slots):
        await feedback.reward(decision_id, LearnloopReward(value=value))
    return Response(status_code=_NO_CONTENT)


@preview_router.post(
    "/multislot/events/{eventId}/activate", status_code=_NO_CONTENT, response_class=Response
)
async def activate_multislot(event_id: EventIdPath, request: Request, loop: LoopName) -> Response:
    """The multi-slot event was shown: every slot's decision is activated."""
    slots = await ranking.slot_decisions(_writer(request), loop, event_id)
    if not slots:
        raise _unknown(event_id, "InvalidEventIdToActivate")
    feedback = _feedback(request)
    for slot in slots:
        await feedback.activate(slot.event_id)
    return Response(status_code=_NO_CONTENT)
