"""Prometheus metrics of the join, registered on the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Summary

from schemas.events import JoinedExample


class JoinMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry()
        self.joined = Counter(
            "learnloop_joined_examples_total",
            "Joined examples emitted, by decision point and how the window closed",
            ["decision_point", "close_reason"],
            registry=registry,
        )
        # Rewards may be negative (a reward map's penalty, Personalizer's -1...1), which a
        # counter refuses: a summary's ``_sum`` may go down, and its ``_count`` is the
        # denominator of the reward rate.
        self.reward = Summary(
            "learnloop_joined_reward",
            "Rewards of joined examples: _sum over _count is the reward rate",
            ["decision_point", "arm", "persona"],
            registry=registry,
        )
        # Reward per variant of a personalized flag: its decision point is ``flag.<key>``
        # and its actions are the variants. Only those points, so a decision point with
        # hundreds of actions does not multiply the label sets.
        self.flag_reward = Summary(
            "learnloop_flag_reward",
            "Rewards of the joined exposures of personalized flags, by variant "
            "(_sum over _count is the variant's reward rate)",
            ["decision_point", "variant"],
            registry=registry,
        )
        self.dropped = Counter(
            "learnloop_join_dropped_total",
            "Events the join did not apply: late or orphaned outcomes, stale or inactive decisions",
            ["reason"],
            registry=registry,
        )
        self.open_windows = Gauge(
            "learnloop_join_open_windows",
            "Decisions whose reward window is open",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.held = Gauge(
            "learnloop_join_held_events",
            "Outcomes held for a decision not seen yet (clock skew)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.lag = Gauge(
            "learnloop_join_lag_seconds",
            "Wall clock minus join stream time (event time of the newest input)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.events = Counter(
            "learnloop_join_input_events_total",
            "Input events consumed by the join",
            ["stream"],
            registry=registry,
        )

    def emitted(self, examples: list[JoinedExample]) -> None:
        for example in examples:
            decision = example.decision
            self.joined.labels(decision.decision_point, example.close_reason).inc()
            self.reward.labels(decision.decision_point, decision.arm, decision.persona).observe(
                example.reward
            )
            if decision.decision_point.startswith("flag."):
                variant = decision.actions[decision.chosen_index].id
                self.flag_reward.labels(decision.decision_point, variant).observe(example.reward)
