"""Prometheus exposition for one process or for all processes of a ``learnloop serve``.

Under the supervisor every process (API workers, the loop) writes its metrics to
the directory named by ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
multiprocess mode); :func:`exposition` then sums every process's files, so one
scrape of any API worker shows the whole service. Without it, the given registry
is exposed as it is (tests, a single process).

Gauges declare how processes combine (``multiprocess_mode``): ``livesum`` where one
process owns the value (the loop's join gauges), ``livemin`` / ``livemax`` where the
stalest worker matters (the served model version and age).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared metrics directory when this process runs under the supervisor."""
    return os.environ.get(MULTIPROCESS_DIR_ENV) or None


def exposition(registry: CollectorRegistry) -> bytes:
    """Prometheus text of every supervised process, or of ``registry`` alone."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(registry)
    combined = CollectorRegistry()
    MultiProcessCollector(combined, path=path)  # type: ignore[no-untyped-call]
    return generate_latest(combined)
