"""Policy search: seeded trials on a temporal split, ranked by the paired difference's
lower bound, failed trials recorded, and a setting better than a weak current found."""

from __future__ import annotations

import json

import optuna
import pytest

from learnloop.errors import InvalidInput
from offline_learner.search import optimize
from offline_learner.search_space import SearchSpace, suggest_vw_args
from schemas.events import JoinedExample
from tests.unit.synthetic_log import logged

WEAK = "--cb_explore_adf --epsilon 0.3"
"""No interactions: it cannot tell the pages apart, while each page has its own best action."""


@pytest.fixture(scope="module")
def split() -> tuple[list[JoinedExample], list[JoinedExample]]:
    rows = logged(2400, seed=21)
    return rows[:1700], rows[1700:]


def test_search_finds_a_setting_significantly_better_than_a_weak_current(
    split: tuple[list[JoinedExample], list[JoinedExample]],
) -> None:
    fit_rows, eval_rows = split
    finished: list[int] = []
    result = optimize(
        fit_rows, eval_rows, current_vw_args=WEAK, trials=6, seed=3, progress=finished.append
    )
    assert sum(finished) == 6 and len(result.trials) == 6
    complete = [t for t in result.trials if t.state == "complete"]
    lowers = [t.difference.lower for t in complete if t.difference]
    assert lowers == sorted(lowers, reverse=True)  # ranked by the lower bound, best first
    best = result.best
    assert best is not None and best is result.trials[0]
    assert result.significantly_better and best.difference is not None
    assert best.difference.lower > 0.1  # a margin no lucky draw of a weak policy reaches
    interactions = ("-q ca", "--cubic cca", "--cubic cua", "-q aa")
    assert any(i in best.vw_args for i in interactions[:3])
    payload = result.to_dict()
    json.dumps(payload)
    assert payload["split"]["fit_rows"] == 1700 and payload["split"]["eval_rows"] == 700
    assert payload["split"]["boundary"] == "2026-01-01T00:28:20Z"
    evaluation = payload["evaluation"]
    assert [c["name"] for c in evaluation["candidates"]] == ["best", "current", "logged"]
    assert evaluation["reference"] == "current"
    # The final evaluation replays the same fitted models: the same difference as the trial.
    assert evaluation["candidates"][0]["difference"]["value"] == pytest.approx(
        best.difference.value, rel=1e-9
    )


def test_a_confirmation_part_estimates_the_best_on_rows_the_search_never_saw(
    split: tuple[list[JoinedExample], list[JoinedExample]],
) -> None:
    """The best of many trials is the luckiest too: its confirmation estimate comes from
    models fitted on both searched parts and replayed on later rows, and decides."""
    fit_rows, eval_rows = split
    searched, confirm = eval_rows[:400], eval_rows[400:]
    result = optimize(
        fit_rows, searched, current_vw_args=WEAK, trials=4, seed=3, confirm_examples=confirm
    )
    assert result.confirmation is not None and result.best is not None
    assert result.confirm_rows == len(confirm) == 300
    confirmed = result.confirmation.candidate("best")
    assert confirmed.vw_args == result.best.vw_args and confirmed.difference is not None
    assert result.significantly_better == (confirmed.difference.lower > 0)
    assert result.significantly_better  # interactions matter on every part of this log
    payload = result.to_dict()
    assert payload["split"]["confirm_rows"] == 300
    assert [c["name"] for c in payload["confirmation"]["candidates"]] == [
        "best",
        "current",
        "logged",
    ]
    # Without a confirmation part the payload says so and the later part decides.
    plain = optimize(fit_rows, searched, current_vw_args=WEAK, trials=4, seed=3)
    assert plain.confirmation is None and plain.to_dict()["confirmation"] is None


def test_same_seed_same_trials(split: tuple[list[JoinedExample], list[JoinedExample]]) -> None:
    fit_rows, eval_rows = split
    space = SearchSpace(algorithms=("epsilon",), triples=())
    runs = [
        optimize(fit_rows[:600], eval_rows, current_vw_args=WEAK, trials=3, seed=5, space=space)
        for _ in range(2)
    ]
    assert [t.to_dict() for t in runs[0].trials] == [t.to_dict() for t in runs[1].trials]


def test_featurizing_again_per_trial_gives_the_cached_result(
    split: tuple[list[JoinedExample], list[JoinedExample]],
) -> None:
    fit_rows, eval_rows = split
    space = SearchSpace(algorithms=("squarecb",), triples=())
    runs = [
        optimize(
            fit_rows[:400], eval_rows[:300], current_vw_args=WEAK, trials=2, space=space,
            cache_rows=cache,
        ).to_dict()
        for cache in (10_000, 100)
    ]  # fmt: skip
    assert runs[0] == runs[1]


def test_a_combination_vw_refuses_is_a_failed_trial(
    split: tuple[list[JoinedExample], list[JoinedExample]],
) -> None:
    fit_rows, eval_rows = split
    # VW's --cover takes ips, dr or mtr only: every cover trial with dm fails.
    space = SearchSpace(algorithms=("cover", "epsilon"), cb_types=("dm",), triples=())
    result = optimize(
        fit_rows[:300], eval_rows[:300], current_vw_args=WEAK, trials=6, seed=0, space=space
    )
    failed = [t for t in result.trials if t.state == "failed"]
    assert failed and all("--cover" in t.vw_args and "dm" in (t.error or "") for t in failed)
    assert all(t.estimate is None and t.difference is None for t in failed)
    assert result.trials[-len(failed) :] == failed  # failed trials rank last
    assert any(t.state == "complete" for t in result.trials)


def test_squarecb_and_regcb_never_get_a_cb_type_vw_refuses() -> None:
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1))
    for _ in range(20):
        args, params = suggest_vw_args(study.ask(), SearchSpace(algorithms=("squarecb", "regcb")))
        assert "--cb_type" not in args and "cb_type" not in params


def test_refusals(split: tuple[list[JoinedExample], list[JoinedExample]]) -> None:
    fit_rows, eval_rows = split
    with pytest.raises(InvalidInput, match="at least"):
        optimize(fit_rows[:10], eval_rows[:1], current_vw_args=WEAK, trials=1)
    with pytest.raises(InvalidInput, match="VW refused"):
        optimize(fit_rows[:10], eval_rows[:10], current_vw_args="--cb_explore_adf --bogus")
    with pytest.raises(InvalidInput, match="re-iterable"):
        optimize(iter(fit_rows[:20]), iter(eval_rows[:20]), current_vw_args=WEAK, cache_rows=10)
    with pytest.raises(InvalidInput, match="cb_explore_adf"):
        optimize(fit_rows[:10], eval_rows[:10], current_vw_args="--cb_adf")
    with pytest.raises(InvalidInput, match="algorithm"):
        SearchSpace(algorithms=("greedy",))
