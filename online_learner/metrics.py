"""Prometheus metrics of the online learner, registered on the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from schemas.events import ModelRelease


class LearnerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry()
        self.learned = Counter(
            "learnloop_learner_examples_total",
            "Joined examples learned (rate() of it is the learner throughput)",
            ["decision_point"],
            registry=registry,
        )
        self.skipped = Counter(
            "learnloop_learner_skipped_total",
            "Joined examples not learned (duplicates, unknown decision point, invalid)",
            registry=registry,
        )
        self.releases = Counter(
            "learnloop_model_releases_total",
            "Model releases published",
            ["decision_point"],
            registry=registry,
        )
        self.released_version = Gauge(
            "learnloop_learner_released_version",
            "Version of the last published release",
            ["decision_point"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.learn_rate = Gauge(
            "learnloop_learner_examples_per_second",
            "Learner throughput while learning (examples per second of learn time)",
            ["decision_point"],
            registry=registry,
            multiprocess_mode="livesum",
        )

    def published(self, release: ModelRelease) -> None:
        self.releases.labels(release.decision_point).inc()
        self.released_version.labels(release.decision_point).set(release.version)
        self.learn_rate.labels(release.decision_point).set(
            release.metrics.get("learn_per_second", 0)
        )
