"""What-if re-join: replay logged decisions and follow-ups through the pure join under
other settings (reward map, window, aggregation), without touching production.

The online embedded join (:mod:`join_service.embedded_runner`) hands the log's join
inputs to :class:`join_service.window.Join` in offset order and writes what it emits.
:func:`rejoin` does the same with the same pure join, so under the same settings it
emits the same joined examples in the same order — with two documented differences:

- the online runner moves an idle stream's time on by wall-clock time
  (:func:`join_service.stream_time.idle_stream_time`), which a replay cannot know; a
  log whose traffic kept going past its last window has no such advance to miss;
- with ``flush=True`` (the default) a replay also closes the windows still open at
  the end of the log, which online are still waiting for follow-ups.

The online join reads each decision point's settings when it needs them, so an
admin's change mid-log applies from then on; a replay applies one set throughout.

>>> from datetime import UTC, datetime, timedelta
>>> from schemas import Context, OutcomeEvent
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> seen = [
...     DecisionEvent(event_id="d1", decision_point="home", timestamp=t0,
...         context=Context(session_id="s1"), persona="visitor", actions=[],
...         chosen_index=0, probabilities=[], model_version="v1"),
...     OutcomeEvent(outcome_id="o1", session_id="s1", type="detail_view",
...         timestamp=t0 + timedelta(seconds=3)),
... ]
>>> home = DecisionPointConfig(name="home")
>>> [e.reward for e in rejoin(seen, {"home": home})]
[1.0]
>>> [e.reward for e in rejoin(seen, {"home": what_if(home, reward_map={"detail_view": 0.5})})]
[0.5]
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from join_service.horizons import ConfigSource, JoinHorizons
from join_service.join_state import JoinStats
from join_service.window import Join
from learnloop.decision_point_store import FILE_NAME as DECISION_POINTS_FILE
from learnloop.errors import InvalidInput, Unavailable
from offline_learner.datasets.event_log import EventLogReader
from schemas import DecisionEvent, DecisionPointConfig, JoinedExample, JoinInput

__all__ = ["EventLogReader", "Rejoin", "raw_events", "rejoin", "stored_configs", "what_if"]

log = logging.getLogger(__name__)

"""Where the embedded event log lives under the data directory (``runtime.embedded``)."""


def what_if(
    config: DecisionPointConfig,
    *,
    reward_map: Mapping[str, float | None] | None = None,
    window_seconds: float | None = None,
    aggregation: str | None = None,
    default_reward: float | None = None,
) -> DecisionPointConfig:
    """A validated copy of ``config`` with other join settings.

    ``reward_map`` changes the named outcome types' rewards and adds new types; a
    type mapped to ``None`` stops counting. Arguments left ``None`` keep their value.

    >>> home = DecisionPointConfig(name="home")
    >>> changed = what_if(home, reward_map={"detail_view": 0.5, "share": 0.2}, aggregation="sum")
    >>> changed.reward_map, changed.aggregation, home.reward_map["detail_view"]
    ({'basket_add': 3.0, 'detail_view': 0.5, 'share': 0.2}, 'sum', 1.0)
    >>> what_if(home, window_seconds=-1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    learnloop.errors.InvalidInput: what-if settings for 'home' are invalid: window_seconds ...
    """
    data = config.model_dump()
    if reward_map is not None:
        merged = dict(config.reward_map)
        for outcome_type, reward in reward_map.items():
            if reward is None:
                merged.pop(outcome_type, None)
            else:
                merged[outcome_type] = reward
        data["reward_map"] = merged
    for name, value in (
        ("window_seconds", window_seconds),
        ("aggregation", aggregation),
        ("default_reward", default_reward),
    ):
        if value is not None:
            data[name] = value
    try:
        return DecisionPointConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])} {error['msg']}" for error in exc.errors()
        )
        raise InvalidInput(
            f"what-if settings for {config.name!r} are invalid: {problems} "
            "(window_seconds in (0, 86400], aggregation one of max, sum, first, finite rewards)"
        ) from exc


class Rejoin(Iterator[JoinedExample]):
    """The joined examples of a replay, as an iterator, with the join's counters.

    Parameters
    ----------
    events
        Join inputs in the order the online join consumed them (the log's offsets).
    configs
        Decision-point settings, as for :class:`~join_service.window.Join`.
    flush
        Whether to close every window still open once ``events`` are exhausted.
    decision_points
        Only emit the examples of these decision points. Every event is still fed
        to the join: leaving any out would change stream time and thereby which
        follow-ups arrive in time.
    """

    def __init__(
        self,
        events: Iterable[JoinInput],
        configs: ConfigSource | None = None,
        *,
        flush: bool = True,
        decision_points: Collection[str] | None = None,
    ) -> None:
        self.configs = configs
        self.flush = flush
        self.decision_points = None if decision_points is None else frozenset(decision_points)
        self.join = Join(configs)
        self.dropped: Counter[str] = Counter()
        """Events the join did not apply, by reason (late, orphaned, stale, not_activated)."""
        self._horizons = JoinHorizons(configs)
        self._run = self._replay(iter(events))

    def __next__(self) -> JoinedExample:
        return next(self._run)

    @property
    def stats(self) -> JoinStats:
        """The join's counters so far (complete once the iterator is exhausted)."""
        return self.join.stats

    def _replay(self, events: Iterator[JoinInput]) -> Iterator[JoinedExample]:
        last_close: datetime | None = None
        for event in events:
            if isinstance(event, DecisionEvent):
                config = self._horizons.config(event.decision_point)
                self._horizons.cover(config)
                close_at = event.timestamp + timedelta(seconds=config.window_seconds)
                last_close = close_at if last_close is None else max(last_close, close_at)
            yield from self._keep(self.join.on_event(event))
        stream_time = self.join.stream_time
        if self.flush and stream_time is not None:
            # Past every window and every held follow-up's wait, so all of them resolve.
            hold = timedelta(seconds=self._horizons.longest_skew)
            end = max(stream_time, last_close or stream_time) + hold + timedelta(microseconds=1)
            yield from self._keep(self.join.advance(end))
        self._count_dropped()

    def _keep(self, emitted: list[JoinedExample]) -> list[JoinedExample]:
        self._count_dropped()
        if self.decision_points is None:
            return emitted
        return [e for e in emitted if e.decision.decision_point in self.decision_points]

    def _count_dropped(self) -> None:
        for item in self.join.drain_dropped():
            self.dropped[item.reason] += 1


def rejoin(
    events: Iterable[JoinInput],
    configs: ConfigSource | None = None,
    *,
    flush: bool = True,
    decision_points: Collection[str] | None = None,
) -> Rejoin:
    """Replay ``events`` through the pure join; see :class:`Rejoin`."""
    return Rejoin(events, configs, flush=flush, decision_points=decision_points)


def raw_events(data_dir: Path | str, *, until: int | None = None) -> Iterator[JoinInput]:
    """The join inputs of the embedded log under ``data_dir``, in the online join's order.

    Not filtered by decision point: filter :func:`rejoin`'s output instead (see
    :class:`Rejoin`).
    """
    return EventLogReader(data_dir).join_inputs(until=until)


def stored_configs(data_dir: Path | str) -> dict[str, DecisionPointConfig] | None:
    """The decision points the running service uses (``decision_points.sqlite``), read
    read-only; ``None`` when the data directory has none."""
    path = Path(data_dir) / DECISION_POINTS_FILE
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT config FROM decision_points ORDER BY rowid").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise Unavailable(f"cannot read decision points {path}: {exc}") from exc
    configs = [DecisionPointConfig.model_validate_json(row[0]) for row in rows]
    return {c.name: c for c in configs}
