"""VWPolicy's direct pylibvw path gives exactly what pyvw's documented path gives.

``learn_lines``/``predict_lines`` skip pyvw's per-line ``Example`` wrappers; the same
sequence of learn and predict calls through ``Workspace.parse`` + ``learn``/``predict``
must give equal pmfs at every step and byte-equal saved models.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import vowpalwabbit

from learnloop.featurizer import example, labelled
from learnloop.policy import VWPolicy
from schemas.config import DEFAULT_VW_ARGS
from schemas.features import Action, Context

ACTIONS = [Action(id=a, features={"price": p}) for a, p in (("a", 1.0), ("b", 2.5), ("c", 9.0))]


def _stream(n: int, seed: int = 7) -> list[tuple[list[str], list[str]]]:
    """(unlabelled, labelled) lines of ``n`` varied decisions (numeric context features)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        context = Context(
            features={"page": rng.choice(["home", "cart"]), "hour": rng.randint(0, 23)}
        )
        lines = example(context, rng.choice(["builder", "visitor"]), ACTIONS)
        chosen = rng.randrange(len(ACTIONS))
        reward = float(chosen == 2 and "cart" in lines[0])
        out.append((lines, labelled(lines, chosen, reward, 1 / len(ACTIONS))))
    return out


def _pyvw_learn(ws: vowpalwabbit.Workspace, lines: list[str]) -> list[float]:
    examples = ws.parse(lines, vowpalwabbit.LabelType.CONTEXTUAL_BANDIT)
    ws.learn(examples)
    pmf = list(examples[0].get_action_scores())
    ws.finish_example(examples)
    return pmf


def _pyvw_predict(ws: vowpalwabbit.Workspace, lines: list[str]) -> list[float]:
    examples = ws.parse(lines, vowpalwabbit.LabelType.CONTEXTUAL_BANDIT)
    ws.predict(examples)
    pmf = list(examples[0].get_action_scores())
    ws.finish_example(examples)
    return pmf


def test_direct_path_equals_pyvw_path_step_by_step(tmp_path: Path) -> None:
    policy = VWPolicy(DEFAULT_VW_ARGS)
    reference = vowpalwabbit.Workspace(f"{DEFAULT_VW_ARGS} --quiet")
    try:
        for step, (lines, training) in enumerate(_stream(300)):
            if step % 3 == 0:  # interleave predictions, as the decision service does
                assert policy.predict_lines(lines) == _pyvw_predict(reference, lines)
            assert policy.learn_lines(training) == _pyvw_learn(reference, training)
        reference.save(str(tmp_path / "reference.vw"))
        assert policy.to_bytes() == (tmp_path / "reference.vw").read_bytes()
    finally:
        policy.close()
        reference.finish()


def test_direct_path_learns_from_a_loaded_model() -> None:
    stream = _stream(200, seed=3)
    first = VWPolicy(DEFAULT_VW_ARGS)
    for _, training in stream[:100]:
        first.learn_lines(training)
    model = first.to_bytes()
    first.close()
    resumed, again = VWPolicy(DEFAULT_VW_ARGS, model), VWPolicy(DEFAULT_VW_ARGS, model)
    try:
        for lines, training in stream[100:]:
            assert resumed.learn_lines(training) == again.learn_lines(training)
            assert resumed.predict_lines(lines) == again.predict_lines(lines)
        pmf = resumed.predict_lines(stream[0][0])
        assert len(pmf) == len(ACTIONS) and abs(sum(pmf) - 1.0) < 1e-6
    finally:
        resumed.close()
        again.close()


def test_predict_through_the_protocol_matches_predict_lines() -> None:
    policy = VWPolicy(DEFAULT_VW_ARGS)
    try:
        for _, training in _stream(50):
            policy.learn_lines(training)
        context = Context(features={"page": "cart", "hour": 20})
        expected = policy.predict_lines(example(context, "builder", ACTIONS))
        total = math.fsum(expected)  # predict() renormalises VW's float32 scores
        assert policy.predict(context, "builder", ACTIONS) == [p / total for p in expected]
    finally:
        policy.close()
