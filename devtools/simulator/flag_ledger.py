"""The books of a flag run: what each visit was served, by which arm, what it was worth.

Pure (no I/O): a driver records each evaluation and asks for the outcomes due by an
event time. Over the last quarter of the run, per *true* persona, the ledger keeps the
exact expected reward of the variant served, of the fixed default variant and of the
persona's best variant, on the same visits, split by the arm that served it:

- ``learned``: a personalized evaluation the bandit decided;
- ``holdout``: a personalized evaluation kept on the default variant (the flag's
  ``holdout_share``); which one it was follows from the exposure's event id exactly as
  the decision service draws it (:func:`exposure_arm`), so no read-back is needed;
- ``fixed``: any other reason (a static flag, a targeting rule, a split, disabled).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from rich.table import Table

from devtools.simulator.flags import FlagModel
from devtools.simulator.persona_accuracy import PersonaTally
from devtools.simulator.shop import PERSONAS, Visit
from learnloop.policy import uniforms_for

FlagArm = Literal["learned", "holdout", "fixed"]


def exposure_arm(reason: str, event_id: str | None, holdout_share: float) -> FlagArm:
    """The arm that served an evaluation: the decision service puts an exposure on the
    baseline (holdout) arm when the first uniform of its event id is below the share.

    >>> exposure_arm("STATIC", None, 0.5), exposure_arm("PERSONALIZED", "e1", 0.0)
    ('fixed', 'learned')
    >>> exposure_arm("PERSONALIZED", "e1", 1.0)
    'holdout'
    """
    if reason != "PERSONALIZED" or event_id is None:
        return "fixed"
    return "holdout" if uniforms_for(event_id)[0] < holdout_share else "learned"


@dataclass(frozen=True)
class PersonaScore:
    """One true persona's last quarter: mean expected reward per exposure, on the learned
    arm's visits, of what was served, of the default variant and of the best variant."""

    persona: str
    scored: int
    learned_n: int
    learned: float
    default: float
    oracle: float
    holdout_n: int
    holdout: float | None
    best_share: float
    served_share: dict[str, float] = field(default_factory=dict)

    @property
    def margin(self) -> float:
        """How much the learned choice beats the fixed default on the same visits."""
        return self.learned - self.default


@dataclass(frozen=True)
class FlagSimulationReport:
    """The numbers of one flag run; per-persona scores are over the last quarter."""

    flag: str
    decisions: int
    requested: int
    holdout_share: float
    personas: dict[str, PersonaScore]
    learned: float
    default: float
    oracle: float
    reasons: dict[str, int] = field(default_factory=dict)
    http_errors: int = 0
    outcomes_sent: int = 0
    wall_seconds: float = 0.0
    simulated_seconds: float = 0.0
    service_examples_learned: int | None = None
    first_error: str | None = None
    persona_accuracy: float | None = None
    arms: dict[str, int] = field(default_factory=dict)
    holdout_on_default: float | None = None
    """Share of the holdout's exposures (all of the run) that were served the default."""


@dataclass
class _Tally:
    """Sums of one persona's scored visits."""

    scored: int = 0
    n: Counter[str] = field(default_factory=Counter)
    served: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    default: float = 0.0
    oracle: float = 0.0
    best: int = 0
    variants: Counter[str] = field(default_factory=Counter)


