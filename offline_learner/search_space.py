"""What the policy search samples: VW exploration, interactions, learning rate, ``power_t``,
``cb_type``, as an Optuna trial's parameters and the VW arguments they spell.

VW ties some choices together: ``--squarecb`` and ``--regcb``/``--regcbopt`` accept only
``--cb_type mtr``, so for them the search does not sample a ``cb_type`` at all. Any other
combination VW refuses (e.g. ``--cover`` with ``dm``) fails its trial, recorded, and the
search goes on.

>>> import optuna
>>> study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
>>> args, params = suggest_vw_args(study.ask(), SearchSpace(algorithms=("epsilon",)))
>>> args.startswith("--cb_explore_adf --epsilon "), params["algorithm"]
(True, 'epsilon')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from learnloop.errors import InvalidInput

if TYPE_CHECKING:
    import optuna

ALGORITHMS = ("squarecb", "epsilon", "cover", "regcb", "bag")
MTR_ONLY = frozenset({"squarecb", "regcb"})
PAIRS = ("ca", "ua", "cu", "aa")
"""Quadratic interactions; those without ``a`` shift every action alike, so they only
help the regression, not the ranking, and ``cu`` is the one kept of them."""
TRIPLES = ("cca", "cua", "uua")


@dataclass(frozen=True)
class SearchSpace:
    """The ranges the search samples from (defaults: the whole issue-9 space).

    Parameters
    ----------
    algorithms:
        Exploration algorithms, from :data:`ALGORITHMS`.
    cb_types:
        ``--cb_type`` choices for the algorithms that take several.
    pairs, triples:
        Candidate ``-q`` and ``--cubic`` interactions, each switched on or off per trial.
    learning_rate, power_t:
        ``(low, high)`` of ``-l`` (sampled on a log scale) and ``--power_t``.
    """

    algorithms: tuple[str, ...] = ALGORITHMS
    cb_types: tuple[str, ...] = ("ips", "dr", "mtr")
    pairs: tuple[str, ...] = PAIRS
    triples: tuple[str, ...] = TRIPLES
    learning_rate: tuple[float, float] = (1e-3, 10.0)
    power_t: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        unknown = [a for a in self.algorithms if a not in ALGORITHMS]
        if unknown or not self.algorithms:
            raise InvalidInput(
                f"unknown exploration algorithm(s) {unknown or '(none)'}: choose from {ALGORITHMS}"
            )
        if not self.cb_types:
            raise InvalidInput("cb_types is empty: give at least one, e.g. mtr")
        low, high = self.learning_rate
        if not 0 < low <= high:
            raise InvalidInput(f"learning_rate {self.learning_rate} must be 0 < low <= high")


def suggest_vw_args(trial: optuna.Trial, space: SearchSpace) -> tuple[str, dict[str, Any]]:
    """Sample one setting: the VW arguments and the trial's parameters."""
    algorithm = trial.suggest_categorical("algorithm", space.algorithms)
    parts = ["--cb_explore_adf"]
    if algorithm == "squarecb":
        gamma = trial.suggest_float("gamma_scale", 1.0, 1000.0, log=True)
        parts += ["--squarecb", f"--gamma_scale {gamma:.4g}"]
    elif algorithm == "epsilon":
        parts.append(f"--epsilon {trial.suggest_float('epsilon', 0.005, 0.3, log=True):.4g}")
    elif algorithm == "cover":
        parts.append(f"--cover {trial.suggest_int('cover', 1, 8)}")
    elif algorithm == "regcb":
        optimistic = trial.suggest_categorical("regcb_optimistic", (False, True))
        parts.append("--regcbopt" if optimistic else "--regcb")
    else:
        parts.append(f"--bag {trial.suggest_int('bag', 2, 8)}")
    if algorithm not in MTR_ONLY:
        parts.append(f"--cb_type {trial.suggest_categorical('cb_type', space.cb_types)}")
    for pair in space.pairs:
        if trial.suggest_categorical(f"q_{pair}", (False, True)):
            parts.append(f"-q {pair}")
    for triple in space.triples:
        if trial.suggest_categorical(f"cubic_{triple}", (False, True)):
            parts.append(f"--cubic {triple}")
    rate = trial.suggest_float("learning_rate", *space.learning_rate, log=True)
    power_t = trial.suggest_float("power_t", *space.power_t)
    parts += [f"-l {rate:.4g}", f"--power_t {power_t:.3g}"]
    return " ".join(parts), dict(trial.params)
