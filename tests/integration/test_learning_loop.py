"""The whole embedded loop learns: a real ``learnloop serve`` driven over HTTP by the
shop simulator (seeded) beats uniform random by a margin that cannot pass by chance."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.simulator import run_simulation
from runtime.processes import ServiceProcess

pytestmark = pytest.mark.integration


async def test_served_policy_closes_most_of_the_gap_to_the_oracle(tmp_path: Path) -> None:
    service = ServiceProcess(tmp_path / "data", log_file=tmp_path / "serve.log").start()
    try:
        report = await run_simulation(service.url, decisions=4000, seed=7, progress=False)
    finally:
        code = service.stop()
    # SIGTERM is a clean stop: the runners and the event log close, the exit code is 0.
    assert code == 0, service.log_tail()
    assert report.http_errors == 0 and report.decisions == 4000
    # Every decision's window closed and was learned exactly once by the service's model.
    assert report.service_examples_learned == 4000
    # Over the last quarter (1,000 decisions) uniform random earns ~0.88 and the oracle
    # ~2.06 per decision; the standard error of a mean of 1,000 expected rewards is
    # below 0.03, so 40 % of the gap (~0.47 above random) cannot be reached by chance.
    assert report.gap_closed >= 0.40, (
        f"learned {report.learned_expected:.3f}, "
        f"uniform {report.uniform_expected:.3f}, oracle {report.oracle_expected:.3f}"
    )
    assert report.learned_realised > report.uniform_expected + 0.3
