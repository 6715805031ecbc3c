"""The supervisor gives up on a child that keeps crashing instead of restarting it forever."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runtime.restart_policy import RestartPolicy
from runtime.supervisor import ChildSpec, Supervisor

pytestmark = pytest.mark.integration


def test_a_crash_loop_stops_the_service_with_an_error(tmp_path: Path) -> None:
    # `learnloop worker nope` exits 2 at once: a broken configuration, not a passing fault.
    policy = RestartPolicy(max_crashes=2, within_seconds=60.0, first_backoff_seconds=0.01)
    supervisor = Supervisor(
        [ChildSpec("broken", ("worker", "nope"))], env={}, run_dir=tmp_path, policy=policy
    )
    assert supervisor.run(threading.Event()) == 1
    assert policy.crashes("broken") == 3
    assert supervisor.failed is not None and "broken exited with code 2" in supervisor.failed
