"""The client's own records: what a caller sends and what learnloop answers.

Small frozen dataclasses, so a front-end or back-end team needs only this package
(never the learnloop service and its pydantic schemas). ``from_json`` builds each
answer from the decoded JSON and raises :class:`~learnloop_client.errors.ProtocolError`
when a documented field is missing or of the wrong type: an answer that cannot be
trusted is refused, not half-read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from learnloop_client.errors import ProtocolError

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
Scalar: TypeAlias = bool | int | float | str
Features: TypeAlias = Mapping[str, Scalar | Mapping[str, Scalar]]


@dataclass(frozen=True)
class Context:
    """Who is asking and where: ids plus features (one level of nesting, as learnloop takes)."""

    user_id: str | None = None
    session_id: str | None = None
    features: Features = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``context`` object of a request (ids left out when unset).

        >>> Context(user_id="u1", features={"page": "cart"}).to_json()
        {'user_id': 'u1', 'features': {'page': 'cart'}}
        """
        body: dict[str, Any] = {}
        if self.user_id is not None:
            body["user_id"] = self.user_id
        if self.session_id is not None:
            body["session_id"] = self.session_id
        body["features"] = {
            k: dict(v) if isinstance(v, Mapping) else v for k, v in self.features.items()
        }
        return body


ContextLike: TypeAlias = Context | Mapping[str, Any] | None
"""A :class:`Context`, or the JSON-shaped dict (``{"user_id", "session_id", "features"}``)."""


def context_json(context: ContextLike) -> dict[str, Any]:
    """The request's ``context`` object from either accepted shape.

    >>> context_json({"session_id": "s1"})
    {'session_id': 's1'}
    >>> context_json(None)
    {}
    """
    if context is None:
        return {}
    if isinstance(context, Context):
        return context.to_json()
    return dict(context)


@dataclass(frozen=True)
class Outcome:
    """One thing a shopper did, for :meth:`LearnloopClient.outcomes`: attributed to a
    decision (``event_id``) or to the decisions of a session (``session_id``)."""

    type: str
    event_id: str | None = None
    session_id: str | None = None
    value: float | None = None
    outcome_id: str | None = None
    timestamp: datetime | None = None

    def __post_init__(self) -> None:
        if self.event_id is None and self.session_id is None:
            raise ValueError(
                f"outcome {self.type!r} needs an event_id or a session_id to be attributed"
            )

    def to_json(self) -> dict[str, Any]:
        """The outcome's JSON (unset fields left out).

        >>> Outcome("click", event_id="e1", value=1.0).to_json()
        {'type': 'click', 'event_id': 'e1', 'value': 1.0}
        """
        body: dict[str, Any] = {"type": self.type}
        for name in ("event_id", "session_id", "value", "outcome_id"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        if self.timestamp is not None:
            body["timestamp"] = timestamp_json(self.timestamp)
        return body


def timestamp_json(moment: datetime) -> str:
    """An aware datetime as ISO 8601; naive ones are refused (learnloop wants UTC offsets)."""
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {moment!r} has no time zone: pass an aware datetime")
    return moment.isoformat()


@dataclass(frozen=True)
class RankedAction:
    id: str
    probability: float


@dataclass(frozen=True)
class Decision:
    """The chosen action of a decision, its probability, the ranking and who decided."""

    event_id: str
    action_id: str
    probability: float
    ranking: tuple[RankedAction, ...]
    model_version: str
    persona: str
    arm: str

    @classmethod
    def from_json(cls, body: Any) -> Decision:
        doc = _object(body, "decision")
        ranking = tuple(
            RankedAction(_str(r, "id"), _number(r, "probability"))
            for r in (_object(x, "ranking entry") for x in _list(doc, "ranking"))
        )
        return cls(
            event_id=_str(doc, "event_id"),
            action_id=_str(doc, "action_id"),
            probability=_number(doc, "probability"),
            ranking=ranking,
            model_version=_str(doc, "model_version"),
            persona=_str(doc, "persona"),
            arm=_str(doc, "arm"),
        )


@dataclass(frozen=True)
class OutcomesAccepted:
    """Outcomes were logged; ``duplicates`` counts retries of known ``outcome_id``s."""

    accepted: int
    duplicates: int = 0

    @classmethod
    def from_json(cls, body: Any) -> OutcomesAccepted:
        doc = _object(body, "outcomes answer")
        return cls(_int(doc, "accepted"), int(doc.get("duplicates", 0)))


@dataclass(frozen=True)
class RewardAccepted:
    event_id: str
    reward_id: str

    @classmethod
    def from_json(cls, body: Any) -> RewardAccepted:
        doc = _object(body, "reward answer")
        return cls(_str(doc, "event_id"), _str(doc, "reward_id"))


@dataclass(frozen=True)
class FlagEvaluation:
    """A flag's value for one context and why (``reason``: STATIC, TARGETING_MATCH,
    SPLIT, PERSONALIZED, DEFAULT, DISABLED or ERROR). ``event_id`` names the logged
    exposure of a PERSONALIZED evaluation: post outcomes against it."""

    key: str
    value: JsonValue
    variant: str | None
    reason: str
    persona: str
    event_id: str | None = None
    flag_version: int | None = None
    error_code: str | None = None
    error_message: str | None = None

    @classmethod
    def from_json(cls, body: Any) -> FlagEvaluation:
        doc = _object(body, "flag evaluation")
        if "value" not in doc:
            raise ProtocolError("the flag evaluation has no 'value'", code="parse_error")
        version = doc.get("flag_version")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise ProtocolError("flag_version is not an integer", code="parse_error")
        return cls(
            key=_str(doc, "key"),
            value=doc["value"],
            variant=_optional_str(doc, "variant"),
            reason=_str(doc, "reason"),
            persona=_str(doc, "persona"),
            event_id=_optional_str(doc, "event_id"),
            flag_version=version,
            error_code=_optional_str(doc, "error_code"),
            error_message=_optional_str(doc, "error_message"),
        )


def flags_from_json(body: Any) -> dict[str, FlagEvaluation]:
    """The ``flags`` of a bulk evaluation answer, keyed by flag key."""
    flags = _object(body, "bulk flag evaluation").get("flags")
    if not isinstance(flags, dict):
        raise ProtocolError("the bulk flag evaluation has no 'flags' object", code="parse_error")
    return {str(key): FlagEvaluation.from_json(value) for key, value in flags.items()}


def actions_json(actions: Sequence[str | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Candidate actions: an id alone, or ``{"id", "features"}``.

    >>> actions_json(["a", {"id": "b", "features": {"price": 3}}])
    [{'id': 'a'}, {'id': 'b', 'features': {'price': 3}}]
    """
    return [{"id": a} if isinstance(a, str) else dict(a) for a in actions]


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"the {what} is not a JSON object", code="parse_error")
    return value


def _list(doc: dict[str, Any], name: str) -> list[Any]:
    value = doc.get(name)
    if not isinstance(value, list):
        raise ProtocolError(f"{name!r} is missing or not a list", code="parse_error")
    return value


def _str(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str):
        raise ProtocolError(f"{name!r} is missing or not a string", code="parse_error")
    return value


def _optional_str(doc: dict[str, Any], name: str) -> str | None:
    return None if doc.get(name) is None else _str(doc, name)


def _number(doc: dict[str, Any], name: str) -> float:
    value = doc.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ProtocolError(f"{name!r} is missing or not a number", code="parse_error")
    return float(value)


def _int(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"{name!r} is missing or not an integer", code="parse_error")
    return value
