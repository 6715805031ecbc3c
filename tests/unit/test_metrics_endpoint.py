"""The workers' Prometheus endpoint: served while the block runs, a clear error on a busy port."""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from learnloop.errors import ConfigurationError
from learnloop.settings import Settings
from learnloop.telemetry import metrics_endpoint
from runtime.processes import free_port


def test_serves_the_registry_while_the_block_runs_and_nothing_without_a_port() -> None:
    registry = CollectorRegistry()
    Counter("learnloop_probe_total", "probe", registry=registry).inc(3)
    port = free_port()
    with metrics_endpoint(Settings(metrics_port=port), registry) as served:
        assert served == port
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
        assert "learnloop_probe_total 3.0" in text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1.0)
    with metrics_endpoint(Settings(), registry) as served:
        assert served is None


def test_a_busy_port_is_a_configuration_error_that_names_the_setting() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with (
            pytest.raises(ConfigurationError, match="LEARNLOOP_METRICS_PORT"),
            metrics_endpoint(Settings(metrics_port=port), CollectorRegistry()),
        ):
            pass
