"""``learnloop simulate``: a synthetic multi-level-marketing shop that drives the loop.

:mod:`learnloop.simulator.shop` is the pure shop model (personas, contexts, preferences,
outcomes, exact expected rewards); :mod:`learnloop.simulator.driver` sends the traffic
to a running service over HTTP, :mod:`~learnloop.simulator.in_process` to an in-process
VW policy; :mod:`~learnloop.simulator.ledger` keeps the run's books and reports learned
vs uniform-random vs oracle reward.
"""

from learnloop.simulator.driver import run_simulation
from learnloop.simulator.in_process import run_in_process
from learnloop.simulator.ledger import SimulationReport, render_report
from learnloop.simulator.shop import ACTIONS, PERSONAS, Shop

__all__ = [
    "ACTIONS",
    "PERSONAS",
    "Shop",
    "SimulationReport",
    "render_report",
    "run_in_process",
    "run_simulation",
]
