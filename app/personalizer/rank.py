"""Personalizer's rank, as learnloop decisions: validation, the decision, the ranking.

A rank is one learnloop decision at the loop's decision point. The request's actions
are the candidates in the request's order, so the first one not excluded is the
baseline (``baseline="first"``) and what apprentice and logging-only modes serve. The
request's ``eventId`` is the decision's ``event_id`` (it seeds the draw; the same id
again answers the logged decision again); without one learnloop makes one.

Everything learnloop needs is checked before the decision is logged, so a refused
request leaves nothing behind: an ``InvalidRankRequest`` names what to fix.

Multi-slot ranks (:func:`rank_multislot`) are one decision per slot, in the slots'
order, with the event id ``<eventId>:<slot index>``: each slot chooses among the
actions no earlier slot took and its own exclusions allow, with the slot's
``baselineAction`` first, and its context is the event's plus the slot's features
(namespace ``slot``) and id (``slot_id``). Nothing else is stored: reward and
activate find the slot decisions by those ids (:func:`slot_decisions`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from pydantic import ValidationError

from app.decide import Decider
from app.decision_record import DecisionRecord
from app.event_ids import new_event_id
from app.event_writer import EventWriter
from app.personalizer.errors import PersonalizerError
from app.personalizer.features import FeatureError, Features, Flat, action_features
from app.personalizer.features import context_features as map_context
from learnloop.eventlog.base import Streams
from schemas.api import DecisionRequest
from schemas.dsjson import ranking_order
from schemas.features import NAME_PATTERN, Action, Context
from schemas.personalizer import (
    MAX_ACTIONS,
    MultiSlotRankRequest,
    MultiSlotRankResponse,
    RankableAction,
    RankedAction,
    RankRequest,
    RankResponse,
    SlotResponse,
)

_ACTION_ID = re.compile(NAME_PATTERN)
_EVENT_ID = re.compile(r"^[A-Za-z0-9_.:\-]+$")
MAX_EVENT_ID: Final = 128
"""learnloop's event ids are shorter than Personalizer's 256 characters."""
SLOT_SEPARATOR: Final = ":"
SLOT_NS: Final = "slot"
SLOT_ID_FEATURE: Final = "slot_id"


def invalid_rank(message: str) -> PersonalizerError:
    return PersonalizerError(400, "InvalidRankRequest", message)


def event_id_fits(event_id: str, room: int = 0) -> bool:
    """Whether learnloop can log ``event_id`` (with ``room`` characters to spare)."""
    return len(event_id) <= MAX_EVENT_ID - room and _EVENT_ID.match(event_id) is not None


def check_event_id(event_id: str, room: int = 0) -> None:
    """Refuse an ``eventId`` learnloop cannot log (``room``: characters a slot suffix needs).

    >>> check_event_id("75269AD0-BFEE-4598-8196-C57383D38E10")
    >>> check_event_id("has space")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    app.personalizer.errors.PersonalizerError: eventId 'has space' cannot be used: ...
    """
    limit = MAX_EVENT_ID - room
    if not event_id_fits(event_id, room):
        raise invalid_rank(
            f"eventId {event_id[:64]!r} cannot be used: learnloop's event ids are 1 to "
            f"{limit} letters, digits, '_', '.', ':' or '-' (a GUID fits); "
            "send such an id or none (one is generated)"
        )


def check_actions(actions: Sequence[RankableAction]) -> list[Action]:
    """The request's actions as learnloop actions, in order, or why they cannot be."""
    if not actions:
        raise invalid_rank("'actions' is empty: a rank needs at least one action")
    if len(actions) > MAX_ACTIONS:
        raise invalid_rank(
            f"{len(actions)} actions were sent: a rank takes at most {MAX_ACTIONS} actions"
        )
    seen: set[str] = set()
    out: list[Action] = []
    for index, action in enumerate(actions):
        if not _ACTION_ID.match(action.id):
            raise invalid_rank(
                f"actions[{index}].id {action.id[:64]!r} cannot be used: learnloop's action "
                "ids are 1 to 128 letters, digits, '_', '.' or '-'"
            )
        if action.id in seen:
            raise invalid_rank(f"action id {action.id!r} appears twice: action ids must be unique")
        seen.add(action.id)
        try:
            features = action_features(action.features, f"actions[{index}].features")
        except FeatureError as exc:
            raise invalid_rank(str(exc)) from exc
        out.append(Action(id=action.id, features=features))
    return out


def check_context(items: Sequence[Any] | None) -> Features:
    try:
        return map_context(items)
    except FeatureError as exc:
        raise invalid_rank(str(exc)) from exc


def _request(
    loop: str,
    features: Features,
    actions: list[Action],
    excluded: list[str],
    event_id: str | None,
    defer: bool | None,
) -> DecisionRequest:
    try:
        return DecisionRequest(
            decision_point=loop,
            context=Context(features=features),
            actions=actions,
            excluded_actions=excluded,
            event_id=event_id,
            defer_activation=bool(defer),
        )
    except ValidationError as exc:  # the checks above should have caught it
        raise invalid_rank(f"the request cannot be a learnloop decision: {exc}") from exc


