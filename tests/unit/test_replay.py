"""Replay evaluation: progressive semantics, fixed candidates against hand-computed
estimates, coverage of a known true value, a learner beating uniform, floors, timeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from learnloop.errors import InvalidInput
from learnloop.featurizer import CachedFeaturizer
from learnloop.policy import VWPolicy
from offline_learner.candidates import (
    Baseline,
    Constant,
    LoggedPolicy,
    Uniform,
    VWCandidate,
    parse_candidates,
)
from offline_learner.estimators import DM, IPS, SNIPS
from offline_learner.replay import evaluate
from offline_learner.reward_model import RewardModel
from offline_learner.training import example_lines, fit
from schemas.events import JoinedExample
from tests.unit.synthetic_log import ACTIONS, CLICK, best_value, logged, true_constant_value

GOOD_VW = "--cb_explore_adf --epsilon 0.05 -q ca"


@pytest.fixture(scope="module")
def uniform_log() -> list[JoinedExample]:
    return logged(3000, seed=1)


def _arrays(rows: list[JoinedExample], action: str | None) -> dict[str, np.ndarray]:
    """Rewards, propensities and the target probability of a constant (or uniform) policy."""
    chosen = [r.decision.chosen_action for r in rows]
    target = [1.0 / len(ACTIONS) if action is None else float(a == action) for a in chosen]
    return {
        "rewards": np.array([r.reward for r in rows]),
        "logging_propensities": np.array([r.decision.chosen_probability for r in rows]),
        "target_probabilities": np.array(target),
    }


def test_fixed_candidates_equal_hand_computed_estimates() -> None:
    rows = logged(1500, seed=2, epsilon=0.3, greedy="a1")
    evaluation = evaluate(
        rows, [Constant("a2"), Uniform(), LoggedPolicy()], estimators=("IPS", "SNIPS")
    )
    for name, action in (("constant:a2", "a2"), ("uniform", None)):
        arrays = _arrays(rows, action)
        for label, estimator in (("IPS", IPS()), ("SNIPS", SNIPS())):
            got, want = evaluation.candidate(name).estimates[label], estimator.estimate(**arrays)
            assert got is not None
            assert (got.value, got.lower, got.upper, got.effective_sample_size) == pytest.approx(
                (want.value, want.lower, want.upper, want.effective_sample_size), rel=1e-9
            )


def test_logged_candidate_is_the_logged_mean_reward() -> None:
    rows = logged(800, seed=3, epsilon=0.2)
    result = evaluate(rows, [LoggedPolicy()]).candidate("logged")
    mean = float(np.mean([r.reward for r in rows]))
    for label in ("IPS", "SNIPS"):
        estimate = result.estimates[label]
        assert estimate is not None and estimate.value == pytest.approx(mean, rel=1e-12)
    assert result.difference is None
    assert result.probability_floor == pytest.approx(0.2 / 3)


def test_best_constant_interval_covers_its_true_value(uniform_log: list[JoinedExample]) -> None:
    evaluation = evaluate(uniform_log, [Constant(a) for a in ACTIONS])
    values = {a: true_constant_value(uniform_log, a) for a in ACTIONS}
    best = max(values, key=values.__getitem__)
    result = evaluation.candidate(f"constant:{best}")
    for label in ("IPS", "SNIPS", "DR", "SNDR"):
        estimate = result.estimates[label]
        assert estimate is not None and estimate.contains(values[best]), label


def test_progressive_pmf_is_the_one_before_learning(uniform_log: list[JoinedExample]) -> None:
    rows = uniform_log[:400]
    by_hand, featurizer, model = VWPolicy(GOOD_VW), CachedFeaturizer(), RewardModel()
    weights, q = [], []
    for row in rows:
        labelled = example_lines(featurizer, row)[1]
        pmf = by_hand.learn_lines(labelled)  # VW predicts on the way into learn
        rhat = model.learn(labelled)
        weights.append(pmf[row.decision.chosen_index])
        q.append(float(np.dot(pmf, rhat)))
    by_hand.close()
    model.close()
    arrays = _arrays(rows, None)
    arrays["target_probabilities"] = np.array(weights)
    result = evaluate(rows, [VWCandidate("vw", GOOD_VW)], estimators=("IPS", "DM")).candidate("vw")
    ips, dm = result.estimates["IPS"], result.estimates["DM"]
    assert ips is not None and ips.value == pytest.approx(IPS().estimate(**arrays).value, rel=1e-9)
    assert dm is not None and dm.value == pytest.approx(
        DM().estimate(**arrays, target_predicted_rewards=q).value, rel=1e-9
    )
    # The first example is scored by an untrained model: VW's uniform start.
    assert weights[0] == pytest.approx(1.0 / 3)


def test_a_context_aware_learner_beats_uniform(uniform_log: list[JoinedExample]) -> None:
    evaluation = evaluate(uniform_log, [VWCandidate("vw", GOOD_VW), Uniform()])
    vw, uniform = evaluation.candidate("vw"), evaluation.candidate("uniform")
    assert vw.estimates["SNIPS"] is not None and uniform.estimates["SNIPS"] is not None
    # Uniform is worth ~0.33 here, the best policy ~0.70: a margin chance cannot make.
    assert vw.estimates["SNIPS"].value > uniform.estimates["SNIPS"].value + 0.2
    assert vw.difference is not None and vw.difference.lower > 0.15
    assert vw.estimates["SNIPS"].value < best_value(uniform_log) + 0.05
    assert vw.probability_floor == pytest.approx(0.05 / 3, rel=1e-3)


def test_no_reference_no_differences() -> None:
    evaluation = evaluate(logged(100, seed=13), [Uniform()], reference=None)
    assert [c.name for c in evaluation.candidates] == ["uniform"]
    assert evaluation.candidate("uniform").difference is None


def test_floors_and_fallbacks() -> None:
    rows = logged(300, seed=4)
    evaluation = evaluate(
        rows, [Uniform(), Baseline(), Baseline("a2", name="b2"), Constant("gone")]
    )
    assert evaluation.candidate("uniform").probability_floor == pytest.approx(1 / 3)
    assert evaluation.candidate("baseline").probability_floor == 0.0
    gone = evaluation.candidate("constant:gone")
    assert gone.fallbacks == 300 and evaluation.candidate("b2").fallbacks == 0
    # Falling back to the first action: the same estimate as the baseline's.
    assert gone.estimates["SNIPS"] == evaluation.candidate("baseline").estimates["SNIPS"]


def test_inactive_examples_are_neither_learned_nor_estimated() -> None:
    rows = logged(600, seed=5, inactive_every=3)
    evaluation = evaluate(rows, [LoggedPolicy()], estimators=("IPS",))
    active = [r for r in rows if r.decision.activated]
    assert (evaluation.n, evaluation.inactive) == (400, 200)
    estimate = evaluation.candidate("logged").estimates["IPS"]
    assert estimate is not None
    assert estimate.value == pytest.approx(np.mean([r.reward for r in active]), rel=1e-12)


def test_over_time_is_cumulative_bounded_and_ends_at_the_estimate() -> None:
    rows = logged(2500, seed=6)
    evaluation = evaluate(rows, [Constant("a0"), Uniform()], points=20)
    series = evaluation.candidate("constant:a0").over_time
    assert 10 <= len(series) <= 21
    ns = [p.n for p in series]
    assert ns == sorted(ns) and ns[-1] == 2500
    steps = np.diff(ns[:-1])
    assert len(set(steps.tolist())) == 1  # evenly spaced
    final = evaluation.candidate("constant:a0").estimates["SNIPS"]
    assert final is not None and series[-1].value == pytest.approx(final.value)
    k = ns[len(ns) // 2]
    assert series[len(ns) // 2].logged == pytest.approx(np.mean([r.reward for r in rows[:k]]))
    assert series[-1].end == "2026-01-01T00:41:39Z"


def test_payload_shape_is_json() -> None:
    payload = evaluate(logged(200, seed=7), parse_candidates(["uniform", "baseline"])).to_dict()
    json.dumps(payload)
    assert payload["kind"] == "evaluation" and payload["reference"] == "logged"
    assert [c["name"] for c in payload["candidates"]] == ["logged", "uniform", "baseline"]
    uniform = payload["candidates"][1]
    assert set(uniform["estimates"]) == {"IPS", "SNIPS", "DM", "DR", "SNDR"}
    assert set(uniform["difference"]) == {
        "estimator", "value", "lower", "upper", "level", "interval", "n",
        "effective_sample_size", "max_weight",
    }  # fmt: skip
    assert set(uniform["over_time"][0]) == {"end", "n", "logged", "value"}


def test_reward_model_converges_on_a_deterministic_reward() -> None:
    model = RewardModel()
    featurizer = CachedFeaturizer()
    for row in logged(3000, seed=8, deterministic=True):
        model.learn(example_lines(featurizer, row)[1])
    for page in ("home", "cart", "search"):
        row = next(r for r in logged(30, seed=9) if r.decision.context.features["page"] == page)
        predicted = model.predict(example_lines(featurizer, row)[0])
        assert predicted == pytest.approx([CLICK[(page, a)] for a in ACTIONS], abs=0.03)
    model.close()


def test_reward_model_predicts_as_a_workspace_driven_through_pyvw() -> None:
    import vowpalwabbit

    model, featurizer = RewardModel(), CachedFeaturizer()
    by_hand = vowpalwabbit.Workspace("--cb_adf --cb_type mtr -q ca -q ua --quiet")
    for row in logged(300, seed=15):
        labelled = example_lines(featurizer, row)[1]
        examples = by_hand.parse(labelled, vowpalwabbit.LabelType.CONTEXTUAL_BANDIT)
        by_hand.learn(examples)
        expected = [-s for s in examples[0].get_action_scores()]
        by_hand.finish_example(examples)
        assert model.learn(labelled) == expected
    model.close()
    by_hand.finish()


def test_fit_learns_only_activated_examples_in_order() -> None:
    rows = logged(1500, seed=10, inactive_every=2)
    policy = fit(rows, GOOD_VW)
    row = next(r for r in rows if r.decision.context.features["page"] == "cart")
    pmf = policy.predict(row.decision.context, "visitor", row.decision.actions)
    policy.close()
    assert pmf[ACTIONS.index("a1")] > 0.9


def test_parse_candidates_and_refusals() -> None:
    specs = ["logged", "baseline:a1", "constant:a2", "vw:--cb_explore_adf"]
    parsed = parse_candidates([*specs, "fast=vw:--cb_explore_adf -q ca"])
    assert [(c.name, c.kind) for c in parsed] == [
        ("logged", "logged"), ("baseline", "baseline"), ("constant:a2", "constant"),
        ("vw", "vw"), ("fast", "vw"),
    ]  # fmt: skip
    with pytest.raises(InvalidInput, match="named"):
        parse_candidates(["uniform", "uniform"])
    with pytest.raises(InvalidInput, match="not understood"):
        parse_candidates(["greedy"])
    rows = logged(50, seed=11)
    with pytest.raises(InvalidInput, match="VW refused"):
        evaluate(rows, [VWCandidate("bad", "--cb_explore_adf --bogus")])
    with pytest.raises(InvalidInput, match="primary"):
        evaluate(rows, [Uniform()], estimators=("IPS",), primary="SNIPS")
    with pytest.raises(InvalidInput, match="at least 2"):
        evaluate(rows[:1], [Uniform()])


def test_evaluate_command_prints_the_payload(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from offline_learner.dataset import Dataset
    from runtime.cli import cli

    Dataset.from_examples(logged(300, seed=12)).write_parquet(tmp_path / "ds")
    args = ["offline", "evaluate", str(tmp_path / "ds"), "-c", "uniform", "-c", "constant:a1"]
    result = CliRunner().invoke(cli, [*args, "--json", "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    assert payload["kind"] == "evaluation" and payload["dataset"]["rows"] == 300
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    refused = CliRunner().invoke(cli, ["offline", "evaluate", str(tmp_path / "ds"), "-c", "x"])
    assert refused.exit_code == 2
