"""Feature flags: definitions, rules, evaluations and their audit history.

A flag has named variants (each a value of the flag's type), a default variant,
an on/off switch and ordered targeting rules. A rule matches a segment (personas
and conditions on the evaluation context) and gives it a fixed variant, a sticky
percentage rollout or a *personalized* choice: the bandit of the flag's automatic
decision point ``flag.<key>`` picks among the allowed variants.

Validation happens here, in the models, so that a bad definition is refused
before anything is stored; every message names the rule or variant at fault.
How a definition is evaluated is :mod:`learnloop.flag_engine`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from schemas.config import Aggregation, DecisionPointConfig, DecisionPointUpdate
from schemas.events import EventId, UtcTime
from schemas.features import NAME_PATTERN, Action, Context

FlagType = Literal["boolean", "string", "number", "object"]
Reason = Literal[
    "STATIC", "TARGETING_MATCH", "SPLIT", "PERSONALIZED", "DEFAULT", "DISABLED", "ERROR"
]
Operator = Literal["eq", "neq", "in", "not_in", "lt", "lte", "gt", "gte"]
ErrorCode = Literal["FLAG_NOT_FOUND", "TYPE_MISMATCH", "PARSE_ERROR", "GENERAL"]
"""OpenFeature's error codes, as far as a flag evaluation can produce them."""
ChangeAction = Literal["create", "update", "enable", "disable", "delete", "import"]

DECISION_POINT_PREFIX = "flag."
FLAG_KEY_PATTERN = r"^[A-Za-z0-9_.\-]{1,123}$"
"""Like decision point names, five shorter: the automatic point is ``flag.<key>``."""
ATTRIBUTE_PATTERN = r"^[A-Za-z0-9_.\-$]{1,257}$"
"""A context attribute: ``persona``, ``user_id``, ``session_id`` or a feature key
(nested features are named ``outer.inner``)."""

ConditionScalar = (
    StrictBool | StrictInt | StrictFloat | Annotated[StrictStr, Field(max_length=1024)]
)
FlagKey = Annotated[str, Field(pattern=FLAG_KEY_PATTERN)]
VariantName = Annotated[str, Field(pattern=NAME_PATTERN)]
Percent = Annotated[float, Field(ge=0, le=100)]

_NAME = re.compile(NAME_PATTERN)
_SUM_TOLERANCE = 1e-9


def decision_point_name(key: str) -> str:
    """The automatic decision point of flag ``key``: ``flag.<key>``."""
    return DECISION_POINT_PREFIX + key


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Condition(BaseModel):
    """One test on one attribute of the evaluation context.

    ``eq``/``neq`` compare a scalar (numbers with numbers, strings with strings,
    booleans with booleans: ``"5"`` is not ``5``); ``in``/``not_in`` take a list;
    ``lt``/``lte``/``gt``/``gte`` take a number and hold only for numeric attributes.
    A missing attribute fails every test but ``neq`` and ``not_in``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute: Annotated[str, Field(pattern=ATTRIBUTE_PATTERN)]
    op: Operator
    value: ConditionScalar | Annotated[list[ConditionScalar], Field(max_length=10_000)]

    @model_validator(mode="after")
    def _value_fits_op(self) -> Self:
        where = f"condition on {self.attribute!r} ({self.op})"
        if self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"{where}: the value must be a non-empty list")
        elif isinstance(self.value, list):
            raise ValueError(f"{where}: the value must be one value, not a list (use in/not_in)")
        elif self.op in ("lt", "lte", "gt", "gte") and not _is_number(self.value):
            raise ValueError(f"{where}: the value must be a number")
        if isinstance(self.value, float) and not math.isfinite(self.value):
            raise ValueError(f"{where}: numbers must be finite")
        return self


class Split(BaseModel):
    """One slice of a rollout: ``weight`` percent of the bucketed traffic get ``variant``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str
    weight: Percent


