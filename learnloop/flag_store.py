"""Feature-flag stores: the interface, the audit history they keep, and the in-memory backend.

Every change of a flag (create, update, enable, disable, delete, import) is one
:class:`~schemas.flags.FlagChange` written by the store *with* the change, in the same
transaction (SQLite) or script (Redis), so the history never misses nor invents one.
Versions count per key and never restart: a flag deleted and created again goes on
from its last version, so its history reads in order.

``version()`` is a cheap change counter over the whole store: the API's flag cache
(:mod:`app.flags`) polls it and reloads only when it moved, so no evaluation reads
the store.

The rules of a change (validation, the next version, the diff) are here, written once
for every backend: :func:`plan_put`, :func:`plan_toggle`, :func:`plan_delete`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from pydantic import JsonValue, ValidationError

from learnloop.clock import Clock, SystemClock
from learnloop.errors import InvalidInput, NotFound
from learnloop.flag_engine import change_diff, describe
from schemas.flags import FLAG_KEY_PATTERN, ChangeAction, Flag, FlagChange, FlagDefinition

DEFAULT_HISTORY_LIMIT: Final = 100
MAX_HISTORY_LIMIT: Final = 1000


class FlagStore(Protocol):
    """Flags by key, their audit history and a change counter (see the module docstring)."""

    async def get(self, key: str) -> Flag | None: ...

    async def all(self) -> list[Flag]:
        """Every flag, in the order they were first created."""
        ...

    async def put(self, key: str, definition: FlagDefinition, by: str) -> Flag:
        """Create or replace a flag (version + 1); refuses an invalid one with
        :class:`~learnloop.errors.InvalidInput`, storing nothing."""
        ...

    async def delete(self, key: str, by: str) -> None:
        """Remove a flag (its history stays); :class:`~learnloop.errors.NotFound` if absent."""
        ...

    async def set_enabled(self, key: str, enabled: bool, by: str) -> Flag:
        """The kill switch: turning a flag to the state it is in changes nothing."""
        ...

    async def history(self, key: str, limit: int = DEFAULT_HISTORY_LIMIT) -> list[FlagChange]:
        """The changes of one key, newest first (also after a delete)."""
        ...

    async def put_many(self, definitions: Mapping[str, FlagDefinition], by: str) -> list[Flag]:
        """Import: create or replace every flag given, all or nothing."""
        ...

    async def version(self) -> int:
        """A counter that moves on every change (cheap: caches poll it)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Planned:
    """A change worked out before it is written: the flag after it and its history record."""

    key: str
    flag: Flag | None
    change: FlagChange


def check_key(key: str) -> str:
    """Refuse a key the flag model would refuse (its decision point is ``flag.<key>``)."""
    if not re.fullmatch(FLAG_KEY_PATTERN, key):
        raise InvalidInput(
            f"flag key {key!r} is not valid: use 1-123 letters, digits, '_', '.' or '-'"
        )
    return key


def _as_flag(key: str, definition: FlagDefinition, version: int, by: str, now: datetime) -> Flag:
    try:
        data = definition.model_dump()
        return Flag.model_validate(
            {**data, "key": key, "version": version, "updated_at": now, "updated_by": by}
        )
    except ValidationError as exc:
        raise InvalidInput(f"flag {key!r} is not valid: {describe(exc)}") from None


# What the audit diff compares: the definition, not the bookkeeping that changes every time.
_BOOKKEEPING: Final = frozenset({"key", "version", "updated_at", "updated_by"})


def _document(flag: Flag | None) -> dict[str, JsonValue]:
    if flag is None:
        return {}
    return {k: v for k, v in flag.model_dump(mode="json").items() if k not in _BOOKKEEPING}


def _change(
    key: str,
    action: ChangeAction,
    version: int,
    by: str,
    now: datetime,
    before: Flag | None,
    after: Flag | None,
) -> FlagChange:
    return FlagChange(
        key=key,
        version=version,
        timestamp=now,
        by=by,
        action=action,
        diff=change_diff(_document(before), _document(after)),
        flag=after,
    )


