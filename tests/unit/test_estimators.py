"""Off-policy estimators: against vw-estimators, hand-computed DM/DR cases, coverage, bad input.

vw-estimators (``estimators`` on import) is the independent reference for IPS, SNIPS,
the normal IPS interval and the Cressie-Read interval. DM and DR have no reference
package here, so their small cases are worked out by hand in the tables. The coverage
test draws logged data from a known logging policy and checks that the intervals hold
the true value of a different target policy at about their stated 95 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from estimators.bandits import cressieread as vw_cressieread
from estimators.bandits import gaussian as vw_gaussian
from estimators.bandits import ips as vw_ips
from estimators.bandits import snips as vw_snips

from learnloop.errors import InvalidInput, LearnloopError
from offline_learner.estimators import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    Estimate,
    Estimator,
    OffPolicyData,
    SwitchDR,
    model_terms,
)

Z95 = 1.959963984540054
"""Two-sided 95 % standard normal quantile."""


# --- (1) IPS and SNIPS against vw-estimators -----------------------------------------------


@dataclass(frozen=True)
class RandomLog:
    """A random logged dataset: n examples, propensities >= p_min, rewards in [0, r_max]."""

    seed: int
    n: int
    p_min: float
    r_max: float
    binary: bool
    deterministic_target: bool
    w_max: float = math.inf

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        mu = rng.uniform(self.p_min, 1.0, self.n)
        if self.deterministic_target:
            pi = rng.integers(0, 2, self.n).astype(float)
        else:
            pi = rng.uniform(0.0, 1.0, self.n)
        if self.binary:
            r = rng.integers(0, 2, self.n) * self.r_max
        else:
            r = rng.uniform(0.0, self.r_max, self.n)
        return r.astype(float), mu, pi


RANDOM_LOGS = [
    RandomLog(seed=1, n=10, p_min=0.2, r_max=1.0, binary=True, deterministic_target=False),
    RandomLog(seed=2, n=100, p_min=0.05, r_max=1.0, binary=True, deterministic_target=False),
    RandomLog(seed=3, n=1000, p_min=0.05, r_max=1.0, binary=False, deterministic_target=False),
    RandomLog(seed=4, n=500, p_min=0.1, r_max=3.0, binary=True, deterministic_target=True),
    RandomLog(seed=5, n=2000, p_min=0.01, r_max=3.0, binary=False, deterministic_target=False),
    RandomLog(seed=6, n=300, p_min=0.05, r_max=1.0, binary=True, deterministic_target=True),
    RandomLog(
        seed=7, n=300, p_min=0.05, r_max=1.0, binary=False, deterministic_target=False, w_max=20.0
    ),
    RandomLog(
        seed=8, n=50, p_min=0.3, r_max=2.0, binary=False, deterministic_target=True, w_max=5.0
    ),
]


@pytest.mark.parametrize("log", RANDOM_LOGS, ids=lambda log: f"seed{log.seed}-n{log.n}")
def test_ips_snips_and_intervals_match_vw_estimators(log: RandomLog) -> None:
    r, mu, pi = log.arrays()
    ref_ips, ref_snips, ref_normal = (
        vw_ips.Estimator(),
        vw_snips.Estimator(),
        vw_gaussian.Interval(),
    )
    ref_cr = vw_cressieread.Interval(wmax=log.w_max, rmin=0.0, rmax=log.r_max)
    for p_log, reward, p_pred in zip(mu, r, pi, strict=True):
        for reference in (ref_ips, ref_snips, ref_normal, ref_cr):
            reference.add_example(p_log=float(p_log), r=float(reward), p_pred=float(p_pred))
    cr_settings: dict[str, Any] = {
        "interval": "cressie-read",
        "reward_range": (0.0, log.r_max),
        "weight_range": (0.0, log.w_max),
    }

    ips_normal = IPS().estimate(r, mu, pi)
    ips_cr = IPS(**cr_settings).estimate(r, mu, pi)
    snips_cr = SNIPS(**cr_settings).estimate(r, mu, pi)

    assert ips_normal.value == pytest.approx(ref_ips.get(), abs=1e-9)
    assert SNIPS().estimate(r, mu, pi).value == pytest.approx(ref_snips.get(), abs=1e-9)
    assert [ips_normal.lower, ips_normal.upper] == pytest.approx(ref_normal.get(0.05), abs=1e-9)
    low, high = ref_cr.get(0.05)
    assert (ips_cr.lower, ips_cr.upper) == pytest.approx((low, high), abs=1e-9)
    assert (snips_cr.lower, snips_cr.upper) == pytest.approx((low, high), abs=1e-9)
    assert ips_cr.interval == snips_cr.interval == "cressie-read"
    assert 0.0 <= low < high <= log.r_max


# --- (2) DM and DR by hand ------------------------------------------------------------------

# Three logged examples, two actions. The logging policy chose a = 0, 1, 0.
#   mu(a_i|x_i) = 0.5, 0.25, 0.8        pi(a_i|x_i) = 0.9, 0.5, 0.2
#   w_i = pi / mu = 1.8, 2.0, 0.25      r_i = 1, 0, 1
# Target policy rows pi(.|x_i): [0.9, 0.1], [0.5, 0.5], [0.2, 0.8]
# Reward model rows rhat(x_i, .): [0.6, 0.2], [0.4, 0.3], [0.5, 1.0]
#   rhat_i (logged action) = 0.6, 0.3, 0.5
#   qhat_i = sum_a pi rhat   = 0.9*0.6 + 0.1*0.2 = 0.56
#                              0.5*0.4 + 0.5*0.3 = 0.35
#                              0.2*0.5 + 0.8*1.0 = 0.90
HAND: dict[str, Any] = {
    "rewards": [1.0, 0.0, 1.0],
    "logging_propensities": [0.5, 0.25, 0.8],
    "actions": [0, 1, 0],
    "target_policy": [[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]],
    "reward_predictions": [[0.6, 0.2], [0.4, 0.3], [0.5, 1.0]],
}
# Residuals r - rhat = 0.4, -0.3, 0.5; weighted w (r - rhat) = 0.72, -0.6, 0.125.
DM_TERMS = [0.56, 0.35, 0.90]  # mean 1.81 / 3
DR_TERMS = [0.56 + 0.72, 0.35 - 0.6, 0.90 + 0.125]  # 1.28, -0.25, 1.025; mean 2.055 / 3
SWITCH_TERMS = [0.56 + 0.72, 0.35, 0.90 + 0.125]  # tau = 1.9 drops w = 2.0; mean 2.655 / 3
# SNDR: mean(qhat) + sum w (r - rhat) / sum w = 1.81/3 + 0.245 / 4.05.


def _hand_interval(terms: list[float]) -> tuple[float, float]:
    """mean +- 1.96 * sd(n - 1) / sqrt(n), written out."""
    n = len(terms)
    mean = sum(terms) / n
    sd = math.sqrt(sum((t - mean) ** 2 for t in terms) / (n - 1))
    return mean - Z95 * sd / math.sqrt(n), mean + Z95 * sd / math.sqrt(n)


@pytest.mark.parametrize(
    ("estimator", "value", "terms"),
    [
        (DM(), 1.81 / 3, DM_TERMS),
        (DR(), 2.055 / 3, DR_TERMS),
        (SwitchDR(threshold=1.9), 2.655 / 3, SWITCH_TERMS),
        (SwitchDR(threshold=math.inf), 2.055 / 3, DR_TERMS),
        (SwitchDR(threshold=2.0), 2.055 / 3, DR_TERMS),  # w <= tau keeps the correction
        (SNDR(), 1.81 / 3 + 0.245 / 4.05, None),
    ],
    ids=["dm", "dr", "switch-1.9", "switch-inf", "switch-2.0", "sndr"],
)
def test_model_based_estimators_match_hand_computation(
    estimator: Estimator, value: float, terms: list[float] | None
) -> None:
    t = model_terms(HAND["actions"], HAND["target_policy"], HAND["reward_predictions"])
    assert t.target_probabilities.tolist() == [0.9, 0.5, 0.2]
    assert t.predicted_rewards.tolist() == [0.6, 0.3, 0.5]
    assert t.target_predicted_rewards.tolist() == pytest.approx([0.56, 0.35, 0.90], abs=1e-12)

    e = estimator.estimate(
        HAND["rewards"],
        HAND["logging_propensities"],
        t.target_probabilities,
        t.predicted_rewards,
        t.target_predicted_rewards,
    )

    assert e.value == pytest.approx(value, abs=1e-12)
    if terms is not None:
        assert (e.lower, e.upper) == pytest.approx(_hand_interval(terms), abs=1e-12)
    assert e.n == 3
    assert e.max_weight == pytest.approx(2.0)
    # Kish: (1.8 + 2.0 + 0.25)^2 / (1.8^2 + 2.0^2 + 0.25^2) = 16.4025 / 7.3025
    assert e.effective_sample_size == pytest.approx(16.4025 / 7.3025, abs=1e-12)


def test_sndr_delta_interval_by_hand() -> None:
    # terms_i = (qhat_i - mean qhat) + w_i (res_i - c) / mean(w), c = 0.245 / 4.05
    w, res, qhat = [1.8, 2.0, 0.25], [0.4, -0.3, 0.5], [0.56, 0.35, 0.90]
    c, mean_w, mean_q = 0.245 / 4.05, 4.05 / 3, 1.81 / 3
    terms = [q - mean_q + wi * (ri - c) / mean_w for q, wi, ri in zip(qhat, w, res, strict=True)]
    low, high = _hand_interval(terms)  # centred on mean(terms) = 0
    e = SNDR().estimate([1.0, 0.0, 1.0], [0.5, 0.25, 0.8], [0.9, 0.5, 0.2], [0.6, 0.3, 0.5], qhat)
    assert (e.lower - e.value, e.upper - e.value) == pytest.approx((low, high), abs=1e-12)
    assert e.interval == "delta"


def test_ips_and_snips_by_hand() -> None:
    # w = 1.8, 2.0, 0.25; sum w r = 1.8 + 0 + 0.25 = 2.05; IPS = 2.05 / 3; SNIPS = 2.05 / 4.05
    args = ([1.0, 0.0, 1.0], [0.5, 0.25, 0.8], [0.9, 0.5, 0.2])
    assert IPS().estimate(*args).value == pytest.approx(2.05 / 3, abs=1e-12)
    assert SNIPS().estimate(*args).value == pytest.approx(2.05 / 4.05, abs=1e-12)


# --- (3) unbiasedness and coverage on a known synthetic policy ---------------------------------

# Four equally likely contexts, three actions, Bernoulli rewards with these means.
MEANS = np.array([[0.2, 0.5, 0.8], [0.7, 0.3, 0.4], [0.9, 0.2, 0.1], [0.1, 0.6, 0.3]])
LOGGING = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.05, 0.15, 0.8], [1 / 3, 1 / 3, 1 / 3]])
TARGET = np.array([[0.1, 0.2, 0.7], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.8, 0.1, 0.1]])
# A wrong but fixed reward model, 0.05 too optimistic everywhere: DR stays unbiased,
# DM is off by 0.05. Switch-DR drops the correction only on (context 2, action 0),
# whose weight 0.6 / 0.05 = 12 exceeds its tau = 10: its bias is 0.25 * 0.6 * 0.05 = 0.0075.
MODEL = MEANS + 0.05
TRUE_VALUE = float(np.mean(np.sum(TARGET * MEANS, axis=1)))  # 0.4675
REPLICATIONS, N = 200, 1000

COVERAGE_ESTIMATORS: dict[str, Estimator] = {
    "ips": IPS(),
    "ips-cr": IPS(interval="cressie-read", reward_range=(0.0, 1.0)),
    "snips": SNIPS(),
    "snips-cr": SNIPS(interval="cressie-read", reward_range=(0.0, 1.0)),
    "dr": DR(),
    "switch-dr": SwitchDR(threshold=10.0),
    "sndr": SNDR(),
    "dm": DM(),
}


def simulate_coverage(seed: int = 20261201) -> dict[str, tuple[float, float]]:
    """Per estimator: (share of intervals holding the true value, mean estimate)."""
    rng = np.random.default_rng(seed)
    hits = dict.fromkeys(COVERAGE_ESTIMATORS, 0)
    values: dict[str, list[float]] = {name: [] for name in COVERAGE_ESTIMATORS}
    for _ in range(REPLICATIONS):
        x = rng.integers(0, 4, N)
        cumulative = np.cumsum(LOGGING[x], axis=1)
        a = np.minimum((rng.random(N)[:, None] > cumulative).sum(axis=1), 2)
        r = (rng.random(N) < MEANS[x, a]).astype(float)
        terms = model_terms(a, TARGET[x], MODEL[x])
        data = OffPolicyData.of(
            r,
            LOGGING[x, a],
            terms.target_probabilities,
            terms.predicted_rewards,
            terms.target_predicted_rewards,
        )
        for name, estimator in COVERAGE_ESTIMATORS.items():
            e = estimator.estimate_data(data)
            hits[name] += e.contains(TRUE_VALUE)
            values[name].append(e.value)
    return {name: (hits[name] / REPLICATIONS, float(np.mean(values[name]))) for name in hits}


@pytest.fixture(scope="module")
def coverage() -> dict[str, tuple[float, float]]:
    return simulate_coverage()


def test_true_value_of_the_synthetic_target() -> None:
    # 0.25 * (0.1*0.2 + 0.2*0.5 + 0.7*0.8 + 0.1*0.7 + 0.2*0.3 + 0.7*0.4
    #         + 0.6*0.9 + 0.3*0.2 + 0.1*0.1 + 0.8*0.1 + 0.1*0.6 + 0.1*0.3) = 0.25 * 1.87
    assert pytest.approx(0.25 * 1.87, abs=1e-12) == TRUE_VALUE


@pytest.mark.parametrize("name", ["ips", "ips-cr", "snips", "snips-cr", "dr", "switch-dr", "sndr"])
def test_intervals_cover_the_true_value_at_about_95_percent(
    name: str, coverage: dict[str, tuple[float, float]]
) -> None:
    rate, _ = coverage[name]
    # 200 replications at a true 95 %: sd of the rate is 1.5 points; 0.90 is 3.2 sd below.
    assert rate >= 0.90, f"{name} covered {rate:.3f}: {coverage}"


@pytest.mark.parametrize("name", ["ips", "dr"])
def test_unbiased_estimators_average_to_the_true_value(
    name: str, coverage: dict[str, tuple[float, float]]
) -> None:
    _, mean = coverage[name]
    # The per-replication sd of IPS is below 0.03 here, so the mean of 200 is within
    # 0.002 * 4 of the truth unless the estimator is biased.
    assert abs(mean - TRUE_VALUE) < 0.008, f"{name} averaged {mean}, true {TRUE_VALUE}"


def test_switch_dr_bias_is_the_model_error_where_it_switches(
    coverage: dict[str, tuple[float, float]],
) -> None:
    # Only (context 2, action 0) has w = 12 > tau: bias 0.25 * pi 0.6 * model error 0.05.
    assert coverage["switch-dr"][1] - TRUE_VALUE == pytest.approx(0.0075, abs=0.004)


def test_dm_with_a_wrong_model_misses_which_dr_corrects(
    coverage: dict[str, tuple[float, float]],
) -> None:
    # DM inherits the model's +0.05, a fixed offset its interval knows nothing of.
    assert coverage["dm"][1] == pytest.approx(TRUE_VALUE + 0.05, abs=0.003)
    assert coverage["dm"][0] < 0.5 < coverage["dr"][0]


# --- (4) bad input --------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "rewards": [1.0, 0.0],
    "logging_propensities": [0.5, 0.5],
    "target_probabilities": [1.0, 0.0],
    "predicted_rewards": [0.5, 0.5],
    "target_predicted_rewards": [0.5, 0.5],
}


@pytest.mark.parametrize(
    ("estimator", "changes", "message"),
    [
        (IPS(), {"rewards": []}, "rewards is empty"),
        (
            IPS(),
            {"logging_propensities": [0.5]},
            "logging_propensities has 1 values but rewards has 2",
        ),
        (IPS(), {"logging_propensities": [0.0, 0.5]}, "logging_propensities[0] is 0.0"),
        (IPS(), {"logging_propensities": [0.5, 1.5]}, "must be a probability in (0, 1]"),
        (IPS(), {"target_probabilities": [-0.1, 0.5]}, "target_probabilities[0] is -0.1"),
        (IPS(), {"target_probabilities": [1.0, 1.01]}, "must be a probability in [0, 1]"),
        (IPS(), {"rewards": [1.0, math.nan]}, "rewards[1] is nan: every value must be finite"),
        (IPS(), {"rewards": [1.0, math.inf]}, "rewards[1] is inf"),
        (IPS(), {"rewards": [[1.0], [0.0]]}, "rewards must be one-dimensional"),
        (IPS(), {"rewards": ["a", "b"]}, "rewards must be a sequence of numbers"),
        (
            IPS(),
            {
                "rewards": [1.0],
                "logging_propensities": [0.5],
                "target_probabilities": [1.0],
                "predicted_rewards": None,
                "target_predicted_rewards": None,
            },
            "a confidence interval needs at least 2",
        ),
        (SNIPS(), {"target_probabilities": [0.0, 0.0]}, "SNIPS is undefined"),
        (SNDR(), {"target_probabilities": [0.0, 0.0]}, "SNDR is undefined"),
        (DM(), {"target_predicted_rewards": None}, "DM needs target_predicted_rewards"),
        (DR(), {"predicted_rewards": None}, "DR needs a reward model"),
        (SwitchDR(), {"target_predicted_rewards": None}, "SwitchDR needs a reward model"),
        (DR(), {"predicted_rewards": [0.5, math.nan]}, "predicted_rewards[1] is nan"),
        (DR(), {"target_predicted_rewards": [0.5]}, "target_predicted_rewards has 1 values"),
        (
            IPS(interval="cressie-read", reward_range=(0.0, 0.5)),
            {},
            "outside reward_range (0.0, 0.5)",
        ),
        (
            IPS(interval="cressie-read", reward_range=(0.0, 1.0), weight_range=(0.0, 1.0)),
            {},
            "must satisfy low < 1 < high",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(
    estimator: Estimator, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        estimator.estimate(**(GOOD | changes))
    assert message in str(raised.value)
    assert isinstance(raised.value, LearnloopError)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: IPS(level=1.0), "level is 1.0"),
        (lambda: SNIPS(level=0.0), "level is 0.0"),
        (lambda: IPS(interval="delta"), "interval 'delta' is not offered"),  # type: ignore[arg-type]
        (lambda: SNIPS(interval="normal"), "interval 'normal' is not offered"),  # type: ignore[arg-type]
        (lambda: SwitchDR(threshold=-1.0), "threshold is -1.0"),
    ],
)
def test_bad_settings_are_refused(build: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        build()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"actions": [0, 2]}, "actions[1] is 2: a column index must lie in [0, 2)"),
        ({"actions": [0.0, 1.0]}, "actions must be integer column indices"),
        ({"actions": [0]}, "actions must hold one column index per example (2)"),
        ({"target_policy": [[0.5, 0.4], [0.5, 0.5]]}, "target_policy row 0 sums to 0.9"),
        ({"target_policy": [[1.5, -0.5], [0.5, 0.5]]}, "target_policy[0, 0] is 1.5"),
        ({"reward_predictions": [[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]}, "reward_predictions (2, 3)"),
        ({"reward_predictions": [[0.1, math.nan], [0.1, 0.2]]}, "reward_predictions[0, 1] is nan"),
        ({"target_policy": [0.5, 0.5]}, "target_policy must be a matrix of shape"),
    ],
)
def test_bad_matrices_are_refused(kwargs: dict[str, Any], message: str) -> None:
    good: dict[str, Any] = {
        "actions": [0, 1],
        "target_policy": [[0.5, 0.5], [0.5, 0.5]],
        "reward_predictions": [[0.1, 0.2], [0.1, 0.2]],
    }
    with pytest.raises(InvalidInput) as raised:
        model_terms(**(good | kwargs))
    assert message in str(raised.value)


def test_estimates_are_frozen() -> None:
    e = IPS().estimate(**GOOD)
    assert isinstance(e, Estimate)
    with pytest.raises(AttributeError):
        e.value = 0.0  # type: ignore[misc]
