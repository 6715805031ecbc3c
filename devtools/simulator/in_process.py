"""The learnability check without a server: the shop against an in-process VW policy
that learns each decision only after its window closed (as the service does).

The persona each decision carries is the service's without a persona model
(``visitor`` when anonymous, else ``unclassified``) unless a persona function is
given: :func:`true_persona` (what a perfect classifier would say),
:func:`persona_table` (e.g. a trained classifier's answer for each shopper's profile),
or any visit -> persona function. On the same
seed the traffic, the outcomes and the exploration draws are the same, so the runs
compare the personas alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from devtools.simulator.delayed_learner import DelayedLearner
from devtools.simulator.front_end import CONTEXTS, front_end_features
from devtools.simulator.ledger import Ledger, SimulationReport
from devtools.simulator.logged import service_persona
from devtools.simulator.shop import ACTIONS, MEAN_GAP, Shop, Visit
from learnloop.errors import ConfigurationError
from learnloop.policy import sample
from schemas.events import DecisionEvent
from schemas.features import Action, Context

PersonaFunction = Callable[[Visit], str]
"""A visit -> the persona its decision carries."""


def true_persona(visit: Visit) -> str:
    """The hidden truth for a logged-in shopper; ``visitor`` when anonymous, as served."""
    return "visitor" if visit.shopper.user_id is None else visit.persona


def persona_table(personas: Mapping[str, str], default: str = "unclassified") -> PersonaFunction:
    """Personas looked up by user id (e.g. a classifier's answer for each profile):
    ``visitor`` when anonymous, ``default`` for a user the table does not know.

    >>> from datetime import UTC, datetime
    >>> from devtools.simulator.shop import Shopper
    >>> look_up = persona_table({"u1": "builder"})
    >>> def visit(user):
    ...     return Visit(0, datetime.now(UTC), "s", Shopper("consultant", user, {}), {})
    >>> look_up(visit("u1")), look_up(visit("u2")), look_up(visit(None))
    ('builder', 'unclassified', 'visitor')
    """

    def look_up(visit: Visit) -> str:
        user = visit.shopper.user_id
        return "visitor" if user is None else personas.get(user, default)

    return look_up


def run_in_process(
    vw_args: str,
    decisions: int = 20000,
    seed: int = 7,
    release_every: int = 200,
    window_seconds: float = 20.0,
    mean_gap_seconds: float = MEAN_GAP,
    shop: str = "mlm",
    exploration_seed: int | None = None,
    context: str = "full",
    persona: PersonaFunction = service_persona,
) -> SimulationReport:
    """Learn from the shop in-process the way the service does, to measure learnability.

    A decision is learned only once event time passes its window (with its
    realised in-window reward); decisions are served by a copy of the model
    released every ``release_every`` learned examples, or by the learning
    workspace itself with ``release_every=1`` (predicting changes nothing in VW's
    state, so that is the freshest serving there is, without 20,000 reloads).
    ``shop`` names the hidden rule (:mod:`devtools.simulator.rules`).
    ``exploration_seed`` changes the event ids, hence every exploration draw, on the
    same traffic: the spread it causes is the noise floor of any comparison with a
    service (which draws with its own event ids).
    ``context`` is what the front end sends (``full`` or ``minimal``, as
    :func:`~devtools.simulator.driver.run_simulation`); ``persona`` resolves each
    decision's persona (it is scored against the truth in the report).
    """
    if release_every < 1:
        raise ConfigurationError("release_every must be at least 1")
    if context not in CONTEXTS:
        raise ConfigurationError(
            f"unknown context {context!r}: choose one of {', '.join(CONTEXTS)}"
        )
    model = Shop(seed, window_seconds, mean_gap_seconds=mean_gap_seconds, rule=shop)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ledger = Ledger(model, decisions, seed, purchases=False)
    learner = DelayedLearner(vw_args, release_every)
    actions = [Action(id=a) for a in ACTIONS]
    began = time.monotonic()
    draws = "" if exploration_seed is None else f"{exploration_seed}-"
    last = start
    for visit in model.visits(start, decisions):
        last = visit.timestamp
        learner.advance(visit.timestamp)
        user = visit.shopper.user_id
        features = front_end_features(visit, context)
        seen = Context(user_id=user, session_id=visit.session_id, features=features)
        served = persona(visit)
        event_id = f"sim-{seed}-{draws}{visit.index}"
        pmf = learner.serving.predict(seen, served, actions)
        chosen = sample(pmf, event_id)
        reward = ledger.record(visit, ACTIONS[chosen], event_id, served)
        decision = DecisionEvent(
            timestamp=visit.timestamp,
            event_id=event_id,
            decision_point="home_products",
            context=seen,
            persona=served,
            actions=actions,
            chosen_index=chosen,
            probabilities=pmf,
            model_version=f"sim-{learner.learned}",
        )
        deadline = visit.timestamp + timedelta(seconds=window_seconds)
        learner.hold(deadline, visit.index, decision, reward)
    learner.close()
    ledger.due()
    return ledger.report(
        wall_seconds=time.monotonic() - began,
        simulated_seconds=(last - start).total_seconds(),
    )
