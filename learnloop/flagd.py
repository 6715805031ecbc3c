"""Import and export flags as flagd flag definitions (JSON with JsonLogic targeting).

Export writes one flagd flag per flag: ``state``, ``variants``, ``defaultVariant``
and a ``targeting`` chain ``{"if": [cond_0, outcome_0, cond_1, outcome_1, ...]}``
with one pair per rule, in order (so rule indexes, and with them the sticky
buckets, survive a round trip). Conditions become ``===``, ``!==``, ``in``,
``!in``, ``<``, ``<=``, ``>``, ``>=`` joined by ``and``; a rollout becomes
``fractional``. What flagd cannot express goes into the flag's ``metadata``
(flat keys, primitive values, as flagd wants them): the description, the
holdout share and decision-point settings, rule names, which condition is a
``personas`` shorthand, personalized rules (flagd serves their fallback
variant) and partial rollouts (flagd gives their remainder the default variant,
learnloop lets it fall through).

Import reads the subset this module writes plus the usual hand-written forms
(``==``, a bare outcome without ``if``, nested ``if`` in the else branch,
``$ref`` to ``$evaluators``, relative ``fractional`` weights) and refuses
everything else with :class:`InvalidInput` naming the flag and the construct:
``or``, ``sem_ver``, ``starts_with``, ``ends_with``, substring ``in``, custom
bucketing properties, ``$flagd.*`` variables. ``targetingKey`` is the
OpenFeature name of ``user_id``. Pure: documents in, documents out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from learnloop.errors import InvalidInput
from learnloop.flag_engine import describe
from schemas.flags import FLAG_KEY_PATTERN, Condition, Flag, FlagDefinition, Rule, Split

__all__ = ["SCHEMA_URL", "from_flagd", "to_flagd"]

SCHEMA_URL = "https://flagd.dev/schema/v0/flags.json"
_META = "learnloop."
_TO_JSONLOGIC = {"eq": "===", "neq": "!==", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_FROM_JSONLOGIC = {"==": "eq", "===": "eq", "!=": "neq", "!==": "neq"} | {
    symbol: op for op, symbol in _TO_JSONLOGIC.items() if op in ("lt", "lte", "gt", "gte")
}
_FLIPPED = {"lt": "gt", "lte": "gte", "gt": "lt", "gte": "lte", "eq": "eq", "neq": "neq"}
_TARGETING_KEY = "targetingKey"
_DEFAULT_BUCKETING = {"cat": [{"var": "$flagd.flagKey"}, {"var": _TARGETING_KEY}]}
_UNSUPPORTED = {
    "or": "learnloop rules AND their conditions: write one rule per alternative, or use 'in'",
    "sem_ver": "learnloop compares whole values: send the version as a number or use 'in'",
    "starts_with": "learnloop compares whole values: send the prefix as its own attribute",
    "ends_with": "learnloop compares whole values: send the suffix as its own attribute",
}
_KEY = re.compile(FLAG_KEY_PATTERN)


def to_flagd(flags: Iterable[Flag]) -> dict[str, Any]:
    """A flagd document holding ``flags``; see the module docstring for the mapping."""
    return {"$schema": SCHEMA_URL, "flags": {flag.key: _export_flag(flag) for flag in flags}}


def _export_flag(flag: Flag) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if flag.description:
        metadata["description"] = flag.description
    if flag.holdout_share:
        metadata[_META + "holdout_share"] = flag.holdout_share
    if flag.reward_map is not None:
        metadata[_META + "reward_map"] = json.dumps(flag.reward_map, sort_keys=True)
    for name in ("window_seconds", "aggregation", "vw_args"):
        if getattr(flag, name) is not None:
            metadata[_META + name] = getattr(flag, name)
    chain: list[Any] = []
    for index, rule in enumerate(flag.rules):
        prefix = f"{_META}rules.{index}."
        if rule.name is not None:
            metadata[prefix + "name"] = rule.name
        if rule.personas is not None:
            metadata[prefix + "personas"] = True
        chain.append(_export_segment(rule))
        if rule.variant is not None:
            chain.append(rule.variant)
        elif rule.personalized is not None:
            metadata[prefix + "personalized"] = ",".join(rule.personalized)
            allowed = rule.personalized
            chain.append(flag.default_variant if flag.default_variant in allowed else allowed[0])
        else:
            buckets: list[list[Any]] = [[s.variant, s.weight] for s in rule.rollout or ()]
            remainder = 100.0 - sum(s.weight for s in rule.rollout or ())
            if remainder > 1e-9:
                metadata[prefix + "remainder"] = "falls_through"
                buckets.append([flag.default_variant, remainder])
            chain.append({"fractional": buckets})
    exported: dict[str, Any] = {
        "state": "ENABLED" if flag.enabled else "DISABLED",
        "variants": dict(flag.variants),
        "defaultVariant": flag.default_variant,
    }
    if chain:
        exported["targeting"] = {"if": chain}
    if metadata:
        exported["metadata"] = metadata
    return exported


def _export_segment(rule: Rule) -> Any:
    tests: list[Any] = []
    if rule.personas is not None:
        tests.append({"in": [{"var": "persona"}, list(rule.personas)]})
    tests.extend(_export_condition(c) for c in rule.conditions)
    if not tests:
        return True
    return tests[0] if len(tests) == 1 else {"and": tests}


def _export_condition(condition: Condition) -> dict[str, Any]:
    name = _TARGETING_KEY if condition.attribute == "user_id" else condition.attribute
    var = {"var": name}
    if condition.op == "in":
        return {"in": [var, condition.value]}
    if condition.op == "not_in":
        return {"!": {"in": [var, condition.value]}}
    return {_TO_JSONLOGIC[condition.op]: [var, condition.value]}


def from_flagd(document: Mapping[str, Any]) -> dict[str, FlagDefinition]:
    """The flags of a flagd document, by key, all checked; :class:`InvalidInput`
    listing every flag that cannot be imported (then nothing should be stored)."""
    if not isinstance(document, Mapping) or not isinstance(document.get("flags"), Mapping):
        raise InvalidInput("a flagd document is a JSON object with a 'flags' object")
    extra = set(document) - {"$schema", "flags", "$evaluators", "metadata"}
    if extra:
        raise InvalidInput(
            f"unknown top-level keys in the flagd document: {', '.join(sorted(extra))}"
        )
    evaluators = document.get("$evaluators") or {}
    if not isinstance(evaluators, Mapping):
        raise InvalidInput("'$evaluators' must be an object of named JsonLogic expressions")
    imported: dict[str, FlagDefinition] = {}
    problems: list[str] = []
    for key, body in document["flags"].items():
        try:
            if not isinstance(key, str) or not _KEY.match(key):
                raise _Refused(
                    "the key is not allowed: use 1-123 of letters, digits, '_', '.', '-'"
                )
            imported[key] = _import_flag(body, evaluators)
        except _Refused as refused:
            problems.append(f"flag {key!r}: {refused}")
    if problems:
        raise InvalidInput("cannot import the flagd document: " + "; ".join(problems))
    return imported


class _Refused(Exception):
    """One flag of the document is outside what learnloop can represent."""


def _import_flag(body: Any, evaluators: Mapping[str, Any]) -> FlagDefinition:
    if not isinstance(body, Mapping):
        raise _Refused("a flag is a JSON object")
    extra = set(body) - {"state", "variants", "defaultVariant", "targeting", "metadata"}
    if extra:
        raise _Refused(f"unknown keys {', '.join(sorted(extra))}")
    state = body.get("state")
    if state not in ("ENABLED", "DISABLED"):
        raise _Refused(f"state must be ENABLED or DISABLED, got {state!r}")
    variants = body.get("variants")
    if not isinstance(variants, Mapping) or not variants:
        raise _Refused("variants must be a non-empty object")
    default = body.get("defaultVariant")
    if not isinstance(default, str):
        raise _Refused("defaultVariant must name a variant (learnloop always has a default)")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise _Refused("metadata must be an object")
    rules = [
        _import_rule(index, segment, outcome, metadata)
        for index, (segment, outcome) in enumerate(
            _chain(_resolve(body.get("targeting"), evaluators, ()))
        )
    ]
    fields: dict[str, Any] = {
        "type": _infer_type(variants),
        "variants": dict(variants),
        "default_variant": default,
        "enabled": state == "ENABLED",
        "rules": rules,
        "description": metadata.get("description", ""),
        "holdout_share": metadata.get(_META + "holdout_share", 0.0),
    }
    if _META + "reward_map" in metadata:
        try:
            fields["reward_map"] = json.loads(metadata[_META + "reward_map"])
        except (TypeError, ValueError):
            raise _Refused("metadata learnloop.reward_map must be a JSON object text") from None
    for name in ("window_seconds", "aggregation", "vw_args"):
        if _META + name in metadata:
            fields[name] = metadata[_META + name]
    try:
        return FlagDefinition.model_validate(fields)
    except ValidationError as error:
        raise _Refused(describe(error)) from None


def _infer_type(variants: Mapping[str, Any]) -> str:
    values = list(variants.values())
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, str) for v in values):
        return "string"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "number"
    if all(isinstance(v, dict) for v in values):
        return "object"
    raise _Refused(
        "the variants mix value types (or hold lists): learnloop flags are all boolean, "
        "all string, all number or all object"
    )


def _resolve(expression: Any, evaluators: Mapping[str, Any], seen: tuple[str, ...]) -> Any:
    """Replace every ``{"$ref": name}`` by the named shared evaluator."""
    if isinstance(expression, Mapping):
        if set(expression) == {"$ref"}:
            name = expression["$ref"]
            if name in seen:
                raise _Refused(f"$ref {name!r} refers to itself")
            if name not in evaluators:
                raise _Refused(f"$ref {name!r} names no entry of $evaluators")
            return _resolve(evaluators[name], evaluators, (*seen, name))
        return {k: _resolve(v, evaluators, seen) for k, v in expression.items()}
    if isinstance(expression, list):
        return [_resolve(item, evaluators, seen) for item in expression]
    return expression


def _chain(targeting: Any) -> list[tuple[Any, Any]]:
    """(segment, outcome) pairs of an ``if`` chain, nested else-``if`` flattened."""
    if targeting is None or targeting == {}:
        return []
    if not (isinstance(targeting, Mapping) and set(targeting) == {"if"}):
        return [(True, targeting)]
    args = targeting["if"]
    if not isinstance(args, list) or len(args) < 2:
        raise _Refused("'if' needs a condition and a result")
    pairs = [(args[i], args[i + 1]) for i in range(0, len(args) - 1, 2)]
    if len(args) % 2:
        pairs.extend(_chain(args[-1]))
    return pairs


def _import_rule(index: int, segment: Any, outcome: Any, metadata: Mapping[str, Any]) -> Rule:
    prefix = f"{_META}rules.{index}."
    where = f"rules[{index}]"
    tests = _tests(segment, where)
    fields: dict[str, Any] = {"name": metadata.get(prefix + "name")}
    if metadata.get(prefix + "personas") is True:
        first = tests.pop(0) if tests else None
        if first is None or first.attribute != "persona" or first.op != "in":
            raise _Refused(
                f"{where}: metadata says personas but the first test is not persona 'in'"
            )
        fields["personas"] = first.value
    fields["conditions"] = tests
    personalized = metadata.get(prefix + "personalized")
    if personalized is not None:
        if not isinstance(personalized, str):
            raise _Refused(f"{where}: metadata {prefix}personalized must be comma-separated names")
        fields["personalized"] = personalized.split(",")
    elif isinstance(outcome, str):
        fields["variant"] = outcome
    elif isinstance(outcome, Mapping) and set(outcome) == {"fractional"}:
        falls_through = metadata.get(prefix + "remainder") == "falls_through"
        fields["rollout"] = _import_fractional(outcome["fractional"], where, falls_through)
    else:
        raise _Refused(f"{where}: a rule's result must be a variant name or a fractional")
    try:
        return Rule.model_validate(fields)
    except ValidationError as error:
        raise _Refused(f"{where}: {describe(error)}") from None


def _import_fractional(args: Any, where: str, falls_through: bool) -> list[Split]:
    if not isinstance(args, list) or not args:
        raise _Refused(f"{where}: fractional needs buckets")
    if not isinstance(args[0], list):
        bucketing, args = args[0], args[1:]
        if bucketing not in ({"var": _TARGETING_KEY}, _DEFAULT_BUCKETING):
            raise _Refused(
                f"{where}: fractional buckets by {json.dumps(bucketing)}; learnloop buckets "
                "by the user (its pseudonym), else the session: drop the bucketing expression"
            )
    buckets: list[tuple[str, float]] = []
    for item in args:
        ok = isinstance(item, list) and len(item) in (1, 2) and isinstance(item[0], str)
        weight = item[1] if ok and len(item) == 2 else 1
        if not ok or not isinstance(weight, int | float) or isinstance(weight, bool) or weight < 0:
            raise _Refused(f"{where}: a fractional bucket is [variant, weight >= 0], got {item!r}")
        buckets.append((item[0], float(weight)))
    total = sum(weight for _, weight in buckets)
    if total <= 0:
        raise _Refused(f"{where}: fractional weights sum to 0")
    if abs(total - 100) > 1e-9:
        buckets = [(name, weight * 100 / total) for name, weight in buckets]
    if falls_through:
        buckets = buckets[:-1]
    return [Split(variant=name, weight=min(weight, 100.0)) for name, weight in buckets]


def _tests(segment: Any, where: str) -> list[Condition]:
    if segment is True:
        return []
    if isinstance(segment, Mapping) and set(segment) == {"and"}:
        parts = segment["and"]
        if not isinstance(parts, list):
            raise _Refused(f"{where}: 'and' takes a list")
        return [test for part in parts for test in _tests(part, where)]
    return [_condition(segment, where)]


def _condition(test: Any, where: str) -> Condition:
    if not isinstance(test, Mapping) or len(test) != 1:
        raise _Refused(f"{where}: cannot read the condition {json.dumps(test)}")
    [(operator, args)] = test.items()
    if operator in _UNSUPPORTED:
        raise _Refused(f"{where}: '{operator}' is not supported ({_UNSUPPORTED[operator]})")
    if operator == "!":
        inner = args[0] if isinstance(args, list) and len(args) == 1 else args
        if isinstance(inner, Mapping) and set(inner) == {"in"}:
            negated = _condition(inner, where)
            return negated.model_copy(update={"op": "not_in"})
        raise _Refused(f"{where}: '!' is supported only around 'in' (as not_in)")
    if not isinstance(args, list) or len(args) != 2:
        raise _Refused(
            f"{where}: '{operator}' needs exactly two arguments (a range is two conditions)"
        )
    if operator == "in":
        attribute, value = _var(args[0], where), args[1]
        if not isinstance(value, list):
            raise _Refused(f"{where}: substring 'in' is not supported; 'in' needs a list")
        return _make(attribute, "in", value, where)
    if operator not in _FROM_JSONLOGIC:
        raise _Refused(f"{where}: the operator '{operator}' is not supported")
    op = _FROM_JSONLOGIC[operator]
    if _is_var(args[0]):
        return _make(_var(args[0], where), op, args[1], where)
    return _make(_var(args[1], where), _FLIPPED[op], args[0], where)


def _make(attribute: str, op: str, value: Any, where: str) -> Condition:
    try:
        return Condition.model_validate({"attribute": attribute, "op": op, "value": value})
    except ValidationError as error:
        raise _Refused(f"{where}: {describe(error)}") from None


def _is_var(expression: Any) -> bool:
    return isinstance(expression, Mapping) and set(expression) == {"var"}


def _var(expression: Any, where: str) -> str:
    if not _is_var(expression):
        raise _Refused(f"{where}: expected a {{'var': name}} operand, got {json.dumps(expression)}")
    name = expression["var"]
    if isinstance(name, list) and len(name) == 1:
        name = name[0]
    if not isinstance(name, str) or not name:
        raise _Refused(f"{where}: 'var' needs an attribute name (defaults are not supported)")
    if name.startswith("$flagd."):
        raise _Refused(f"{where}: the flagd variable {name!r} is not supported")
    return "user_id" if name == _TARGETING_KEY else name
