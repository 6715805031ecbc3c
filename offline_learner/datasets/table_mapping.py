"""Which columns of a flat table of logged decisions mean what: :class:`ColumnMapping`.

Most logged bandit data outside learnloop is one row per decision: some context
columns, the action shown, the probability it had, the reward. The mapping names those
columns, and optionally the time, ids, persona, the candidate set and action features.
It can live in a TOML or JSON file with the same keys::

    action = "item"
    propensity = "prob"
    reward = "clicked"
    timestamp = "ts"
    context = ["device", "country"]
    actions = ["shoes", "hats", "bags"]

    [action_features.shoes]
    price = 49.0
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from learnloop.errors import InvalidInput

Feature = str | float | bool


@dataclass(frozen=True)
class ColumnMapping:
    """Column names of a table of logged decisions.

    Parameters
    ----------
    action, propensity, reward
        The chosen action's id, the probability the logging policy gave it, the reward.
    timestamp
        Decision time: a timestamp column, ISO 8601 text (no zone = UTC) or epoch
        seconds. Without it, rows get 1970-01-01 plus their row number in seconds.
    event_id, user_id, session_id, persona
        Optional id columns; without ``event_id`` rows are ``<file stem>-<row>``,
        without ``persona`` it is ``unclassified``.
    context
        The context feature columns; ``None`` means every column not mapped otherwise.
        Null cells are left out of the row's features.
    actions
        The candidate set: the name of a list column (one list per row), or a fixed
        list of action ids, or ``None`` for every distinct action of the ``action``
        column (this needs a first pass over that column, done once per dataset).
    action_features
        Features per action id (a mapping), or the name of a JSON text column holding
        such a mapping per row.

    The logged propensity goes to the chosen action; the other candidates share the
    rest of the probability evenly (a flat table does not say more).
    """

    action: str
    propensity: str
    reward: str
    timestamp: str | None = None
    event_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    persona: str | None = None
    context: list[str] | None = None
    actions: str | list[str] | None = None
    action_features: str | dict[str, dict[str, Feature]] | None = field(default=None)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnMapping:
        """A mapping from the keys of a mapping file; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(
                f"unknown column-mapping keys {', '.join(unknown)}: expected some of "
                f"{', '.join(sorted(known))}"
            )
        for required in ("action", "propensity", "reward"):
            if not isinstance(data.get(required), str) or not data[required]:
                raise InvalidInput(f"the column mapping needs {required!r}: the column name")
        context = data.get("context")
        if context is not None and (
            not isinstance(context, list) or not all(isinstance(c, str) for c in context)
        ):
            raise InvalidInput("mapping 'context' must be a list of column names")
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> ColumnMapping:
        """Read a TOML (``.toml``) or JSON mapping file."""
        try:
            text = path.read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read the column mapping {path}: {exc}") from exc
        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"column mapping {path} is not valid TOML/JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInput(f"column mapping {path} must be an object of column names")
        return cls.from_dict(data)

    def named_columns(self) -> list[str]:
        """Every column the mapping names outside ``context``."""
        names = [
            self.action,
            self.propensity,
            self.reward,
            self.timestamp,
            self.event_id,
            self.user_id,
            self.session_id,
            self.persona,
            self.actions if isinstance(self.actions, str) else None,
            self.action_features if isinstance(self.action_features, str) else None,
        ]
        return [name for name in names if name is not None]
