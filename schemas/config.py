"""Configuration of a decision point: its actions, learner and reward rule.

:class:`DecisionPointConfig` is the one configuration type: config files, the
stores, the API's answers and every service read it. :class:`DecisionPointUpdate`
is only the body of ``PUT /v1/decision-points/{name}``, whose path gives the name.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.features import NAME_PATTERN, Action, FiniteNumber, check_unique_actions

Aggregation = Literal["max", "sum", "first"]
DirectAggregation = Literal["latest", "first", "mean"]
LearningMode = Literal["online", "apprentice", "logging"]

DEFAULT_VW_ARGS = "--cb_explore_adf --squarecb --gamma_scale 50 --cubic cca -q ca -q ua"
DEFAULT_REWARD_MAP: dict[str, float] = {"basket_add": 3.0, "detail_view": 1.0}


class _DecisionPointFields(BaseModel):
    """The fields of a decision point but its name, written once for both models below."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: list[Action] = Field(default_factory=list, max_length=256)
    vw_args: str = DEFAULT_VW_ARGS
    reward_map: dict[str, FiniteNumber] = Field(default_factory=lambda: dict(DEFAULT_REWARD_MAP))
    window_seconds: Annotated[float, Field(gt=0, le=172_800)] = 20.0
    aggregation: Aggregation = "max"
    direct_aggregation: DirectAggregation = "latest"
    """How several rewards posted directly for one decision become its reward: the
    ``latest`` one, the ``first`` one (Personalizer's ``earliest``) or their ``mean``
    (Personalizer's ``average``). A direct reward always overrides the outcomes."""
    default_reward: FiniteNumber = 0.0
    skew_tolerance_seconds: Annotated[float, Field(ge=0, le=3_600)] = 2.0
    baseline_share: Annotated[float, Field(ge=0, le=1)] = 0.0
    baseline: Literal["uniform", "first"] = "uniform"
    learning_mode: LearningMode = "online"
    """``online``: the learned policy serves and learns. ``apprentice``: the first candidate
    (the baseline) is served, logged with probability 1 on the ``apprentice`` arm, and the
    learner learns from it and measures how often its own choice would have been the
    baseline's. ``logging``: the baseline is served on the ``logging`` arm and nothing is
    learned; the log stays for offline evaluation."""
    """What the baseline arm serves: ``uniform`` random over the candidates (a randomized
    control), or the ``first`` candidate (a holdout on a default, e.g. a flag's default
    variant). Either way the logged probabilities are the mixture the draw really had."""

    @field_validator("actions")
    @classmethod
    def _unique(cls, actions: list[Action]) -> list[Action]:
        return check_unique_actions(actions)

    @field_validator("vw_args")
    @classmethod
    def _cb_adf(cls, args: str) -> str:
        words = args.split()
        if "--cb_explore_adf" not in words:
            raise ValueError("vw_args must contain --cb_explore_adf (learnloop serves ADF bandits)")
        bad = sorted(_FORBIDDEN_VW_ARGS.intersection(words))
        if bad:
            raise ValueError(f"vw_args may not name files or servers: remove {', '.join(bad)}")
        return args


class DecisionPointConfig(_DecisionPointFields):
    """A decision point: a named learning loop and everything the decision service,
    the join and the learner need to know about it."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]


class DecisionPointUpdate(_DecisionPointFields):
    """The body of ``PUT /v1/decision-points/{name}``: a :class:`DecisionPointConfig`
    without its name, which the path gives."""

    def named(self, name: str) -> DecisionPointConfig:
        return DecisionPointConfig(name=name, **self.model_dump())


_FORBIDDEN_VW_ARGS = frozenset(
    {
        "-d",
        "--data",
        "-f",
        "--final_regressor",
        "-i",
        "--initial_regressor",
        "--cache_file",
        "-c",
        "--cache",
        "--daemon",
        "--port",
        "-p",
        "--predictions",
        "--readable_model",
        "--invert_hash",
        "--save_resume",
    }
)
