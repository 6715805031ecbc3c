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
:mod:`~devtools.simulator.flags` holds the personas' hidden flag preferences;
:mod:`~devtools.simulator.flag_driver` drives a service's personalized flag,
:mod:`~devtools.simulator.flag_anchor` raw VW on the same visits, and
:mod:`~devtools.simulator.flag_ledger` scores both per persona against the fixed default.
"""

from devtools.simulator.driver import run_simulation
from devtools.simulator.flag_anchor import run_flag_anchor
from devtools.simulator.flag_driver import run_flag_simulation
from devtools.simulator.flag_ledger import FlagSimulationReport, render_flag_report
from devtools.simulator.flags import FLAG_PREFERENCES, FlagModel
from devtools.simulator.history import export_history, shop_history
from devtools.simulator.in_process import run_in_process, true_persona
from devtools.simulator.ledger import SimulationReport, render_report
from devtools.simulator.shop import ACTIONS, PERSONAS, Shop

__all__ = [
    "ACTIONS",
    "FLAG_PREFERENCES",
    "PERSONAS",
    "FlagModel",
    "FlagSimulationReport",
    "Shop",
    "SimulationReport",
    "export_history",
    "render_flag_report",
    "render_report",
    "run_flag_anchor",
    "run_flag_simulation",
    "run_in_process",
    "run_simulation",
    "shop_history",
    "true_persona",
]
