"""Which processes ``learnloop serve`` runs for a given configuration.

>>> from learnloop.settings import Settings
>>> [c.name for c in service_children(Settings(workers=2), listen_fd=5)]
['api-0', 'api-1', 'loop']
>>> [c.name for c in service_children(Settings(workers=3, backend="kafka"), listen_fd=5)]
['api-0', 'api-1', 'api-2']
>>> service_children(Settings(workers=1), listen_fd=5)[0].args
('worker', 'api', '--listen-fd', '5')
"""

from __future__ import annotations

from learnloop.settings import Settings
from runtime.supervisor import ChildSpec


def service_children(settings: Settings, listen_fd: int) -> list[ChildSpec]:
    """The API workers on the shared socket and, in embedded mode, the loop process
    (in distributed mode the join and the learner are their own services)."""
    children = [
        ChildSpec(f"api-{i}", ("worker", "api", "--listen-fd", str(listen_fd)), drains_first=True)
        for i in range(settings.api_workers())
    ]
    if settings.backend == "embedded":
        children.append(ChildSpec("loop", ("worker", "loop")))
    return children
