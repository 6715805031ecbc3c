"""Train a VW policy on logged joined examples, in event order, as the online learner would.

What promotion warm-starts a release with and what the policy search fits on the
earlier part of a temporal split. Only activated decisions are learned: a decision
that was never shown to anyone earned its reward by default, not by its action.

The featurizer is the online one (:mod:`learnloop.featurizer`), so a model trained
here sees exactly the features the decision service produces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from learnloop.featurizer import CachedFeaturizer, labelled
from learnloop.policy import VWPolicy
from schemas.events import JoinedExample

Progress = Callable[[int], None]
"""Called with the number of examples read since the previous call (a bar's ``advance``)."""

PROGRESS_EVERY = 1024
"""Examples between two progress calls: often enough for a bar, rare enough to cost nothing."""


def example_lines(
    featurizer: CachedFeaturizer, example: JoinedExample
) -> tuple[list[str], list[str]]:
    """The example's unlabelled ADF lines (for predicting) and its labelled ones (for learning)."""
    decision = example.decision
    lines = featurizer.example(decision.context, decision.persona, decision.actions)
    return lines, labelled(
        lines, decision.chosen_index, example.reward, decision.chosen_probability
    )


def fit(
    examples: Iterable[JoinedExample], vw_args: str, progress: Progress | None = None
) -> VWPolicy:
    """A fresh :class:`~learnloop.policy.VWPolicy` that learned every activated example in order.

    Parameters
    ----------
    examples:
        Joined examples in event order (a list, a ``Dataset``, any iterable).
    vw_args:
        The VW arguments, e.g. ``"--cb_explore_adf --squarecb -q ca -q ua"``.
    progress:
        Optional callback, see :data:`Progress`.

    The caller owns the returned policy (``to_bytes()`` to publish it, ``close()`` after).
    """
    policy = VWPolicy(vw_args)
    featurizer = CachedFeaturizer()
    pending = 0
    try:
        for example in examples:
            pending += 1
            if example.decision.activated:
                policy.learn_lines(example_lines(featurizer, example)[1])
            if progress is not None and pending >= PROGRESS_EVERY:
                progress(pending)
                pending = 0
    except BaseException:
        policy.close()
        raise
    if progress is not None and pending:
        progress(pending)
    return policy
