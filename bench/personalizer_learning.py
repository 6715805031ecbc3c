"""How fast candidate default learning settings learn a Personalizer-style loop.

Run ``python bench/personalizer_learning.py`` (``--help``; about a minute). The problem is
the one ``tests/integration/test_personalizer_learning.py`` drives through the SDK: a
user's ``kind`` (one of ``--kinds``) decides which of as many articles earns reward 1,
every other choice earns 0. Each setting is raw VW (``vowpalwabbit.Workspace``, the same
engine learnloop serves) learning with a delay: an event is learned ``--delay`` events
after it was ranked, as a reward wait and a release cadence delay it in the service.

For each setting and seed it measures the share of best-article choices over the last quarter
of each horizon; the mean over seeds, with the worst seed, goes into the table. This is
what chose the default policy of a new Personalizer loop (``app/personalizer/loop.py``).
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections import deque
from collections.abc import Sequence

import vowpalwabbit

SETTINGS = {
    "Personalizer's default": (
        "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::"
    ),
    "-l 0.01": "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.01 --cb_type mtr -q ::",
    "-l 0.1": "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.1 --cb_type mtr -q ::",
    "VW's learning rate": "--cb_explore_adf --epsilon 0.2 --cb_type mtr -q ::",
}


def run(
    vw_args: str, kinds: int, rounds: int, delay: int, seed: int, noise: float = 0.0
) -> list[bool]:
    """One delayed bandit run; whether each choice was the best one. With ``noise`` the
    best article pays 1 with probability ``1 - noise``, the others with ``noise``."""
    vw = vowpalwabbit.Workspace(f"{vw_args} --quiet --random_seed {seed}")
    rng = random.Random(seed)
    names = [f"k{i}" for i in range(kinds)]
    waiting: deque[list[str]] = deque()
    hits: list[bool] = []
    try:
        for _ in range(rounds):
            if len(waiting) > delay:
                vw.learn(waiting.popleft())
            kind = rng.randrange(kinds)
            lines = [f"shared |c user.kind={names[kind]} |u persona=visitor"]
            lines += [f"|a id=article{i}" for i in range(kinds)]
            pmf = vw.predict(lines)
            chosen = _draw(pmf, rng.random())
            pays = 1.0 - noise if chosen == kind else noise
            reward = 1.0 if rng.random() < pays else 0.0
            hits.append(chosen == kind)
            labelled = list(lines)
            labelled[chosen + 1] = f"0:{-reward}:{pmf[chosen]} {lines[chosen + 1]}"
            waiting.append(labelled)
    finally:
        vw.finish()
    return hits


def _draw(pmf: Sequence[float], u: float) -> int:
    total = 0.0
    for index, probability in enumerate(pmf):
        total += probability
        if u < total:
            return index
    return len(pmf) - 1


def last_quarter(hits: list[bool], horizon: int) -> float:
    window = hits[horizon - horizon // 4 : horizon]
    return sum(window) / len(window)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", type=int, default=3)
    parser.add_argument("--delay", type=int, default=85, help="events between rank and learn")
    parser.add_argument("--horizons", type=int, nargs="+", default=[420, 1000, 3000])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--noise", type=float, default=0.0, help="chance a reward flips")
    args = parser.parse_args()
    longest = max(args.horizons)
    print(
        f"{args.kinds} kinds, chance {1 / args.kinds:.2f}, delay {args.delay} events, "
        f"{args.seeds} seeds, reward noise {args.noise}; share of best-article choices over "
        "the last quarter of each horizon"
    )
    header = " | ".join(f"{h} events: mean (worst)" for h in args.horizons)
    print(f"\n| setting | {header} |\n|---|" + "---|" * len(args.horizons))
    for label, vw_args in SETTINGS.items():
        runs = [
            run(vw_args, args.kinds, longest, args.delay, seed, args.noise)
            for seed in range(args.seeds)
        ]
        cells = []
        for horizon in args.horizons:
            rates = [last_quarter(hits, horizon) for hits in runs]
            cells.append(f"{statistics.mean(rates):.2f} ({min(rates):.2f})")
        print(f"| {label}: `{vw_args}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
