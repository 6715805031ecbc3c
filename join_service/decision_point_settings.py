"""Decision-point settings as the join reads them, and the time horizons they imply.

The join looks settings up by decision-point name (an unknown name gets the
defaults). From the longest window and the longest skew tolerance seen it
derives how long early follow-ups are held, how long closed decisions and
follow-up ids are remembered. Those horizons only grow, so the deadlines the
join computes from them never decrease and plain deques keep them in order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta

from schemas import DecisionPointConfig, DecisionPointSpec

ConfigSource = Mapping[str, DecisionPointConfig] | Callable[[str], DecisionPointConfig | None]
"""Decision-point settings by name: a mapping, or a function returning ``None`` if unknown."""

DEFAULT_SPEC = DecisionPointSpec()


class DecisionPointSettings:
    """Settings by decision-point name, plus the join's hold and memory horizons.

    Parameters
    ----------
    configs
        The decision points; a mapping is read at every lookup, so a runner may
        update it in place.
    longest
        ``(window_seconds, skew_tolerance_seconds)`` to start from (a restored
        join's); by default the longest among ``configs`` (or the defaults).

    >>> settings = DecisionPointSettings({})
    >>> settings.spec("anything").window_seconds, settings.hold_for.total_seconds()
    (20.0, 2.0)
    >>> settings.cover(DecisionPointSpec(window_seconds=60)); settings.id_memory.total_seconds()
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
            specs: list[DecisionPointSpec] = [*known] or [DEFAULT_SPEC]
            longest = (
                max(s.window_seconds for s in specs),
                max(s.skew_tolerance_seconds for s in specs),
            )
        self._set(*longest)

    def spec(self, decision_point: str) -> DecisionPointSpec:
        """The settings of a decision point, or the defaults when it is unknown."""
        config = self._lookup(decision_point)
        return DEFAULT_SPEC if config is None else config

    def duration(self, seconds: float) -> timedelta:
        """``timedelta(seconds=...)``, cached: the join needs the same few on every event."""
        duration = self._durations.get(seconds)
        if duration is None:
            duration = self._durations[seconds] = timedelta(seconds=seconds)
        return duration

    def cover(self, spec: DecisionPointSpec) -> None:
        """Grow the horizons so that they cover a decision point's window and tolerance."""
        if spec.window_seconds > self.longest_window or (
            spec.skew_tolerance_seconds > self.longest_skew
        ):
            self._set(
                max(spec.window_seconds, self.longest_window),
                max(spec.skew_tolerance_seconds, self.longest_skew),
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