def decision_request(loop: str, body: RankRequest) -> DecisionRequest:
    """The learnloop decision of a rank request, checked whole before anything is logged.

    ``excludedActions`` naming no request action are ignored (a client may exclude from a
    list wider than this request's); excluding every action is refused.
    """
    actions = check_actions(body.actions)
    ids = {a.id for a in actions}
    excluded = [x for x in dict.fromkeys(body.excluded_actions or ()) if x in ids]
    if len(excluded) == len(actions):
        raise invalid_rank("every action is in excludedActions: leave at least one to rank")
    if body.event_id is not None:
        check_event_id(body.event_id)
    features = check_context(body.context_features)
    return _request(loop, features, actions, excluded, body.event_id, body.defer_activation)


def ranking(record: DecisionRecord, request_ids: Sequence[str]) -> list[RankedAction]:
    """Every action: the chosen one first, the other candidates by falling probability,
    then the excluded ones with probability 0 (in the request's order).

    >>> from datetime import UTC, datetime
    >>> record = DecisionRecord("e", datetime.now(UTC), None, "p", None, None, {}, "v",
    ...     [Action(id="a"), Action(id="c")], 1, [0.2, 0.8], "0", "learned", True)
    >>> [(r.id, r.probability) for r in ranking(record, ["a", "b", "c"])]
    [('c', 0.8), ('a', 0.2), ('b', 0.0)]
    """
    order = ranking_order(record.probabilities, record.chosen_index)
    ranked = [
        RankedAction(id=record.actions[i].id, probability=record.probabilities[i]) for i in order
    ]
    seen = {r.id for r in ranked}
    return ranked + [RankedAction(id=x, probability=0.0) for x in request_ids if x not in seen]


async def rank(decider: Decider, loop: str, body: RankRequest) -> tuple[RankResponse, datetime]:
    """Rank: decide (or replay the logged decision of this ``eventId``); the answer and
    the decision's time."""
    record = await decider.decide(decision_request(loop, body))
    response = RankResponse(
        ranking=ranking(record, [a.id for a in body.actions]),
        event_id=record.event_id,
        reward_action_id=record.chosen_action,
    )
    return response, record.timestamp


# -- multi-slot -------------------------------------------------------------------------


def slot_event_id(event_id: str, index: int) -> str:
    """The learnloop event id of a multi-slot event's slot (by its place in the request).

    >>> slot_event_id("75269AD0", 1)
    '75269AD0:1'
    """
    return f"{event_id}{SLOT_SEPARATOR}{index}"


@dataclass(frozen=True, slots=True)
class SlotPlan:
    """One slot, checked: its id, the actions it may not take, its baseline, its features."""

    slot_id: str
    excluded: frozenset[str]
    baseline: str
    features: Flat


def first_slot_at_risk(allowed: Sequence[set[str]]) -> int | None:
    """The first slot whose allowed actions the slots before it could all take, if any.

    Slots choose in order and never share an action, so slot ``k`` can be left with
    nothing exactly when the earlier slots can each take a different one of its allowed
    actions: a matching covering them (found by augmenting paths, at most 50 x 50).

    >>> first_slot_at_risk([{"a", "b"}, {"a", "b", "c"}])
    >>> first_slot_at_risk([{"a", "b"}, {"b"}])
    1
    >>> first_slot_at_risk([{"a"}, {"a", "b"}, {"b", "c"}])
    """
    for k, wanted in enumerate(allowed):
        owner: dict[int, str] = {}  # earlier slot -> the action of ``wanted`` it takes
        if all(_assign(action, allowed[:k], owner, set()) for action in sorted(wanted)):
            return k
    return None


def _assign(
    action: str, earlier: Sequence[set[str]], owner: dict[int, str], tried: set[int]
) -> bool:
    """Give ``action`` to an earlier slot that allows it, moving others along (Kuhn)."""
    for j, allows in enumerate(earlier):
        if action in allows and j not in tried:
            tried.add(j)
            if j not in owner or _assign(owner[j], earlier, owner, tried):
                owner[j] = action
                return True
    return False


