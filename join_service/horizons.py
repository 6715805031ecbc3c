"""The join's time horizons, and the decision-point configurations it reads them from.

The join looks a configuration up by decision-point name (an unknown name is
joined with the defaults). From the longest window and the longest skew
tolerance seen it derives how long early follow-ups are held, how long closed
decisions and follow-up ids are remembered. Those horizons only grow, so the
deadlines the join computes from them never decrease and plain deques keep them
in order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta

from schemas import DecisionPointConfig

ConfigSource = Mapping[str, DecisionPointConfig] | Callable[[str], DecisionPointConfig | None]
"""Decision-point configurations by name: a mapping, or a function returning ``None`` if unknown."""

DEFAULT_CONFIG = DecisionPointConfig(name="default")
"""What a decision point the join does not know is joined with (only its name is made up)."""


class JoinHorizons:
    """Configurations by decision-point name, plus the join's hold and memory horizons.

    Parameters
    ----------
    configs
        The decision points; a mapping is read at every lookup, so a runner may
        update it in place.
    longest
        ``(window_seconds, skew_tolerance_seconds)`` to start from (a restored
        join's); by default the longest among ``configs`` (or the defaults).

    >>> horizons = JoinHorizons({})
    >>> horizons.config("anything").window_seconds, horizons.hold_for.total_seconds()
    (20.0, 2.0)
    >>> horizons.cover(DecisionPointConfig(name="p", window_seconds=60))
    >>> horizons.id_memory.total_seconds()
    122.0
    """

    def __init__(
        self, configs: ConfigSource | None, longest: tuple[float, float] | None = None
    ) -> None:
        if configs is None:
            self._lookup: Callable[[str], DecisionPointConfig | None] = lambda _name: None
        elif isinstance(configs, Mapping):
            self._lookup = configs.get
        else:
            self._lookup = configs
        self._durations: dict[float, timedelta] = {}
        if longest is None:
            known = list(configs.values()) if isinstance(configs, Mapping) else []
            all_configs = known or [DEFAULT_CONFIG]
            longest = (
                max(c.window_seconds for c in all_configs),
                max(c.skew_tolerance_seconds for c in all_configs),
            )
        self._set(*longest)

    def config(self, decision_point: str) -> DecisionPointConfig:
        """The configuration of a decision point, or the defaults when it is unknown."""
        config = self._lookup(decision_point)
        return DEFAULT_CONFIG if config is None else config

    def duration(self, seconds: float) -> timedelta:
        """``timedelta(seconds=...)``, cached: the join needs the same few on every event."""
        duration = self._durations.get(seconds)
        if duration is None:
            duration = self._durations[seconds] = timedelta(seconds=seconds)
        return duration

    def cover(self, config: DecisionPointConfig) -> None:
        """Grow the horizons so that they cover a decision point's window and tolerance."""
        if config.window_seconds > self.longest_window or (
            config.skew_tolerance_seconds > self.longest_skew
        ):
            self._set(
                max(config.window_seconds, self.longest_window),
                max(config.skew_tolerance_seconds, self.longest_skew),
            )

    def _set(self, window_seconds: float, skew_seconds: float) -> None:
        self.longest_window = window_seconds
        self.longest_skew = skew_seconds
        self.hold_for = timedelta(seconds=skew_seconds)
        """How long a follow-up waits for its decision."""
        self.closed_memory = timedelta(seconds=window_seconds)
        """How long a closed decision is remembered after it closed."""
        self.id_memory = timedelta(seconds=2 * window_seconds + skew_seconds)
        """How long a follow-up's own id is remembered (duplicates)."""
