"""Prometheus metrics of the decision service, on a registry owned by one app.

Each app gets its own :class:`~prometheus_client.CollectorRegistry` (tests build
many apps; the global registry would refuse duplicate names). Under
``learnloop serve`` every process writes to the shared multiprocess directory and
``GET /metrics`` sums them (:mod:`learnloop.metrics_exposition`), so any worker's
scrape shows the whole loop, the join and learner of the loop process included.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from learnloop.metrics_exposition import exposition, multiprocess_dir
from schemas.events import ModelRelease

# Decisions usually take well under 10 ms, so the buckets are fine-grained there.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServedModelInfo(Protocol):
    """What the model gauges need from a served model."""

    @property
    def version(self) -> int: ...

    @property
    def release(self) -> ModelRelease | None: ...


class ServiceMetrics:
    """The decision service's counters, histograms and gauges."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(
            "learnloop_decisions",
            "Decisions made (replays of a known event_id excluded).",
            ["decision_point", "arm", "persona"],
            registry=r,
        )
        self._decided: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self.decision_latency = Histogram(
            "learnloop_decision_latency_seconds",
            "Time to decide, from request parsed to durable append (inclusive).",
            ["decision_point"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.append_latency = Histogram(
            "learnloop_eventlog_append_seconds",
            "Time for one event-log append to become durable (group commit included).",
            ["stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.outcomes = Counter(
            "learnloop_outcomes", "Outcome events accepted.", ["type"], registry=r
        )
        self.rewards = Counter("learnloop_rewards", "Direct rewards accepted.", registry=r)
        self.activations = Counter("learnloop_activations", "Activations accepted.", registry=r)
        self.http_errors = Counter(
            "learnloop_http_errors", "HTTP responses with status >= 400.", ["status"], registry=r
        )
        self.model_version = Gauge(
            "learnloop_model_version",
            "Version of the served model (0: untrained); the stalest API worker's.",
            ["decision_point"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.model_age = Gauge(
            "learnloop_model_age_seconds",
            "Seconds since the served model was released (absent while untrained); "
            "the stalest API worker's.",
            ["decision_point"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.model_swaps = Counter(
            "learnloop_model_swaps",
            "Models swapped in (releases and untrained models after a vw_args change).",
            ["decision_point"],
            registry=r,
        )

        self.persona_resolutions = Counter(
            "learnloop_persona_resolutions",
            "Personas resolved, by source: explicit, label, model, default, visitor.",
            ["source"],
            registry=r,
        )
        self._resolved: dict[str, Any] = {}
        self.persona_model_version = Gauge(
            "learnloop_persona_model_version",
            "Version of the served persona model by kind (catboost, river; 0: none); "
            "the stalest API worker's.",
            ["kind"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.persona_model_swaps = Counter(
            "learnloop_persona_model_swaps",
            "Persona models swapped in, by kind.",
            ["kind"],
            registry=r,
        )
        self.persona_cache_profiles = Gauge(
            "learnloop_persona_cache_profiles",
            "Profiles held in the API worker's persona cache; the fullest worker's.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.persona_prefetches = Counter(
            "learnloop_persona_prefetches",
            "Profiles fetched from the store after a decision missed the cache.",
            registry=r,
        )

        self.flag_evaluations = Counter(
            "learnloop_flag_evaluations",
            "Flag evaluations answered, by flag, variant served and reason.",
            ["flag", "variant", "reason"],
            registry=r,
        )
        self.flag_exposures = Counter(
            "learnloop_flag_exposures",
            "Personalized flag evaluations logged as decisions (exposures), by flag, "
            "variant and persona (replays of a known event_id included).",
            ["flag", "variant", "persona"],
            registry=r,
        )
        self.flag_errors = Counter(
            "learnloop_flag_evaluation_errors",
            "Flag evaluations that failed, by flag and OpenFeature error code.",
            ["flag", "code"],
            registry=r,
        )
        self._flag_children: dict[tuple[str, ...], Any] = {}

    def _flag_child(self, counter: Counter, *labels: str) -> Any:
        key = (str(id(counter)), *labels)
        child = self._flag_children.get(key)
        if child is None:
            child = self._flag_children[key] = counter.labels(*labels)
        return child

    def flag_evaluated(self, flag: str, variant: str, reason: str) -> None:
        """Count one flag evaluation (children cached: every evaluation passes here)."""
        self._flag_child(self.flag_evaluations, flag, variant, reason).inc()

    def flag_exposed(self, flag: str, variant: str, persona: str) -> None:
        self._flag_child(self.flag_exposures, flag, variant, persona).inc()

    def flag_error(self, flag: str, code: str) -> None:
        self._flag_child(self.flag_errors, flag, code).inc()

    def resolved(self, source: str) -> None:
        """Count one persona resolution by its source (children cached: the hot path)."""
        child = self._resolved.get(source)
        if child is None:
            child = self._resolved[source] = self.persona_resolutions.labels(source)
        child.inc()

    def decided(self, decision_point: str, arm: str, persona: str, seconds: float) -> None:
        """Count one decision and its latency (label children cached: this is the hot path)."""
        key = (decision_point, arm, persona)
        children = self._decided.get(key)
        if children is None:
            children = self._decided[key] = (
                self.decisions.labels(decision_point, arm, persona),
                self.decision_latency.labels(decision_point),
            )
        children[0].inc()
        children[1].observe(seconds)

    def observe_models(self, served: Mapping[str, ServedModelInfo], now: datetime) -> None:
        """Refresh the model gauges (called when ``/metrics`` is scraped)."""
        for name, model in served.items():
            self.model_version.labels(name).set(model.version)
            if model.release is not None:
                age = (now - model.release.timestamp).total_seconds()
                self.model_age.labels(name).set(max(0.0, age))
            elif multiprocess_dir() is None:
                # No age until a release is served. (prometheus_client cannot remove a
                # label set in multiprocess mode; there the last age stays.)
                self.model_age.remove(name)

    def exposition(self) -> bytes:
        """Prometheus text format: every process of the service under the supervisor."""
        return exposition(self.registry)