def plan_put(
    key: str,
    definition: FlagDefinition,
    by: str,
    now: datetime,
    current: Flag | None,
    last_version: int,
    action: ChangeAction | None = None,
) -> Planned:
    """Create (``current`` is ``None``) or replace a flag; ``last_version`` is the key's
    newest version in the history (0 if it never existed)."""
    check_key(key)
    version = last_version + 1
    flag = _as_flag(key, definition, version, by, now)
    chosen: ChangeAction = action or ("create" if current is None else "update")
    return Planned(key, flag, _change(key, chosen, version, by, now, current, flag))


def plan_toggle(
    key: str, enabled: bool, by: str, now: datetime, current: Flag | None, last_version: int
) -> Planned | None:
    """Enable or disable; ``None`` when the flag already is in that state."""
    if current is None:
        raise flag_not_found(key)
    if current.enabled == enabled:
        return None
    version = last_version + 1
    flag = current.model_copy(
        update={"enabled": enabled, "version": version, "updated_at": now, "updated_by": by}
    )
    action: ChangeAction = "enable" if enabled else "disable"
    return Planned(key, flag, _change(key, action, version, by, now, current, flag))


def plan_delete(
    key: str, by: str, now: datetime, current: Flag | None, last_version: int
) -> Planned:
    if current is None:
        raise flag_not_found(key)
    version = last_version + 1
    return Planned(key, None, _change(key, "delete", version, by, now, current, None))


class FlagNotFound(NotFound):
    """No flag has this key (HTTP 404 ``flag_not_found``)."""


def flag_not_found(key: str) -> FlagNotFound:
    return FlagNotFound(
        f"flag {key!r} does not exist: GET /v1/flags lists them, PUT /v1/flags/{key} creates it"
    )


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_HISTORY_LIMIT:
        raise InvalidInput(f"history limit {limit} is out of range: use 1..{MAX_HISTORY_LIMIT}")
    return limit


def check_import(definitions: Mapping[str, FlagDefinition]) -> Sequence[str]:
    if not definitions:
        raise InvalidInput("the import holds no flags: send at least one flag definition")
    return list(definitions)


class MemoryFlagStore:
    """Flags in dicts (tests, benchmarks, a single process). ``clock`` stamps the changes."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self._flags: dict[str, Flag] = {}
        self._history: dict[str, list[FlagChange]] = {}
        self._version = 0

    async def get(self, key: str) -> Flag | None:
        return self._flags.get(key)

    async def all(self) -> list[Flag]:
        return list(self._flags.values())

    def _last(self, key: str) -> int:
        changes = self._history.get(key)
        return changes[-1].version if changes else 0

    def _apply(self, planned: Sequence[Planned]) -> None:
        for plan in planned:
            if plan.flag is None:
                self._flags.pop(plan.key, None)
            else:
                self._flags[plan.key] = plan.flag
            self._history.setdefault(plan.key, []).append(plan.change)
        if planned:
            self._version += 1

    async def put(self, key: str, definition: FlagDefinition, by: str) -> Flag:
        now = self.clock.now()
        plan = plan_put(key, definition, by, now, self._flags.get(key), self._last(key))
        self._apply([plan])
        assert plan.flag is not None
        return plan.flag

    async def delete(self, key: str, by: str) -> None:
        now = self.clock.now()
        self._apply([plan_delete(key, by, now, self._flags.get(key), self._last(key))])

    async def set_enabled(self, key: str, enabled: bool, by: str) -> Flag:
        now = self.clock.now()
        current = self._flags.get(key)
        plan = plan_toggle(key, enabled, by, now, current, self._last(key))
        if plan is None:
            assert current is not None
            return current
        self._apply([plan])
        assert plan.flag is not None
        return plan.flag

    async def history(self, key: str, limit: int = DEFAULT_HISTORY_LIMIT) -> list[FlagChange]:
        check_limit(limit)
        return list(reversed(self._history.get(key, [])))[:limit]

    async def put_many(self, definitions: Mapping[str, FlagDefinition], by: str) -> list[Flag]:
        now = self.clock.now()
        planned = [
            plan_put(key, d, by, now, self._flags.get(key), self._last(key), "import")
            for key, d in ((k, definitions[k]) for k in check_import(definitions))
        ]  # every plan validated before anything is applied: all or nothing
        self._apply(planned)
        return [p.flag for p in planned if p.flag is not None]

    async def version(self) -> int:
        return self._version

    async def close(self) -> None:
        return None
