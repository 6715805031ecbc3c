"""What a bandit can learn of a flag on the simulated traffic, without a server.

The anchor for :func:`~devtools.simulator.flag_driver.run_flag_simulation`: raw VW
(:class:`~learnloop.policy.VWPolicy`, by default with the decision point's default
arguments) on the same visits, the flag's variants as the actions (the default first,
as the automatic decision point lists them), the persona in the ``u`` namespace and the
front end's features as the context. Each exposure is learned only once event time
passes its window, with its realised in-window reward, as the service does; a share
``holdout_share`` of exposures (by the same event-id draw as the service,
:func:`~devtools.simulator.flag_ledger.exposure_arm`) is served the default variant (arm
``baseline``: the flag's decision point has ``baseline = "first"``), and every exposure
is logged with the probabilities the draw really had, as the decision service logs it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from devtools.simulator.delayed_learner import DelayedLearner
from devtools.simulator.flag_ledger import FlagLedger, FlagSimulationReport, exposure_arm
from devtools.simulator.flags import FlagModel, FlagPreference
from devtools.simulator.front_end import CONTEXTS, front_end_features
from devtools.simulator.in_process import PersonaFunction, true_persona
from devtools.simulator.shop import MEAN_GAP
from learnloop.errors import ConfigurationError
from learnloop.policy import draw, uniforms_for
from schemas.config import DEFAULT_VW_ARGS
from schemas.events import DecisionEvent
from schemas.features import Action, Context


def run_flag_anchor(
    flag: str | FlagPreference,
    decisions: int = 4000,
    seed: int = 7,
    *,
    vw_args: str = DEFAULT_VW_ARGS,
    holdout_share: float = 0.1,
    window_seconds: float = 20.0,
    release_every: int = 200,
    context: str = "minimal",
    persona: PersonaFunction = true_persona,
    mean_gap_seconds: float = MEAN_GAP,
    exploration_seed: int | None = None,
) -> FlagSimulationReport:
    """Learn flag ``flag`` in-process on ``decisions`` seeded visits; the same report as
    the HTTP driver's.

    ``persona`` is what each exposure carries (:func:`true_persona` by default: the truth
    for logged-in shoppers, ``visitor`` when anonymous, as a front end that knows its
    customers' roles sends it); ``release_every`` how many learned exposures pass between
    releases of the serving model (1: the learning workspace itself serves).
    ``exploration_seed`` changes the event ids, hence every exploration and holdout draw,
    on the same traffic: the spread it causes is the noise floor of a comparison.
    """
    if release_every < 1 or decisions < 1:
        raise ConfigurationError("decisions and release_every must be at least 1")
    if context not in CONTEXTS:
        raise ConfigurationError(
            f"unknown context {context!r}: choose one of {', '.join(CONTEXTS)}"
        )
    if not 0.0 <= holdout_share < 1.0:
        raise ConfigurationError("holdout_share must be in [0, 1)")
    model = FlagModel(flag, seed, window_seconds, mean_gap_seconds=mean_gap_seconds)
    key = model.preference.key
    ledger = FlagLedger(model, decisions, holdout_share)
    learner = DelayedLearner(vw_args, release_every)
    actions = [Action(id=v) for v in model.variants]
    began = time.monotonic()
    draws = "" if exploration_seed is None else f"{exploration_seed}-"
    start = last = datetime(2026, 1, 1, tzinfo=UTC)
    for visit in model.visits(start, decisions):
        last = visit.timestamp
        learner.advance(visit.timestamp)
        features = front_end_features(visit, context)
        seen = Context(
            user_id=visit.shopper.user_id, session_id=visit.session_id, features=features
        )
        served = persona(visit)
        event_id = f"sim-flag-{seed}-{draws}{visit.index}"
        arm = exposure_arm("PERSONALIZED", event_id, holdout_share)
        # As the flag's decision point serves: the baseline arm (the holdout) takes the
        # first candidate, the default; the logged probabilities are the real mixture.
        pmf = learner.serving.predict(seen, served, actions)
        offered = actions
        chosen = 0 if arm == "holdout" else draw(pmf, uniforms_for(event_id)[1])
        probabilities = [
            holdout_share * (i == 0) + (1.0 - holdout_share) * p for i, p in enumerate(pmf)
        ]
        reward = ledger.record(visit, offered[chosen].id, "PERSONALIZED", event_id, served, arm)
        decision = DecisionEvent(
            timestamp=visit.timestamp,
            event_id=event_id,
            decision_point=f"flag.{key}",
            context=seen,
            persona=served,
            actions=offered,
            chosen_index=chosen,
            probabilities=probabilities,
            model_version=f"sim-{learner.learned}",
            arm="baseline" if arm == "holdout" else "learned",
        )
        deadline = visit.timestamp + timedelta(seconds=window_seconds)
        learner.hold(deadline, visit.index, decision, reward)
    learner.close()
    ledger.due()
    return ledger.report(
        wall_seconds=time.monotonic() - began,
        simulated_seconds=(last - start).total_seconds(),
    )
