"""``learnloop simulate``: a synthetic multi-level-marketing shop that drives the loop.

:mod:`devtools.simulator.shop` is the pure shop model (personas, contexts, outcomes,
exact expected rewards), :mod:`devtools.simulator.rules` its hidden reward rules (``mlm``,
and the held-out ``seasons``); :mod:`devtools.simulator.driver` sends the traffic
to a running service over HTTP, :mod:`~devtools.simulator.in_process` to an in-process
VW policy; :mod:`~devtools.simulator.ledger` keeps the run's books and reports learned
vs uniform-random vs oracle reward, and (:mod:`~devtools.simulator.persona_accuracy`)
the service's personas against the truth. :mod:`~devtools.simulator.front_end` is what
a front end sends (``full`` or ``minimal``); :mod:`~devtools.simulator.history` the
shop's own books per known shopper, exported as the profiles a shop imports.
"""

from devtools.simulator.driver import run_simulation
from devtools.simulator.history import export_history, shop_history
from devtools.simulator.in_process import run_in_process, true_persona
from devtools.simulator.ledger import SimulationReport, render_report
from devtools.simulator.shop import ACTIONS, PERSONAS, Shop

__all__ = [
    "ACTIONS",
    "PERSONAS",
    "Shop",
    "SimulationReport",
    "export_history",
    "render_report",
    "run_in_process",
    "run_simulation",
    "shop_history",
    "true_persona",
]
