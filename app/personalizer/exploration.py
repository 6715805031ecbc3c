"""Exploration in VW arguments: which explorer a policy uses, and its ``--epsilon``.

Personalizer's ``explorationPercentage`` is epsilon-greedy's epsilon; learnloop keeps it
where VW reads it, in the decision point's ``vw_args``. Pure string work, no VW.
"""

from __future__ import annotations

from typing import Final

VW_DEFAULT_EPSILON: Final = 0.05
"""VW's ``--epsilon`` when ``--cb_explore_adf`` names no explorer and no epsilon."""

OTHER_EXPLORERS: Final = frozenset(
    {
        "--squarecb",
        "--cover",
        "--bag",
        "--regcb",
        "--regcbopt",
        "--softmax",
        "--first",
        "--rnd",
        "--synthcover",
    }
)
"""VW explorers other than epsilon-greedy: ``explorationPercentage`` is not their knob."""


def explorer(vw_args: str) -> str:
    """The exploration algorithm of ``vw_args``: ``epsilon`` or the other one's flag.

    >>> explorer("--cb_explore_adf --epsilon 0.2"), explorer("--cb_explore_adf --squarecb")
    ('epsilon', '--squarecb')
    """
    for word in vw_args.split():
        if word.split("=", 1)[0] in OTHER_EXPLORERS:
            return word.split("=", 1)[0]
    return "epsilon"


def epsilon_of(vw_args: str) -> float:
    """The ``--epsilon`` of ``vw_args`` (VW's default when absent).

    >>> epsilon_of("--cb_explore_adf --epsilon 0.3 -q ::"), epsilon_of("--cb_explore_adf")
    (0.3, 0.05)
    """
    words = vw_args.split()
    for index, word in enumerate(words):
        if word.startswith("--epsilon="):
            return _float(word.split("=", 1)[1])
        if word == "--epsilon" and index + 1 < len(words):
            return _float(words[index + 1])
    return VW_DEFAULT_EPSILON


def with_epsilon(vw_args: str, epsilon: float) -> str:
    """``vw_args`` with ``--epsilon`` set to ``epsilon`` (added after ``--cb_explore_adf``).

    >>> with_epsilon("--cb_explore_adf --epsilon 0.2 -q ::", 0.5)
    '--cb_explore_adf --epsilon 0.5 -q ::'
    >>> with_epsilon("--cb_explore_adf -q ::", 0.1)
    '--cb_explore_adf --epsilon 0.1 -q ::'
    """
    value = _number(epsilon)
    words = vw_args.split()
    for index, word in enumerate(words):
        if word.startswith("--epsilon="):
            words[index] = f"--epsilon={value}"
            return " ".join(words)
        if word == "--epsilon" and index + 1 < len(words):
            words[index + 1] = value
            return " ".join(words)
    at = words.index("--cb_explore_adf") + 1 if "--cb_explore_adf" in words else len(words)
    return " ".join([*words[:at], "--epsilon", value, *words[at:]])


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return VW_DEFAULT_EPSILON


def _number(value: float) -> str:
    """A float as VW's command line takes it, without float noise (``0.2``, not 0.2000001)."""
    return f"{value:.6g}"