class FlagLedger:
    """One flag run's books: outcomes waiting in event-time order, and the tallies."""

    def __init__(self, model: FlagModel, decisions: int, holdout_share: float) -> None:
        self.model = model
        self.holdout_share = holdout_share
        self.requested = decisions
        self.quarter_start = decisions - decisions // 4
        self.personas = PersonaTally()
        self.reasons: Counter[str] = Counter()
        self.arms: Counter[str] = Counter()
        self._pending: list[tuple[datetime, int, dict[str, Any]]] = []
        self._tallies = {p: _Tally() for p in PERSONAS}
        self.decisions = self.outcomes = self.holdout_default = 0

    def record(
        self,
        visit: Visit,
        variant: str,
        reason: str,
        event_id: str | None,
        persona: str | None = None,
        arm: FlagArm | None = None,
    ) -> float:
        """Book one evaluation, queue its outcomes; return its realised reward.

        Outcomes go against ``event_id`` (the exposure) when there is one, else against the
        visit's session. ``arm`` defaults to :func:`exposure_arm`; ``persona`` is the one
        the service answered with, scored against the truth for logged-in shoppers.
        """
        model = self.model
        outcomes = model.outcomes(visit, variant)
        arm = arm or exposure_arm(reason, event_id, self.holdout_share)
        self.decisions += 1
        self.reasons[reason] += 1
        self.arms[arm] += 1
        self.holdout_default += arm == "holdout" and variant == model.default_variant
        if persona is not None and visit.shopper.user_id is not None:
            self.personas.add(visit.persona, persona)
        for outcome in outcomes:
            at = visit.timestamp + timedelta(seconds=outcome.delay)
            body: dict[str, Any] = {"type": outcome.type, "timestamp": at.isoformat()}
            if event_id is not None:
                body["event_id"] = event_id
            else:
                body["session_id"] = visit.session_id
            heapq.heappush(self._pending, (at, self.outcomes, body))
            self.outcomes += 1
        if visit.index >= self.quarter_start:
            self._score(visit, variant, arm)
        return model.realised_reward(outcomes)

    def _score(self, visit: Visit, variant: str, arm: FlagArm) -> None:
        tally = self._tallies[visit.persona]
        tally.scored += 1
        tally.n[arm] += 1
        rewards = self.model.expected_rewards(visit)
        tally.served[arm] += rewards[variant]
        if arm == "learned":
            tally.default += rewards[self.model.default_variant]
            tally.oracle += max(rewards.values())
            tally.best += rewards[variant] >= max(rewards.values())
            tally.variants[variant] += 1

    def due(self, until: datetime | None = None) -> list[dict[str, Any]]:
        """Pop the outcomes whose event time is at or before ``until`` (all if None)."""
        out: list[dict[str, Any]] = []
        while self._pending and (until is None or self._pending[0][0] <= until):
            out.append(heapq.heappop(self._pending)[2])
        return out

    def report(self, **extra: Any) -> FlagSimulationReport:
        scores = {p: self._persona_score(p, t) for p, t in self._tallies.items() if t.scored}
        learned_n = sum(t.n["learned"] for t in self._tallies.values())

        def overall(total: float) -> float:
            return total / learned_n if learned_n else math.nan

        return FlagSimulationReport(
            flag=self.model.preference.key,
            decisions=self.decisions,
            requested=self.requested,
            holdout_share=self.holdout_share,
            personas=scores,
            learned=overall(math.fsum(t.served["learned"] for t in self._tallies.values())),
            default=overall(math.fsum(t.default for t in self._tallies.values())),
            oracle=overall(math.fsum(t.oracle for t in self._tallies.values())),
            reasons=dict(self.reasons),
            arms=dict(self.arms),
            outcomes_sent=extra.pop("outcomes_sent", self.outcomes),
            persona_accuracy=self.personas.accuracy(),
            holdout_on_default=(
                self.holdout_default / self.arms["holdout"] if self.arms["holdout"] else None
            ),
            **extra,
        )

    def _persona_score(self, persona: str, t: _Tally) -> PersonaScore:
        n, held = t.n["learned"], t.n["holdout"]
        mean = (lambda total: total / n) if n else (lambda total: math.nan)
        return PersonaScore(
            persona=persona,
            scored=t.scored,
            learned_n=n,
            learned=mean(t.served["learned"]),
            default=mean(t.default),
            oracle=mean(t.oracle),
            holdout_n=held,
            holdout=t.served["holdout"] / held if held else None,
            best_share=t.best / n if n else math.nan,
            served_share={v: t.variants[v] / n for v in self.model.variants} if n else {},
        )


def render_flag_report(
    report: FlagSimulationReport, anchor: FlagSimulationReport | None = None
) -> Table:
    """Per persona over the last quarter: learned vs the fixed default vs the oracle (and
    the in-process anchor on the same traffic, if given), then the run's counts."""
    table = Table(title=f"{report.flag}: expected reward per exposure, last quarter")
    for name in ("persona", "learned n", "learned", "default", "oracle", "margin", "best"):
        table.add_column(name, justify="left" if name == "persona" else "right")
    table.add_column("holdout (n)", justify="right")
    if anchor is not None:
        table.add_column("anchor", justify="right")
    rows = [*report.personas.values()]
    for score in rows:
        cells = [
            score.persona,
            f"{score.learned_n:,}",
            f"{score.learned:.3f}",
            f"{score.default:.3f}",
            f"{score.oracle:.3f}",
            f"{score.margin:+.3f}",
            f"{100 * score.best_share:.0f} %",
            "-" if score.holdout is None else f"{score.holdout:.3f} ({score.holdout_n})",
        ]
        if anchor is not None:
            other = anchor.personas.get(score.persona)
            cells.append("-" if other is None else f"{other.learned:.3f}")
        table.add_row(*cells)
    table.add_section()
    overall = ["all", f"{sum(s.learned_n for s in rows):,}", f"{report.learned:.3f}"]
    overall += [f"{report.default:.3f}", f"{report.oracle:.3f}"]
    overall += [f"{report.learned - report.default:+.3f}", "", ""]
    if anchor is not None:
        overall.append(f"{anchor.learned:.3f}")
    table.add_row(*overall)
    reasons = "  ".join(f"{r} {n:,}" for r, n in sorted(report.reasons.items()))
    arms = "  ".join(f"{a} {n:,}" for a, n in sorted(report.arms.items()))
    table.caption = (
        "learned: what the learned arm served; default, oracle: the default and the best "
        "variant on the same visits; best: share served the best variant"
        + ("; anchor: raw VW in process on the same visits" if anchor is not None else "")
        + f". {report.decisions:,} of {report.requested:,} evaluations ({reasons}; arms: {arms}); "
        f"holdout share {report.holdout_share:g}; {report.outcomes_sent:,} outcomes sent; "
        f"examples learned {report.service_examples_learned}; HTTP errors {report.http_errors}"
        + (f" (first: {report.first_error})" if report.first_error else "")
        + f"; {report.wall_seconds:.1f} s wall"
    )
    return table
