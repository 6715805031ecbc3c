"""The streaming estimates equal the array estimators, across chunk boundaries, and the
paired difference equals a direct computation on the per-example differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learnloop.errors import InvalidInput
from offline_learner.estimators import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    Estimate,
    StreamingEstimates,
    SwitchDR,
)
from offline_learner.estimators.normal_interval import normal_interval

ESTIMATORS = (IPS(), SNIPS(), DM(), DR(), SwitchDR(threshold=3.0), SNDR(level=0.9))


def _data(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.05, 1.0, n)
    return {
        "rewards": rng.uniform(0.0, 5.0, n) + 10.0,  # offset: the centring must hold up
        "logging_propensities": mu,
        "target_probabilities": rng.uniform(0.0, 1.0, n),
        "reference_probabilities": rng.uniform(0.0, 1.0, n),
        "predicted_rewards": rng.uniform(9.0, 16.0, n),
        "target_predicted_rewards": rng.uniform(9.0, 16.0, n),
        "reference_predicted_rewards": rng.uniform(9.0, 16.0, n),
    }


def _stream(data: dict[str, np.ndarray], chunks: list[int], paired: bool) -> StreamingEstimates:
    stream = StreamingEstimates(ESTIMATORS, paired=paired)
    start = 0
    for size in chunks:
        part = {k: v[start : start + size] for k, v in data.items()}
        if not paired:
            del part["reference_probabilities"], part["reference_predicted_rewards"]
        stream.update(**part)
        start += size
    return stream


def _close(a: Estimate, b: Estimate) -> None:
    for field in ("value", "lower", "upper", "effective_sample_size", "max_weight"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-9, abs=1e-9), field
    assert (a.estimator, a.interval, a.level, a.n) == (b.estimator, b.interval, b.level, b.n)


@pytest.mark.parametrize("chunks", [[1000], [1, 999], [4096, 4096, 1808], [3, 1, 500, 2, 10_000]])
def test_streaming_equals_arrays(chunks: list[int]) -> None:
    n = sum(chunks)
    data = _data(n, seed=n)
    stream = _stream(data, chunks, paired=False)
    arrays = {k: v for k, v in data.items() if not k.startswith("reference")}
    for estimator in ESTIMATORS:
        _close(stream.estimate(estimator.name), estimator.estimate(**arrays))
        assert stream.value(estimator.name) == pytest.approx(
            estimator.estimate(**arrays).value, rel=1e-12
        )


def test_paired_stream_keeps_the_target_estimates() -> None:
    data = _data(3000, seed=1)
    paired = _stream(data, [1024, 1024, 952], paired=True)
    single = _stream(data, [3000], paired=False)
    for estimator in ESTIMATORS:
        _close(paired.estimate(estimator.name), single.estimate(estimator.name))


def _direct_difference(name: str, d: dict[str, np.ndarray], level: float) -> tuple[float, ...]:
    """The paired difference computed on the full arrays, term by term."""
    r, mu = d["rewards"], d["logging_propensities"]
    rhat = d["predicted_rewards"]
    wc, wr = d["target_probabilities"] / mu, d["reference_probabilities"] / mu
    qc, qr = d["target_predicted_rewards"], d["reference_predicted_rewards"]
    if name == "ips":
        terms = wc * r - wr * r
    elif name == "dr":
        terms = (qc + wc * (r - rhat)) - (qr + wr * (r - rhat))
    elif name == "snips":
        vc, vr = np.sum(wc * r) / np.sum(wc), np.sum(wr * r) / np.sum(wr)
        terms = wc * (r - vc) / np.mean(wc) - wr * (r - vr) / np.mean(wr)
        value = vc - vr
        return (value, *normal_interval(terms, value, level))
    else:
        raise AssertionError(name)
    value = float(np.mean(terms))
    return (value, *normal_interval(terms, value, level))


@pytest.mark.parametrize("name", ["ips", "dr", "snips"])
def test_paired_difference_equals_direct_computation(name: str) -> None:
    data = _data(5000, seed=3)
    stream = _stream(data, [4096, 904], paired=True)
    diff = stream.difference(name)
    expected = _direct_difference(name, data, diff.level)
    assert (diff.value, diff.lower, diff.upper) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_paired_difference_is_narrower_than_separate_intervals() -> None:
    # Two nearly identical policies: their difference is known far better than either value.
    data = _data(4000, seed=5)
    data["reference_probabilities"] = np.clip(data["target_probabilities"] + 0.01, 0, 1)
    stream = _stream(data, [4000], paired=True)
    assert stream.difference("snips").width < 0.2 * stream.estimate("snips").width


def test_difference_of_a_policy_with_itself_is_zero() -> None:
    data = _data(500, seed=9)
    data["reference_probabilities"] = data["target_probabilities"]
    data["reference_predicted_rewards"] = data["target_predicted_rewards"]
    stream = _stream(data, [200, 300], paired=True)
    for estimator in ESTIMATORS:
        diff = stream.difference(estimator.name)
        assert abs(diff.value) < 1e-12 and diff.width < 1e-6


def test_refusals() -> None:
    with pytest.raises(InvalidInput, match="Cressie-Read"):
        StreamingEstimates([IPS(interval="cressie-read")])
    with pytest.raises(InvalidInput, match="once"):
        StreamingEstimates([IPS(), IPS()])
    stream = StreamingEstimates([SNIPS(), DM()])
    with pytest.raises(InvalidInput, match="reward model"):
        stream.update([1.0, 0.0], [0.5, 0.5], [1.0, 0.0])
    zero = StreamingEstimates([SNIPS(), IPS()])
    zero.update([1.0, 0.0], [0.5, 0.5], [0.0, 0.0])
    assert zero.value("snips") is None and zero.estimate("ips").value == 0.0
    with pytest.raises(InvalidInput, match="undefined"):
        zero.estimate("snips")
    with pytest.raises(InvalidInput, match="paired"):
        zero.difference("ips")
    one = StreamingEstimates([IPS()])
    one.update([1.0], [0.5], [1.0])
    with pytest.raises(InvalidInput, match="at least 2"):
        one.estimate("ips")
    assert math.isclose(one.value("ips") or 0.0, 2.0)
