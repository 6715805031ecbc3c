"""Read DSJson files as joined examples: learnloop's own export, VW's CB DSJson, and the
logs Azure Personalizer exported.

One reader, three dialects told apart by the fields present:

- **learnloop** (:func:`schemas.dsjson.to_dsjson`): ``c`` holds the namespaces ``c``
  (context, nested keys flattened to ``parent.key``) and ``u`` (``persona``), and every
  ``_multi`` object an ``a`` namespace with the action ``id``. Read back to the same
  context, persona and actions the decision service logged.
- **VW CB DSJson**: ``_label_cost``, ``_label_probability``, ``_label_Action`` (1-based),
  ``_labelIndex``, ``a`` (1-based action indices, chosen first) and ``p`` (their
  probabilities), ``c`` with any namespaces and ``_multi``; actions have no ids.
- **Personalizer**: the same plus ``EventId``, ``Timestamp``, ``VWState``, ``_skipLearn``
  (a deferred decision that was never activated), action objects with ``_tag`` or ``id``,
  features as arrays of objects.

Foreign features map onto learnloop's one featurizer: a namespace ``ns`` of the shared
context becomes the nested context feature ``{"ns": {"feature": value}}`` (VW text
``c`` feature ``ns.feature``), a top-level feature stays top-level; action features go
flat into the action (``ns.feature``). Objects nested deeper and arrays flatten into
dotted names (``ns.obj.key``, ``ns.list.0``); an array of objects merges them. Keys
starting with ``_`` are VW's own markers and are not features.

Action ids: ``_tag``, else a top-level ``id``, else the first namespace's ``id`` feature,
else ``action-<1-based index>``; characters an action id may not hold become ``_``.
Reward = -cost. Probabilities: ``p`` placed at the actions ``a`` names; actions it does
not name share what is left evenly; without ``p`` the chosen action gets
``_label_probability`` and the others share the rest evenly. When ``_label_probability``
differs from ``p`` (Personalizer multiplies in a sampling rate), the chosen action gets
``_label_probability``: it is the propensity the estimators need.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from learnloop.errors import InvalidInput
from schemas.events import CloseReason, DecisionEvent, JoinedExample, OutcomeEvent
from schemas.vw_layout import ACTION_NS, CONTEXT_NS, USER_NS

UNCLASSIFIED = "unclassified"
MISSING_TIME = datetime(1970, 1, 1, tzinfo=UTC)
"""Lines without ``Timestamp`` get this time plus their line number in seconds (so the
file's order stays the event order)."""

_NOT_ID = re.compile(r"[^A-Za-z0-9_.\-]")
_NOT_EVENT_ID = re.compile(r"[^A-Za-z0-9_.:\-]")
_FRACTION = re.compile(r"(\.\d{6})\d+")
Feature = str | float | bool


def read_dsjson(
    path: Path,
    decision_point: str,
    *,
    include_skipped: bool = False,
    default_reward: float = 0.0,
) -> Iterator[JoinedExample]:
    """Stream the examples of a DSJson file, one line at a time.

    Raises :class:`InvalidInput` naming the file and line of the first bad line.
    """
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(f"{where}: not a JSON line ({exc})") from exc
            try:
                example = parse_line(
                    data, decision_point, default_reward, f"{path.stem}-{number}", number
                )
            except ValidationError as exc:
                error = exc.errors()[0]
                field = ".".join(str(p) for p in error["loc"])
                raise InvalidInput(f"{where}: {field}: {error['msg']}") from exc
            except (ValueError, TypeError, KeyError) as exc:
                raise InvalidInput(f"{where}: {exc}") from exc
            if example.decision.activated or include_skipped:
                yield example


def parse_line(
    data: Any, decision_point: str, default_reward: float, fallback_id: str, number: int
) -> JoinedExample:
    """One DSJson object as a joined example (any of the three dialects)."""
    if not isinstance(data, dict):
        raise ValueError("a DSJson line must be a JSON object")
    shared = data.get("c")
    if not isinstance(shared, dict):
        raise ValueError("no 'c' object (the context and its '_multi' actions)")
    if "_slots" in shared:
        raise ValueError("conditional (CCB) and slates DSJson are not supported: one action a line")
    multi = shared.get("_multi")
    if not isinstance(multi, list) or not multi or not all(isinstance(m, dict) for m in multi):
        raise ValueError("'c._multi' must be a non-empty list of action objects")
    ours = _is_learnloop(shared, multi)
    features, persona = _context(shared, ours)
    actions = _actions(multi, ours)
    chosen = _chosen_index(data, len(actions))
    probabilities = _probabilities(data, len(actions), chosen)
    event_id = safe_event_id(data.get("EventId"), fallback_id)
    when = _timestamp(data.get("Timestamp"), number)
    cost = data.get("_label_cost")
    reward = default_reward if cost is None else 0.0 - float(cost)  # no -0.0
    outcomes = _outcomes(data.get("o"), event_id, when)
    reason: CloseReason = (
        "outcome"
        if outcomes
        else "default"
        if cost is None or reward == default_reward
        else "direct"
    )
    state = data.get("VWState")
    model = state.get("m") if isinstance(state, dict) else None
    decision = DecisionEvent(
        event_id=event_id,
        timestamp=when,
        decision_point=decision_point,
        context={"features": features},
        persona=persona,
        actions=actions,
        chosen_index=chosen,
        probabilities=probabilities,
        model_version=str(model) if model is not None else "imported",
        activated=data.get("_skipLearn") is not True,
    )
    return JoinedExample(
        event_id=event_id,
        timestamp=when,
        decision=decision,
        outcomes=outcomes,
        reward=reward,
        close_reason=reason,
    )


def _is_learnloop(shared: Mapping[str, Any], multi: list[dict[str, Any]]) -> bool:
    user = shared.get(USER_NS)
    return (
        isinstance(user, dict)
        and "persona" in user
        and all(isinstance(m.get(ACTION_NS), dict) and "id" in m[ACTION_NS] for m in multi)
    )


def _context(shared: Mapping[str, Any], ours: bool) -> tuple[dict[str, Any], str]:
    """(context features, persona) of the shared object."""
    features: dict[str, Any] = {}
    persona = UNCLASSIFIED
    for key, value in shared.items():
        if key.startswith("_"):
            continue
        if ours and key == CONTEXT_NS and isinstance(value, dict):
            features.update(_unflatten(flatten_features(value)))
            continue
        if key == USER_NS and isinstance(value, dict) and "persona" in value:
            persona = str(value["persona"])
            value = {k: v for k, v in value.items() if k != "persona"}
        if isinstance(value, dict | list):
            namespace = flatten_features(value)
            if namespace:
                features[key] = namespace
        elif value is not None:
            features[key] = value
    return features, persona


def _actions(multi: list[dict[str, Any]], ours: bool) -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(multi):
        if ours:
            own = dict(item[ACTION_NS])
            raw_id: Any = own.pop("id")
            features = {**flatten_features(own), **flatten_features(item, skip=ACTION_NS)}
        else:
            raw_id = _foreign_id(item)
            features = flatten_features(item)
        action_id = safe_action_id(raw_id, f"action-{index + 1}")
        if action_id in seen:
            action_id = f"{action_id[:120]}-{index + 1}"
        seen.add(action_id)
        actions.append({"id": action_id, "features": features})
    return actions


def _foreign_id(item: Mapping[str, Any]) -> Any:
    for key in ("_tag", "id"):
        if isinstance(item.get(key), str | int):
            return item[key]
    for value in item.values():
        if isinstance(value, dict) and isinstance(value.get("id"), str | int):
            return value["id"]
    return None


def flatten_features(value: Any, prefix: str = "", skip: str | None = None) -> dict[str, Feature]:
    """Feature names and values of a DSJson namespace, nested objects and arrays flattened
    into dotted names; ``_``-keys and nulls left out.

    >>> flatten_features({"id": "u1", "geo": {"city": "Oslo"}, "emb": [0.5, 1], "_x": 1})
    {'id': 'u1', 'geo.city': 'Oslo', 'emb.0': 0.5, 'emb.1': 1}
    >>> flatten_features([{"topic": "news"}, {"len": 3}])
    {'topic': 'news', 'len': 3}
    """
    out: dict[str, Feature] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("_") or key == skip:
                continue
            out.update(flatten_features(item, f"{prefix}{key}."))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            nested = prefix if isinstance(item, dict | list) else f"{prefix}{position}."
            if isinstance(item, dict):
                out.update(flatten_features(item, prefix))
            else:
                out.update(flatten_features(item, nested))
    elif value is not None:
        out[prefix[:-1]] = value
    return out


def _unflatten(flat: Mapping[str, Feature]) -> dict[str, Any]:
    """learnloop's ``c`` namespace back to one level of nesting: ``geo.region`` -> ``geo``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parent, dot, child = key.partition(".")
        if dot and not isinstance(flat.get(parent), str | float | int | bool):
            out.setdefault(parent, {})[child] = value
        else:
            out[key] = value
    return out


def _chosen_index(data: Mapping[str, Any], n: int) -> int:
    if isinstance(data.get("_labelIndex"), int):
        index = int(data["_labelIndex"])
    elif isinstance(data.get("_label_Action"), int):
        index = int(data["_label_Action"]) - 1
    elif isinstance(data.get("a"), list) and data["a"]:
        index = int(data["a"][0]) - 1
    else:
        raise ValueError("no chosen action: expected '_labelIndex', '_label_Action' or 'a'")
    if not 0 <= index < n:
        raise ValueError(f"chosen action {index + 1} is not one of the {n} actions in '_multi'")
    return index


def _probabilities(data: Mapping[str, Any], n: int, chosen: int) -> list[float]:
    logged = data.get("_label_probability")
    order, values = data.get("a"), data.get("p")
    probabilities: list[float | None] = [None] * n
    if isinstance(order, list) and isinstance(values, list) and values:
        if len(order) != len(values):
            raise ValueError(f"'a' has {len(order)} entries but 'p' has {len(values)}")
        for action, probability in zip(order, values, strict=True):
            if not 1 <= int(action) <= n:
                raise ValueError(f"'a' names action {action}, but '_multi' has {n}")
            probabilities[int(action) - 1] = float(probability)
    if logged is not None:
        probabilities[chosen] = float(logged)
    if probabilities[chosen] is None:
        raise ValueError("no logging propensity: expected '_label_probability' or 'a' and 'p'")
    if not 0.0 < float(probabilities[chosen] or 0.0) <= 1.0:
        raise ValueError(f"logging propensity {probabilities[chosen]} is not in (0, 1]")
    missing = [i for i, p in enumerate(probabilities) if p is None]
    if missing:
        rest = max(0.0, 1.0 - sum(p for p in probabilities if p is not None)) / len(missing)
        for i in missing:
            probabilities[i] = rest
    return [float(p or 0.0) for p in probabilities]


def safe_action_id(value: Any, fallback: str) -> str:
    """An action id learnloop accepts: characters outside ``[A-Za-z0-9_.-]`` become ``_``.

    >>> safe_action_id("Dogs & Puppies", "action-2"), safe_action_id(None, "action-2")
    ('Dogs___Puppies', 'action-2')
    """
    text = _NOT_ID.sub("_", str(value))[:128] if value not in (None, "") else ""
    return text or fallback


def safe_event_id(value: Any, fallback: str) -> str:
    """An event id learnloop accepts (``[A-Za-z0-9_.:-]``, at most 128), else ``fallback``."""
    text = _NOT_EVENT_ID.sub("_", str(value))[:128] if value not in (None, "") else ""
    return text or _NOT_EVENT_ID.sub("_", fallback)[:128]


def _timestamp(value: Any, number: int) -> datetime:
    if value is None:
        return MISSING_TIME + timedelta(seconds=number)
    text = _FRACTION.sub(r"\1", str(value)).replace("Z", "+00:00")
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"Timestamp {value!r} is not an ISO 8601 time") from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _outcomes(value: Any, event_id: str, when: datetime) -> list[OutcomeEvent]:
    """Reward observations of ``o`` (activations, ``ActionTaken`` without a value, are not)."""
    if not isinstance(value, list):
        return []
    outcomes = []
    for position, item in enumerate(value):
        if not isinstance(item, dict) or item.get("v") is None:
            continue
        own = item.get("EventId")
        outcomes.append(
            OutcomeEvent(
                outcome_id=safe_event_id(own, f"{event_id}-o{position}"),
                event_id=event_id,
                type="dsjson",
                value=float(item["v"]),
                timestamp=when,
            )
        )
    return outcomes
