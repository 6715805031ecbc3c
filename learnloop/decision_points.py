"""Decision-point configuration: the shipped defaults, config files, and the store interface."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from learnloop.errors import ConfigurationError
from schemas.config import DecisionPointConfig


class DecisionPointStore(Protocol):
    async def get(self, name: str, *, fresh: bool = False) -> DecisionPointConfig | None:
        """The named decision point, or ``None``. ``fresh`` reads past any cache of this
        process: an admin's read must see what another process just wrote, while the
        decision path may serve a config a moment old."""
        ...

    async def put(self, config: DecisionPointConfig) -> None: ...

    async def all(self) -> list[DecisionPointConfig]: ...

    async def seed(self, configs: list[DecisionPointConfig]) -> list[str]:
        """Add the configs whose names are not stored yet (never overwrite an admin's
        change); return the names added."""
        ...


class MemoryDecisionPointStore:
    """Decision points held in a dict (tests, and the seed of the durable stores)."""

    def __init__(self, configs: list[DecisionPointConfig] | None = None) -> None:
        self._configs = {c.name: c for c in configs or []}

    async def get(self, name: str, *, fresh: bool = False) -> DecisionPointConfig | None:
        return self._configs.get(name)

    async def put(self, config: DecisionPointConfig) -> None:
        self._configs[config.name] = config

    async def all(self) -> list[DecisionPointConfig]:
        return list(self._configs.values())

    async def seed(self, configs: list[DecisionPointConfig]) -> list[str]:
        added = [c.name for c in configs if c.name not in self._configs]
        for config in configs:
            self._configs.setdefault(config.name, config)
        return added


def load_config_file(path: Path | None) -> list[DecisionPointConfig]:
    """Decision points from a TOML file (``[[decision_points]]`` tables) or the shipped defaults."""
    try:
        if path is None:
            text = resources.files("learnloop").joinpath("default_config.toml").read_text()
            source = "the shipped default_config.toml"
        else:
            text = path.read_text()
            source = str(path)
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read config {path}: {exc}") from exc
    try:
        return [DecisionPointConfig(**item) for item in data.get("decision_points", [])]
    except ValidationError as exc:
        raise ConfigurationError(f"invalid decision point in {source}: {exc}") from exc


class DecisionPointCache:
    """The decision points as a plain mapping for pure cores (join, learner), refreshed
    from a store at most every ``refresh_seconds`` of a monotonic clock.

    ``mapping`` is updated in place, so a core holding it sees changes (a new window,
    a promoted ``vw_args``) without being rebuilt.
    """

    def __init__(self, store: DecisionPointStore, refresh_seconds: float = 1.0) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self.mapping: dict[str, DecisionPointConfig] = {}
        self._refreshed_at: float | None = None

    async def refresh(self, now_monotonic: float, force: bool = False) -> None:
        due = (
            self._refreshed_at is None or now_monotonic - self._refreshed_at >= self.refresh_seconds
        )
        if force or due:
            current = {c.name: c for c in await self.store.all()}
            for gone in self.mapping.keys() - current.keys():
                del self.mapping[gone]
            self.mapping.update(current)
            self._refreshed_at = now_monotonic
