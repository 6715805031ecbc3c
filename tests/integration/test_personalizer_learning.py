"""A short learning run through the unchanged ``PersonalizerClient``: the loop learns.

The user's ``kind`` (a, b or c) decides which article (x, y or z) earns a reward of 1;
every other choice earns 0. The client ranks and rewards a few hundred times, paced in
real time (the service stamps each rank with its own clock, and a reward wait of 5 s
is the shortest Personalizer allows), on the default ``/personalizer`` loop. Over the
last quarter the service must choose the rewarded article well above chance (1/3).

The loop keeps its default learning settings (``PERSONALIZER_VW_ARGS``: Personalizer's
epsilon-greedy explorer with VW's own learning rate; Personalizer's constant
``-l 0.001`` needs thousands of events here, ``bench/personalizer_learning.py``).

The anchor is raw VW (``vowpalwabbit.Workspace``) with the same arguments on the same
sequence of users, learning each event once the same wait has passed on the service's
wall-clock times: what a bandit with this delay can learn of this traffic.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator

import pytest
import vowpalwabbit

from app.personalizer.loop import PERSONALIZER_VW_ARGS
from tests.integration.personalizer_deployment import (
    WAIT_SECONDS,
    Deployment,
    embedded_deployment,
    rank_body,
)

pytestmark = pytest.mark.integration

# Another seed for a measurement: PERSONALIZER_LEARNING_SEED=7 pytest this file -s.
SEED = int(os.environ.get("PERSONALIZER_LEARNING_SEED", "20260301"))
ROUNDS = 300
RATE = 20.0  # rounds per second: ~6 s of model delay is ~120 rounds
KINDS = "abc"
ACTIONS = ["x", "y", "z"]
BEST = dict(zip(KINDS, ACTIONS, strict=True))
MODEL_DELAY = WAIT_SECONDS + 1.0  # the window, then join, learner, release and swap


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("personalizer-learning")
    env = {"LEARNLOOP_RELEASE_EVERY_EXAMPLES": "10"}
    with embedded_deployment(root, workers=1, env=env) as deployment:
        yield deployment


def anchor(kinds: list[str], times: list[float], delay: float, seed: int) -> list[bool]:
    """Raw VW on the same users at the same times: whether it chose the best article."""
    vw = vowpalwabbit.Workspace(PERSONALIZER_VW_ARGS + " --quiet")
    rng = random.Random(seed)
    waiting: list[tuple[float, list[str]]] = []
    hits = []
    try:
        for kind, now in zip(kinds, times, strict=True):
            while waiting and waiting[0][0] + delay <= now:
                vw.learn(waiting.pop(0)[1])
            lines = [f"shared |user kind={kind}"] + [f"|action name={a}" for a in ACTIONS]
            pmf = vw.predict(lines)
            draw, total, chosen = rng.random(), 0.0, len(ACTIONS) - 1
            for index, probability in enumerate(pmf):
                total += probability
                if draw < total:
                    chosen = index
                    break
            reward = 1.0 if ACTIONS[chosen] == BEST[kind] else 0.0
            hits.append(reward == 1.0)
            labelled = list(lines)
            labelled[chosen + 1] = f"0:{-reward}:{pmf[chosen]} {lines[chosen + 1]}"
            waiting.append((now, labelled))
    finally:
        vw.finish()
    return hits


def rate(hits: list[bool]) -> float:
    return sum(hits) / len(hits)


def test_the_client_sees_the_best_article_chosen_well_above_chance(
    deployment: Deployment,
) -> None:
    client, admin = deployment.loop(None)  # the default loop, at {endpoint}/personalizer
    assert admin.get_policy()["arguments"] == PERSONALIZER_VW_ARGS
    deployment.settle()  # the join reads the 5 s wait
    users = random.Random(SEED)
    kinds = [users.choice(KINDS) for _ in range(ROUNDS)]
    times: list[float] = []
    hits: list[bool] = []
    start = time.monotonic()
    for n, kind in enumerate(kinds):
        pause = start + n / RATE - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        times.append(time.monotonic())
        answer = client.rank(rank_body(kind, actions=ACTIONS, eventId=f"learn-{SEED}-{n}"))
        chosen = answer["rewardActionId"]
        client.reward(answer["eventId"], {"value": 1.0 if chosen == BEST[kind] else 0.0})
        hits.append(chosen == BEST[kind])
    elapsed = time.monotonic() - start

    quarter = ROUNDS // 4
    served = rate(hits[-quarter:])
    raw = rate(anchor(kinds, times, MODEL_DELAY, SEED)[-quarter:])
    model = deployment.model("personalizer")
    print(
        f"\nlast {quarter} of {ROUNDS} rounds ({elapsed:.0f} s): learnloop chose the best "
        f"article {served:.2f}, raw VW {raw:.2f}, chance 0.33; the service learned "
        f"{model['examples_learned']} examples"
    )
    assert model["vw_args"] == PERSONALIZER_VW_ARGS
    assert model["examples_learned"] >= ROUNDS // 2
    assert served >= 0.6, f"learnloop {served:.2f}, raw VW {raw:.2f}"
    assert served >= raw - 0.15, f"learnloop {served:.2f} far below raw VW {raw:.2f}"
