"""Evaluate a feature flag for one context: pure, no I/O, no clock.

The service resolves the persona and the user's pseudonym, then calls
:func:`evaluate` with the flattened context (:func:`attributes_of`) and a
bucketing key (:func:`bucketing_key_of`). The answer says which variant and why;
for ``PERSONALIZED`` it lists the candidates and the service asks the decision
point ``flag.<key>`` to choose among them.

Precedence: a disabled flag gives the default (``DISABLED``) whatever its rules;
a flag without rules gives the default (``STATIC``); otherwise the rules are
tried in order and the first that matches and yields a variant decides; when
none does, the default (``DEFAULT``).

Sticky bucketing: a rollout rule puts a key in the bucket
``BLAKE2b(flag key ":" rule index ":" bucketing key)`` mapped onto ``[0, 100)``
and walks the splits' cumulative weights; a bucket past their sum falls through.
The hash depends on nothing but those strings, so the same key gets the same
variant in every process and after every restart; the rule index keeps the
rollouts of one flag independent and the flag key those of different flags.
The bucketing key is the user's pseudonym (the keyed hash the decision log
carries, so the raw id never reaches the engine's output and the bucket stays
as long as the pseudonym key does), else the session id; without either, a
rollout rule does not match and evaluation falls through to the next rule.

>>> flag = Flag.model_validate({
...     "key": "checkout_layout", "version": 1, "updated_at": "2026-01-01T00:00:00Z",
...     "updated_by": "admin", "type": "string", "default_variant": "one_page",
...     "variants": {"one_page": "1p", "steps": "3s"},
...     "rules": [{"personas": ["shop_owner"], "variant": "steps"}]})
>>> evaluate(flag, {"persona": "shop_owner"}, None)
Resolution(variant='steps', reason='TARGETING_MATCH', candidates=None, rule_index=0)
>>> evaluate(flag, {"persona": "consultant"}, None).reason
'DEFAULT'
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import JsonValue, ValidationError

from learnloop.errors import InvalidInput
from schemas.features import Context, Scalar
from schemas.flags import Condition, Flag, FlagDefinition, Reason, Rule
from schemas.vw_layout import flatten

__all__ = [
    "Resolution",
    "attributes_of",
    "bucket",
    "bucketing_key_of",
    "change_diff",
    "evaluate",
    "validate",
]

Attributes = Mapping[str, Scalar]
_BUCKETS = 100.0
_HASH_SPAN = float(1 << 64)


@dataclass(frozen=True, slots=True)
class Resolution:
    """What the engine decided for one evaluation.

    ``variant`` is the variant to serve; for ``PERSONALIZED`` it is the fallback
    (the first candidate: the default variant when the segment may get it), to
    serve only when no decision can be made. ``candidates`` (``PERSONALIZED``
    only) are the variants the bandit may choose from, the default first when
    allowed, since the decision point's baseline arm serves the first one.
    ``rule_index`` names the rule that decided (``None`` for the default).
    """

    variant: str | None
    reason: Reason
    candidates: list[str] | None = None
    rule_index: int | None = None


def attributes_of(
    context: Context,
    persona: str,
    user_id: str | None = None,
    session_id: str | None = None,
) -> dict[str, Scalar]:
    """The attributes conditions test: the flattened features, ``persona``,
    ``user_id`` and ``session_id`` (the named ones win over same-named features).

    ``user_id`` defaults to the id the client sent: conditions name users the way
    the team knows them (``user_id in [...]`` for testers). The attributes stay in
    the request; only :func:`bucketing_key_of` output is hashed for rollouts.
    """
    attributes: dict[str, Scalar] = dict(flatten(context.features))
    attributes["persona"] = persona
    uid = user_id if user_id is not None else context.user_id
    sid = session_id if session_id is not None else context.session_id
    if uid is not None:
        attributes["user_id"] = uid
    if sid is not None:
        attributes["session_id"] = sid
    return attributes


def bucketing_key_of(pseudonym: str | None, session_id: str | None) -> str | None:
    """The key rollouts hash: the user's pseudonym, else the session id, else ``None``.

    >>> bucketing_key_of("u:1f", "s1"), bucketing_key_of(None, "s1"), bucketing_key_of(None, None)
    ('user:u:1f', 'session:s1', None)
    """
    if pseudonym is not None:
        return "user:" + pseudonym
    if session_id is not None:
        return "session:" + session_id
    return None


def bucket(flag_key: str, rule_index: int, bucketing_key: str) -> float:
    """The sticky bucket of a key for one rollout rule, in ``[0, 100)``.

    >>> bucket("checkout_layout", 3, "user:abc") == bucket("checkout_layout", 3, "user:abc")
    True
    >>> 0 <= bucket("checkout_layout", 3, "user:abc") < 100
    True
    """
    text = f"{flag_key}:{rule_index}:{bucketing_key}".encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPAN * _BUCKETS


def evaluate(flag: Flag, attributes: Attributes, bucketing_key: str | None) -> Resolution:
    """Resolve ``flag`` for one context (see the module docstring for precedence)."""
    if not flag.enabled:
        return Resolution(flag.default_variant, "DISABLED")
    if not flag.rules:
        return Resolution(flag.default_variant, "STATIC")
    for index, rule in enumerate(flag.rules):
        if not _segment_matches(rule, attributes):
            continue
        if rule.variant is not None:
            return Resolution(rule.variant, "TARGETING_MATCH", rule_index=index)
        if rule.personalized is not None:
            if len(rule.personalized) == 1:
                return Resolution(rule.personalized[0], "TARGETING_MATCH", rule_index=index)
            candidates = _default_first(rule.personalized, flag.default_variant)
            return Resolution(candidates[0], "PERSONALIZED", candidates, index)
        if bucketing_key is None:
            continue
        chosen = _split_variant(rule, bucket(flag.key, index, bucketing_key))
        if chosen is not None:
            return Resolution(chosen, "SPLIT", rule_index=index)
    return Resolution(flag.default_variant, "DEFAULT")


def _default_first(variants: Sequence[str], default: str) -> list[str]:
    if default not in variants:
        return list(variants)
    return [default, *(v for v in variants if v != default)]


def _split_variant(rule: Rule, point: float) -> str | None:
    edge = 0.0
    for split in rule.rollout or ():
        edge += split.weight
        if point < edge:
            return split.variant
    return None


def _segment_matches(rule: Rule, attributes: Attributes) -> bool:
    if rule.personas is not None and attributes.get("persona") not in rule.personas:
        return False
    return all(condition_holds(c, attributes) for c in rule.conditions)


def condition_holds(condition: Condition, attributes: Attributes) -> bool:
    """Whether one condition holds; typed comparisons, a missing attribute fails
    all but ``neq``/``not_in``.

    >>> c = Condition(attribute="cart_total", op="gte", value=100)
    >>> condition_holds(c, {"cart_total": 120.5}), condition_holds(c, {"cart_total": "120"})
    (True, False)
    """
    op = condition.op
    if condition.attribute not in attributes:
        return op in ("neq", "not_in")
    actual = attributes[condition.attribute]
    expected = condition.value
    if op == "eq":
        return _same(actual, expected)
    if op == "neq":
        return not _same(actual, expected)
    if op in ("in", "not_in"):
        listed = expected if isinstance(expected, list) else [expected]
        found = any(_same(actual, item) for item in listed)
        return found if op == "in" else not found
    if not _number(actual) or not _number(expected):
        return False
    a, b = float(actual), float(expected)  # type: ignore[arg-type]
    if op == "lt":
        return a < b
    if op == "lte":
        return a <= b
    if op == "gt":
        return a > b
    return a >= b


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(actual: object, expected: object) -> bool:
    """Equality within one kind: numbers with numbers, strings with strings, booleans
    with booleans (so ``True`` is not ``1`` and ``"5"`` is not ``5``)."""
    if _number(actual) and _number(expected):
        return float(actual) == float(expected)  # type: ignore[arg-type]
    return type(actual) is type(expected) and actual == expected


def validate(data: Mapping[str, object] | FlagDefinition) -> FlagDefinition:
    """A checked :class:`FlagDefinition`, or :class:`InvalidInput` naming every problem.

    >>> validate({"type": "boolean", "variants": {"on": True}, "default_variant": "off"})
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    learnloop.errors.InvalidInput: invalid flag definition: default_variant 'off' is not ...
    """
    if isinstance(data, FlagDefinition):
        data = data.model_dump()
    try:
        return FlagDefinition.model_validate(data)
    except ValidationError as error:
        raise InvalidInput("invalid flag definition: " + describe(error)) from None


def describe(error: ValidationError) -> str:
    """One readable line per problem of a pydantic error: ``where: what``."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


