"""The run's books: what was decided, what each choice was worth in expectation, how
well the service knew each shopper's persona, and the report table (learned vs
uniform random vs oracle over the last quarter)."""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rich.table import Table

from devtools.simulator.persona_accuracy import PersonaTally
from devtools.simulator.shop import ACTIONS, Shop, Visit
from learnloop.errors import ConfigurationError

SESSION_ONLY_SHARE = 0.1  # outcomes attributed by session_id only


@dataclass(frozen=True)
class SimulationReport:
    """The numbers of one run; rewards are per decision over the last quarter."""

    decisions: int
    requested: int
    http_errors: int
    outcomes_sent: int
    outcomes_late: int
    expected_defaults: int
    scored_decisions: int
    learned_expected: float
    learned_realised: float
    uniform_expected: float
    oracle_expected: float
    chosen_share: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    simulated_seconds: float = 0.0
    service_late_outcomes: float | None = None
    service_orphaned_outcomes: float | None = None
    service_examples_learned: int | None = None
    first_error: str | None = None
    purchases_sent: int = 0
    persona_scored: int = 0
    persona_accuracy: float | None = None
    persona_macro_f1: float | None = None
    persona_confusion: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def gap_closed(self) -> float:
        """Share of the uniform-to-oracle gap the learned policy closed (1.0 = oracle)."""
        gap = self.oracle_expected - self.uniform_expected
        return (self.learned_expected - self.uniform_expected) / gap if gap > 0 else math.nan


class Ledger:
    """One run's books: outcomes waiting to be sent in event-time order, and the tallies.

    Pure (no I/O): the driver records each answered decision and asks for the
    outcomes that are due by a given event time. With ``purchases`` a basket add
    carries its value and may be followed by a ``purchase`` (:meth:`Shop.checkout`);
    neither changes a reward.
    """

    def __init__(self, shop: Shop, decisions: int, seed: int, purchases: bool = True) -> None:
        self.shop = shop
        self.purchases = purchases
        self.personas = PersonaTally()
        self.purchases_queued = 0
        self.requested = decisions
        self.quarter_start = decisions - decisions // 4
        self._rng = random.Random(f"{seed}:attribution")
        self._pending: list[tuple[datetime, int, dict[str, Any]]] = []
        self._sums = {"learned": 0.0, "realised": 0.0, "uniform": 0.0, "oracle": 0.0}
        self._chosen: Counter[str] = Counter()
        self.decisions = self.scored = self.outcomes = self.late = self.defaults = 0

    def record(self, visit: Visit, action: str, event_id: str, persona: str | None = None) -> float:
        """Book an answered decision, queue its outcomes; return its realised reward.

        ``persona`` is the one the service answered with: for a logged-in shopper it
        is scored against the truth.
        """
        if action not in ACTIONS:
            raise ConfigurationError(
                f"the service chose action {action!r}; the simulated shop knows only "
                f"{', '.join(ACTIONS)} — run it against the shipped home_products decision point"
            )
        shop, window = self.shop, self.shop.window_seconds
        outcomes = shop.outcomes(visit, action)
        realised = shop.realised_reward(outcomes)
        self.decisions += 1
        if persona is not None and visit.shopper.user_id is not None:
            self.personas.add(visit.persona, persona)
        sent = shop.checkout(visit, outcomes) if self.purchases else outcomes
        for outcome in sent:
            at = visit.timestamp + timedelta(seconds=outcome.delay)
            body: dict[str, Any] = {"type": outcome.type, "timestamp": at.isoformat()}
            if outcome.value is not None:
                body["value"] = outcome.value
            self.purchases_queued += outcome.type == "purchase"
            if self._rng.random() < SESSION_ONLY_SHARE:
                body["session_id"] = visit.session_id
            else:
                body["event_id"] = event_id
            heapq.heappush(self._pending, (at, self.outcomes, body))
            self.outcomes += 1
            self.late += outcome.delay > window
        self.defaults += not any(o.delay <= window for o in outcomes)
        if visit.index >= self.quarter_start:
            self.scored += 1
            self._chosen[action] += 1
            rewards = shop.expected_rewards(visit)
            self._sums["learned"] += rewards[action]
            self._sums["realised"] += realised
            self._sums["uniform"] += math.fsum(rewards.values()) / len(rewards)
            self._sums["oracle"] += max(rewards.values())
        return realised

    def due(self, until: datetime | None = None) -> list[dict[str, Any]]:
        """Pop the outcomes whose event time is at or before ``until`` (all if None)."""
        out: list[dict[str, Any]] = []
        while self._pending and (until is None or self._pending[0][0] <= until):
            out.append(heapq.heappop(self._pending)[2])
        return out

    def report(self, **extra: Any) -> SimulationReport:
        n = max(self.scored, 1)
        return SimulationReport(
            decisions=self.decisions,
            requested=self.requested,
            http_errors=extra.pop("http_errors", 0),
            outcomes_sent=extra.pop("outcomes_sent", self.outcomes),
            outcomes_late=self.late,
            expected_defaults=self.defaults,
            scored_decisions=self.scored,
            learned_expected=self._sums["learned"] / n,
            learned_realised=self._sums["realised"] / n,
            uniform_expected=self._sums["uniform"] / n,
            oracle_expected=self._sums["oracle"] / n,
            chosen_share={a: self._chosen[a] / n for a in ACTIONS},
            purchases_sent=extra.pop("purchases_sent", self.purchases_queued),
            persona_scored=self.personas.scored,
            persona_accuracy=self.personas.accuracy(),
            persona_macro_f1=self.personas.macro_f1(),
            persona_confusion=self.personas.confusion(),
            **extra,
        )


