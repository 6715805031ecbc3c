"""``learnloop simulate``: a synthetic multi-level-marketing shop that drives the loop.

:mod:`devtools.simulator.shop` is the pure shop model (personas, contexts, outcomes,
exact expected rewards), :mod:`devtools.simulator.rules` its hidden reward rules (``mlm``,
and the held-out ``seasons``); :mod:`devtools.simulator.driver` sends the traffic
to a running service over HTTP, :mod:`~devtools.simulator.in_process` to an in-process
VW policy; :mod:`~devtools.simulator.ledger` keeps the run's books and reports learned
vs uniform-random vs oracle reward.
"""

from devtools.simulator.driver import run_simulation
from devtools.simulator.in_process import run_in_process
from devtools.simulator.ledger import SimulationReport, render_report
from devtools.simulator.shop import ACTIONS, PERSONAS, Shop

__all__ = [
    "ACTIONS",
    "PERSONAS",
    "Shop",
    "SimulationReport",
    "render_report",
    "run_in_process",
    "run_simulation",
]