def change_diff(
    before: Mapping[str, JsonValue] | None, after: Mapping[str, JsonValue] | None
) -> list[dict[str, JsonValue]]:
    """The leaves that differ between two JSON documents (two flags' ``model_dump(mode="json")``),
    one ``{"path", "before", "after"}`` each, paths like ``rules/0/variant``.

    >>> for change in change_diff({"enabled": True, "rules": [{"variant": "a"}]},
    ...                           {"enabled": False, "rules": [{"variant": "b"}]}):
    ...     print(change)
    {'path': 'enabled', 'before': True, 'after': False}
    {'path': 'rules/0/variant', 'before': 'a', 'after': 'b'}
    """
    changes: list[dict[str, JsonValue]] = []
    _diff_into(changes, "", dict(before or {}), dict(after or {}))
    return changes


def _diff_into(
    out: list[dict[str, JsonValue]], path: str, before: JsonValue, after: JsonValue
) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in list(before) + [k for k in after if k not in before]:
            _diff_into(out, f"{path}/{key}" if path else str(key), before.get(key), after.get(key))
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (b, a) in enumerate(zip(before, after, strict=True)):
            _diff_into(out, f"{path}/{index}" if path else str(index), b, a)
    elif before != after or type(before) is not type(after):
        out.append({"path": path, "before": before, "after": after})