class Rule(BaseModel):
    """A segment and what it gets; rules are evaluated in order and the first match decides.

    Exactly one outcome: ``variant`` (fixed, reason ``TARGETING_MATCH``), ``rollout``
    (sticky split summing to at most 100 %; the rest falls through to the next rule,
    reason ``SPLIT``) or ``personalized`` (the variants the bandit may choose from,
    reason ``PERSONALIZED``; a single variant is a fixed one).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(max_length=128)] | None = None
    personas: Annotated[list[str], Field(max_length=1024)] | None = None
    conditions: Annotated[list[Condition], Field(max_length=64)] = Field(default_factory=list)
    variant: str | None = None
    rollout: Annotated[list[Split], Field(max_length=256)] | None = None
    personalized: Annotated[list[str], Field(max_length=256)] | None = None

    @model_validator(mode="after")
    def _one_outcome(self) -> Self:
        given = [f for f in ("variant", "rollout", "personalized") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError(
                "a rule needs exactly one outcome: variant, rollout or personalized"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.personas is not None and not self.personas:
            raise ValueError("personas: an empty list matches nobody; leave it out for everyone")
        if self.rollout is not None:
            if not self.rollout:
                raise ValueError("rollout: give at least one variant with a weight")
            names = [split.variant for split in self.rollout]
            if len(set(names)) != len(names):
                raise ValueError("rollout: each variant may appear only once")
            total = sum(split.weight for split in self.rollout)
            if total > 100 + _SUM_TOLERANCE:
                raise ValueError(f"rollout weights sum to {total:g} %, more than 100 %")
        if self.personalized is not None:
            if not self.personalized:
                raise ValueError("personalized: list at least one variant the segment may get")
            if len(set(self.personalized)) != len(self.personalized):
                raise ValueError("personalized: each variant may appear only once")
        return self

    def variants_named(self) -> list[str]:
        """Every variant this rule may serve."""
        if self.variant is not None:
            return [self.variant]
        if self.rollout is not None:
            return [split.variant for split in self.rollout]
        return list(self.personalized or [])


_TYPE_CHECKS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "boolean": ("a boolean (true/false)", bool),
    "string": ("a string", str),
    "number": ("a number", (int, float)),
    "object": ("a JSON object", dict),
}


class FlagDefinition(BaseModel):
    """A flag as its team writes it: the body of ``PUT /v1/flags/{key}``.

    ``enabled`` is the kill switch: off, everyone gets ``default_variant`` (reason
    ``DISABLED``). ``holdout_share`` of the personalized evaluations stay on the
    default variant (the decision point's baseline arm). ``reward_map``,
    ``window_seconds``, ``aggregation`` and ``vw_args`` configure the automatic
    decision point ``flag.<key>``; left out, the decision point defaults apply.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: Annotated[str, Field(max_length=4096)] = ""
    type: FlagType
    variants: Annotated[dict[str, JsonValue], Field(min_length=1, max_length=256)]
    default_variant: str
    enabled: bool = True
    rules: Annotated[list[Rule], Field(max_length=256)] = Field(default_factory=list)
    holdout_share: Annotated[float, Field(ge=0, lt=1)] = 0.0
    reward_map: dict[str, float] | None = None
    window_seconds: float | None = None
    aggregation: Aggregation | None = None
    vw_args: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        label, kind = _TYPE_CHECKS[self.type]
        for name, value in self.variants.items():
            if not _NAME.match(name):
                raise ValueError(
                    f"variant name {name!r} is not allowed: "
                    "use 1-128 letters, digits, '_', '.', '-'"
                )
            is_bool = isinstance(value, bool)
            if not isinstance(value, kind) or (self.type == "number" and is_bool):
                raise ValueError(
                    f"variant {name!r}: {_article(self.type)} {self.type} flag needs {label}, "
                    f"got {value!r}"
                )
            if self.type == "number" and not math.isfinite(float(value)):  # type: ignore[arg-type]
                raise ValueError(f"variant {name!r}: numbers must be finite")
        if self.default_variant not in self.variants:
            raise ValueError(
                f"default_variant {self.default_variant!r} is not one of the variants "
                f"({', '.join(sorted(self.variants))})"
            )
        for index, rule in enumerate(self.rules):
            where = f"rules[{index}]" + (f" ({rule.name!r})" if rule.name else "")
            unknown = [v for v in rule.variants_named() if v not in self.variants]
            if unknown:
                raise ValueError(
                    f"{where}: unknown variant {', '.join(map(repr, unknown))}; "
                    f"the flag's variants are {', '.join(sorted(self.variants))}"
                )
        self._check_decision_point()
        return self

    def _check_decision_point(self) -> None:
        """Refuse decision-point settings the automatic decision point would refuse."""
        try:
            self.decision_point_update()
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"{field}: {first['msg']}") from None

    def is_personalized(self) -> bool:
        """Whether some rule lets the bandit choose (so the flag needs a decision point)."""
        return any(len(rule.personalized or ()) > 1 for rule in self.rules)

    def decision_point_update(self) -> DecisionPointUpdate:
        """The automatic decision point's settings: the variants as actions, the default
        first (the baseline arm serves the first candidate, so the holdout gets it)."""
        order = [self.default_variant] + [v for v in self.variants if v != self.default_variant]
        fields: dict[str, object] = {
            "actions": [Action(id=name) for name in order],
            "baseline_share": self.holdout_share,
            "baseline": "first",
        }
        for name in ("reward_map", "window_seconds", "aggregation", "vw_args"):
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        return DecisionPointUpdate.model_validate(fields)


