"""What the shop's front end sends with a decision: the whole visit, or a real page view.

``full`` (the default, the simulator's behaviour before personas) sends every
feature of the visit, the shopper's behavioural ones included (``visits_30d``,
``orders_90d``, ``avg_basket``, ``recruits``, ``orders_for_others_share`` and their
buckets). ``minimal`` sends only what a front end knows on a page view
(:data:`MINIMAL_FEATURES`); the behavioural history then lives only in the service's
profile store (imported from :mod:`devtools.simulator.history`, kept fresh by the
outcomes), as in a real shop.
"""

from __future__ import annotations

from devtools.simulator.shop import Visit
from learnloop.errors import ConfigurationError

CONTEXTS = ("full", "minimal")
MINIMAL_FEATURES: tuple[str, ...] = ("category_page", "season", "device", "region", "logged_in")
"""What a real front end knows on a page view; the rest is behavioural history."""


def front_end_features(visit: Visit, context: str = "full") -> dict[str, str | float | bool]:
    """The features a front end sends for ``visit``: all of them, or the ``minimal`` page view.

    >>> from datetime import UTC, datetime
    >>> from devtools.simulator.shop import Shop
    >>> visit = next(Shop(seed=7).visits(datetime(2026, 1, 1, tzinfo=UTC), count=1))
    >>> sorted(front_end_features(visit, "minimal"))
    ['category_page', 'device', 'logged_in', 'region', 'season']
    """
    if context == "full":
        return dict(visit.features)
    if context == "minimal":
        return {name: visit.features[name] for name in MINIMAL_FEATURES}
    raise ConfigurationError(f"unknown context {context!r}: choose one of {', '.join(CONTEXTS)}")