def plan_slots(body: MultiSlotRankRequest, actions: Sequence[Action]) -> list[SlotPlan]:
    """The slots, checked whole: unique ids, known distinct baselines not excluded, and
    no slot that could run out of actions."""
    if not body.slots:
        raise invalid_rank("'slots' is empty: a multi-slot rank needs at least one slot")
    if len(body.slots) > MAX_ACTIONS:
        raise invalid_rank(f"{len(body.slots)} slots were sent: at most {MAX_ACTIONS}")
    ids = [a.id for a in actions]
    known = set(ids)
    plans: list[SlotPlan] = []
    baselines: dict[str, str] = {}
    for index, slot in enumerate(body.slots):
        where = f"slots[{index}] ({slot.id!r})"
        if any(p.slot_id == slot.id for p in plans):
            raise invalid_rank(f"slot id {slot.id!r} appears twice: slot ids must be unique")
        excluded = frozenset(slot.excluded_actions or ()) & known
        if slot.baseline_action not in known:
            raise invalid_rank(f"{where}: baselineAction {slot.baseline_action!r} is no action")
        if slot.baseline_action in excluded:
            raise invalid_rank(f"{where}: baselineAction {slot.baseline_action!r} is excluded")
        if slot.baseline_action in baselines:
            raise invalid_rank(
                f"{where}: baselineAction {slot.baseline_action!r} is already slot "
                f"{baselines[slot.baseline_action]!r}'s: each slot needs its own baseline"
            )
        baselines[slot.baseline_action] = slot.id
        try:
            features = action_features(slot.features, f"slots[{index}].features")
        except FeatureError as exc:
            raise invalid_rank(str(exc)) from exc
        plans.append(SlotPlan(slot.id, excluded, slot.baseline_action, features))
    at_risk = first_slot_at_risk([known - p.excluded for p in plans])
    if at_risk is not None:
        raise invalid_rank(
            f"slot {plans[at_risk].slot_id!r} could be left with no action: the slots "
            "before it may take every action it allows; allow it more actions or "
            "put it earlier"
        )
    return plans


def _candidates(actions: Sequence[Action], taken: set[str], plan: SlotPlan) -> list[Action]:
    """The actions a slot may take, its baseline first (when no earlier slot took it)."""
    free = [a for a in actions if a.id not in taken and a.id not in plan.excluded]
    return sorted(free, key=lambda a: a.id != plan.baseline)  # stable: the rest keep order


def _slot_features(context: Features, plan: SlotPlan) -> Features:
    """The event's context plus the slot's id and (namespace ``slot``) features."""
    features: Features = {**context, SLOT_ID_FEATURE: plan.slot_id}
    if plan.features:
        features[SLOT_NS] = plan.features
    return features


async def rank_multislot(
    decider: Decider, loop: str, body: MultiSlotRankRequest
) -> tuple[MultiSlotRankResponse, datetime]:
    """Decide each slot in order; the answer and the first slot's decision time."""
    actions = check_actions(body.actions)
    plans = plan_slots(body, actions)
    context = check_context(body.context_features)
    if SLOT_NS in context or SLOT_ID_FEATURE in context:
        raise invalid_rank(
            f"contextFeatures use {SLOT_NS!r} or {SLOT_ID_FEATURE!r}: in a multi-slot rank "
            "learnloop puts each slot's features and id there; rename that namespace"
        )
    room = len(SLOT_SEPARATOR) + len(str(len(plans) - 1))
    if body.event_id is not None:
        check_event_id(body.event_id, room)
    event_id = body.event_id or new_event_id()
    # Every slot's decision is built (and so validated) before the first one is logged.
    requests = [
        _request(
            loop,
            _slot_features(context, plan),
            actions,
            [],
            slot_event_id(event_id, index),
            body.defer_activation,
        )
        for index, plan in enumerate(plans)
    ]
    taken: set[str] = set()
    slots: list[SlotResponse] = []
    first: datetime | None = None
    for plan, request in zip(plans, requests, strict=True):
        candidates = _candidates(actions, taken, plan)  # a subset of the validated actions
        record = await decider.decide(request.model_copy(update={"actions": candidates}))
        chosen = record.chosen_action
        if record.features.get(SLOT_ID_FEATURE) != plan.slot_id or chosen in taken:
            raise PersonalizerError(
                409,
                "InvalidRankRequest",
                f"eventId {event_id!r} was already used for a different multi-slot rank: "
                "send a fresh eventId for a new one",
            )
        taken.add(chosen)
        slots.append(SlotResponse(id=plan.slot_id, reward_action_id=chosen))
        first = first or record.timestamp
    assert first is not None  # plan_slots refuses an empty list
    return MultiSlotRankResponse(slots=slots, event_id=event_id), first


@dataclass(frozen=True, slots=True)
class SlotDecision:
    slot_id: str
    event_id: str


async def slot_decisions(writer: EventWriter, loop: str, event_id: str) -> list[SlotDecision]:
    """The logged slot decisions of a multi-slot event at this loop, in slot order.

    Slots are decided in order, so they are found by index until the first missing one
    (a rank that failed half-way has logged a prefix; repeating it logs the rest).
    """
    found: list[SlotDecision] = []
    for index in range(MAX_ACTIONS):
        decision_id = slot_event_id(event_id, index)
        if not event_id_fits(decision_id):
            break
        stored = await writer.find(Streams.DECISIONS, decision_id)
        if stored is None:
            break
        event = orjson.loads(stored.value)
        slot_id = event["context"]["features"].get(SLOT_ID_FEATURE)
        if event["decision_point"] != loop or not isinstance(slot_id, str):
            break
        found.append(SlotDecision(slot_id, decision_id))
    return found