class Flag(FlagDefinition):
    """A flag as stored: its definition plus key, version and who changed it last."""

    key: FlagKey
    version: Annotated[int, Field(ge=1)]
    updated_at: UtcTime
    updated_by: Annotated[str, Field(min_length=1, max_length=256)]

    def definition(self) -> FlagDefinition:
        """The definition alone (what a ``PUT`` would send)."""
        return FlagDefinition.model_validate(
            self.model_dump(exclude={"key", "version", "updated_at", "updated_by"})
        )

    def decision_point(self) -> DecisionPointConfig:
        """The automatic decision point ``flag.<key>`` kept in step with this flag."""
        return self.decision_point_update().named(decision_point_name(self.key))


class FlagEvaluationRequest(BaseModel):
    """Evaluate one flag (``POST /v1/flags/{key}/evaluate``) or all of them
    (``POST /v1/flags/evaluate``, ``keys`` to restrict)."""

    model_config = ConfigDict(extra="forbid")

    context: Context = Field(default_factory=Context)
    # An explicit persona wins over every other source, as for decisions.
    persona: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    event_id: EventId | None = None
    timestamp: UtcTime | None = None
    keys: Annotated[list[FlagKey], Field(max_length=1024)] | None = None


class FlagEvaluation(BaseModel):
    """One flag's value for one context, the variant, and why.

    ``event_id`` is set for ``PERSONALIZED`` (the exposure's decision id, for
    outcomes); ``error_code``/``error_message`` go with reason ``ERROR``.
    """

    key: str
    value: JsonValue
    variant: str | None
    reason: Reason
    event_id: str | None = None
    persona: str
    flag_version: int | None = None
    error_code: ErrorCode | None = None
    error_message: str | None = None


class FlagsEvaluation(BaseModel):
    """Every requested flag's evaluation, by key."""

    flags: dict[str, FlagEvaluation]


class FlagChange(BaseModel):
    """One entry of a flag's audit history (``GET /v1/flags/{key}/history``, newest first).

    ``diff`` lists what changed, one ``{"path", "before", "after"}`` per leaf
    (paths like ``rules/0/variant``); ``flag`` is the definition after the
    change, ``None`` after a delete.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    version: int
    timestamp: UtcTime
    by: str
    action: ChangeAction
    diff: list[dict[str, JsonValue]] = Field(default_factory=list)
    flag: Flag | None = None
