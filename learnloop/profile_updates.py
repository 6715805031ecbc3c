"""Real-time profile updates, the pure core: logged decisions and outcomes in, interactions out.

A decision tells whose it is (its ``context.user_id`` is already the pseudonym) and in
which session; an outcome names its decision by ``event_id`` or only its session. The
:class:`ProfileUpdater` remembers, for a bounded horizon of event time, the user of
each decision and of each session's latest decision, and turns

- a decision in a session not seen before for that user into a ``session`` interaction;
- an outcome ``detail_view``, ``basket_add`` (its value) or ``purchase`` (its value)
  into an interaction of that kind for the decision's user. Other outcome types and
  anonymous decisions change no profile.

A purchase counts the basket adds of its session since the previous purchase as its
items (at least one), in the category of the last one added; a basket add's category
is the ``category`` feature of the decision's chosen action, when it has one.

Each interaction's id comes from its event (the outcome's ``outcome_id``; a session's
``session:<user>:<session>``), so a store that applies each id once makes a replay
harmless. An outcome that arrives before its decision (two streams read side by side)
is held until the decision comes or ``hold_seconds`` of stream time pass.

No I/O and no clock: stream time is the newest event timestamp seen. ``snapshot()``
and ``restore()`` make it recoverable, so a runner checkpoints it with its offsets.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from schemas.events import DecisionEvent, OutcomeEvent
from schemas.profiles import Interaction, InteractionKind

OUTCOME_KINDS: Final[dict[str, InteractionKind]] = {
    "detail_view": "detail_view",
    "basket_add": "basket_add",
    "purchase": "purchase",
}
DEFAULT_HORIZON_SECONDS: Final = 3600.0
DEFAULT_HOLD_SECONDS: Final = 30.0
CATEGORY_FEATURE: Final = "category"


@dataclass(slots=True)
class _Decision:
    user: str
    session: str | None
    at: float
    category: str | None


@dataclass(slots=True)
class _Session:
    user: str
    at: float
    basket: int = 0  # basket adds since the last purchase
    category: str | None = None  # of the last basket add


class ProfileUpdater:
    """Turns the decision and outcome streams into profile :class:`Interaction` s.

    Parameters
    ----------
    horizon_seconds
        How long (event time) a decision and a session are remembered for attributing
        outcomes; bounds memory.
    hold_seconds
        How long an outcome whose decision is not known yet waits for it.

    >>> from datetime import UTC, datetime
    >>> from schemas import Context
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> up = ProfileUpdater()
    >>> d = DecisionEvent(event_id="e1", timestamp=t, decision_point="p", persona="x",
    ...     context=Context(user_id="u_1", session_id="s1"), actions=[], chosen_index=0,
    ...     probabilities=[], model_version="0")
    >>> [i.kind for i in up.on_decision(d)]
    ['session']
    >>> o = OutcomeEvent(outcome_id="o1", session_id="s1", timestamp=t, type="basket_add",
    ...     value=9.5)
    >>> [(i.user_id, i.kind, i.value) for i in up.on_outcome(o)]
    [('u_1', 'basket_add', 9.5)]
    """

    def __init__(
        self,
        horizon_seconds: float = DEFAULT_HORIZON_SECONDS,
        hold_seconds: float = DEFAULT_HOLD_SECONDS,
    ) -> None:
        self.horizon_seconds = horizon_seconds
        self.hold_seconds = hold_seconds
        self._decisions: OrderedDict[str, _Decision] = OrderedDict()
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._seen: OrderedDict[str, float] = OrderedDict()  # "user\x1fsession" -> last seen
        self._anonymous: OrderedDict[str, float] = OrderedDict()  # event id -> time
        # Outcomes waiting for their decision, in arrival order, and who waits for what:
        # "e:<event_id>" or "s:<session_id>" -> outcome ids (one dict look-up per decision).
        self._held: OrderedDict[str, OutcomeEvent] = OrderedDict()
        self._waiting: dict[str, list[str]] = {}
        self._time: float | None = None

    @property
    def stream_time(self) -> float | None:
        """The newest event timestamp seen (POSIX seconds)."""
        return self._time

    @property
    def size(self) -> int:
        """Entries held in memory (decisions, sessions, held outcomes)."""
        return (
            len(self._decisions)
            + len(self._sessions)
            + len(self._seen)
            + len(self._held)
            + len(self._anonymous)
        )

    def on_event(self, event: object) -> list[Interaction]:
        """Dispatch a decoded event; anything but a decision or outcome yields nothing."""
        if isinstance(event, DecisionEvent):
            return self.on_decision(event)
        if isinstance(event, OutcomeEvent):
            return self.on_outcome(event)
        return []

    def on_decision(self, decision: DecisionEvent) -> list[Interaction]:
        at = decision.timestamp.timestamp()
        user = decision.context.user_id
        out: list[Interaction] = []
        if user is None:
            self._anonymous[decision.event_id] = at
            self._anonymous.move_to_end(decision.event_id)
        else:
            session = decision.context.session_id
            chosen = decision.actions[decision.chosen_index] if decision.actions else None
            category = chosen.features.get(CATEGORY_FEATURE) if chosen else None
            self._decisions[decision.event_id] = _Decision(
                user, session, at, category if isinstance(category, str) else None
            )
            self._decisions.move_to_end(decision.event_id)
            if session is not None:
                state = self._sessions.get(session)
                if state is None or state.user != user:
                    state = _Session(user, at)
                state.at = max(state.at, at)
                self._sessions[session] = state
                self._sessions.move_to_end(session)
                seen_key = f"{user}\x1f{session}"
                if seen_key not in self._seen:
                    out.append(
                        Interaction(
                            interaction_id=f"session:{user}:{session}",
                            user_id=user,
                            kind="session",
                            timestamp=decision.timestamp,
                            session_id=session,
                            event_id=decision.event_id,
                        )
                    )
                self._seen[seen_key] = at
                self._seen.move_to_end(seen_key)
        out.extend(self._release_held(decision))
        self._advance(at)
        return out

    def on_outcome(self, outcome: OutcomeEvent) -> list[Interaction]:
        kind = OUTCOME_KINDS.get(outcome.type)
        at = outcome.timestamp.timestamp()
        out: list[Interaction] = []
        if kind is not None:
            found = self._attribute(outcome, kind)
            if found is not None:
                out.append(found)
            elif (outcome.event_id or outcome.session_id) and (
                outcome.event_id not in self._anonymous
            ):
                self._hold(outcome)  # its decision may not have been read yet
        self._advance(at)
        return out

    def _attribute(self, outcome: OutcomeEvent, kind: InteractionKind) -> Interaction | None:
        decision = self._decisions.get(outcome.event_id) if outcome.event_id else None
        session_id = decision.session if decision is not None else outcome.session_id
        session = self._sessions.get(session_id) if session_id is not None else None
        if decision is not None:
            user, category = decision.user, decision.category
        elif outcome.event_id is None and session is not None:
            user, category = session.user, None
        else:
            return None
        items: int | None = None
        if session is not None and session.user == user:
            if kind == "basket_add":
                session.basket += 1
                session.category = category or session.category
            elif kind == "purchase":
                items = max(session.basket, 1)
                category = session.category or category
                session.basket, session.category = 0, None
        return Interaction(
            interaction_id=outcome.outcome_id,
            user_id=user,
            kind=kind,
            timestamp=outcome.timestamp,
            value=max(outcome.value, 0.0) if outcome.value is not None else None,
            category=category,
            items=items,
            session_id=session_id,
            event_id=outcome.event_id,
        )

    def _hold(self, outcome: OutcomeEvent) -> None:
        if outcome.outcome_id in self._held:
            return
        self._held[outcome.outcome_id] = outcome
        self._waiting.setdefault(_waiting_key(outcome), []).append(outcome.outcome_id)

    def _release_held(self, decision: DecisionEvent) -> list[Interaction]:
        """The held outcomes this decision was awaited by, attributed now."""
        if not self._held:
            return []
        waiting = self._waiting.pop(f"e:{decision.event_id}", [])
        if decision.context.session_id is not None:
            waiting += self._waiting.pop(f"s:{decision.context.session_id}", [])
        out: list[Interaction] = []
        for outcome_id in waiting:
            outcome = self._held.pop(outcome_id)
            found = self._attribute(outcome, OUTCOME_KINDS[outcome.type])
            if found is not None:
                out.append(found)
        return out

    def _advance(self, at: float) -> None:
        if self._time is not None and at <= self._time:
            return
        self._time = at
        horizon = at - self.horizon_seconds
        while self._decisions and next(iter(self._decisions.values())).at < horizon:
            self._decisions.popitem(last=False)
        while self._sessions and next(iter(self._sessions.values())).at < horizon:
            self._sessions.popitem(last=False)
        while self._seen and next(iter(self._seen.values())) < horizon:
            self._seen.popitem(last=False)
        while self._anonymous and next(iter(self._anonymous.values())) < horizon:
            self._anonymous.popitem(last=False)
        hold = at - self.hold_seconds
        while self._held:
            outcome = next(iter(self._held.values()))
            if outcome.timestamp.timestamp() >= hold:
                break
            self._held.popitem(last=False)
            key = _waiting_key(outcome)
            waiting = self._waiting[key]
            waiting.remove(outcome.outcome_id)
            if not waiting:
                del self._waiting[key]

    # -- recovery --------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Everything needed to continue exactly where this updater is."""
        return json.dumps(
            {
                "horizon_seconds": self.horizon_seconds,
                "hold_seconds": self.hold_seconds,
                "time": self._time,
                "decisions": [
                    [k, d.user, d.session, d.at, d.category] for k, d in self._decisions.items()
                ],
                "sessions": [
                    [k, s.user, s.at, s.basket, s.category] for k, s in self._sessions.items()
                ],
                "seen": list(self._seen.items()),
                "anonymous": list(self._anonymous.items()),
                "held": [o.model_dump(mode="json") for o in self._held.values()],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def restore(cls, data: bytes) -> ProfileUpdater:
        """The updater a :meth:`snapshot` was taken of."""
        raw = json.loads(data)
        updater = cls(raw["horizon_seconds"], raw["hold_seconds"])
        updater._time = raw["time"]
        for key, user, session, at, category in raw["decisions"]:
            updater._decisions[key] = _Decision(user, session, at, category)
        for key, user, at, basket, category in raw["sessions"]:
            updater._sessions[key] = _Session(user, at, basket, category)
        for key, at in raw["seen"]:
            updater._seen[key] = at
        for key, at in raw["anonymous"]:
            updater._anonymous[key] = at
        for held in raw["held"]:
            updater._hold(OutcomeEvent.model_validate(held))
        return updater


def _waiting_key(outcome: OutcomeEvent) -> str:
    """What a held outcome waits for: its decision, or (named by session only) its session."""
    return f"e:{outcome.event_id}" if outcome.event_id is not None else f"s:{outcome.session_id}"