def _persona_rows(report: SimulationReport) -> list[tuple[str, str] | None]:
    """The persona section, when the service classified anyone."""
    if report.persona_accuracy is None or report.persona_macro_f1 is None:
        return []
    return [
        None,
        ("persona accuracy (logged-in decisions)", f"{100 * report.persona_accuracy:.1f} %"),
        ("persona macro-F1 (logged-in decisions)", f"{report.persona_macro_f1:.3f}"),
        ("decisions scored for the persona", f"{report.persona_scored:,}"),
    ]


def render_report(report: SimulationReport) -> Table:
    """The end-of-run table: learned vs uniform random vs oracle, then the counts."""
    table = Table(title="learnloop simulate — expected reward per decision, last quarter")
    table.add_column("measure")
    table.add_column("value", justify="right")
    learned = f"{report.learned_expected:.3f}  (realised {report.learned_realised:.3f})"
    shares = "  ".join(f"{a} {100 * s:.0f}%" for a, s in report.chosen_share.items())
    for row in [
        ("learned (last quarter)", learned),
        ("uniform random", f"{report.uniform_expected:.3f}"),
        ("oracle", f"{report.oracle_expected:.3f}"),
        ("gap closed %", f"{100 * report.gap_closed:.1f} %"),
        ("learned choices (last quarter)", shares),
        *_persona_rows(report),
        None,
        ("decisions", f"{report.decisions:,} of {report.requested:,}"),
        ("outcomes sent", f"{report.outcomes_sent:,}"),
        ("purchases among them", f"{report.purchases_sent:,}"),
        ("outcomes after their window (expected late)", f"{report.outcomes_late:,}"),
        ("no in-window outcome (expected defaults)", f"{report.expected_defaults:,}"),
        ("late outcomes counted by the service (this run)", report.service_late_outcomes),
        ("orphaned outcomes counted by the service", report.service_orphaned_outcomes),
        ("examples learned by the service's model", report.service_examples_learned),
        ("HTTP errors", f"{report.http_errors:,}"),
        ("first error", report.first_error),
        (
            "time",
            f"{report.wall_seconds:.1f} s wall, {report.simulated_seconds / 60:.1f} min simulated",
        ),
    ]:
        if row is None:
            table.add_section()
        elif row[1] is not None:
            value = row[1]
            table.add_row(row[0], value if isinstance(value, str) else f"{value:,.0f}")
    return table
