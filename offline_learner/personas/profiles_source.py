"""Where segmentation and training read profiles from: a profile export (CSV or Parquet,
the file a shop imports after a closing) or the profile store itself.

An export has one row per user, columns named like
:class:`~schemas.profiles.UserProfile`'s fields (``categories`` as a JSON object text,
times ISO 8601; an empty cell is "never"). Columns named ``ctx.<key>`` are context
features the front end sends (e.g. ``ctx.device``): the classifier is trained with them.
Other columns are ignored. A bad row is refused with its row number and what is wrong;
nothing is read half.

``as_of`` is the time the features are computed at (recency): the latest activity in
the data (the closing), so the same export always gives the same features.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from learnloop.errors import InvalidInput
from learnloop.persona_features import CONTEXT_PREFIX, FeatureValue, context_value, profile_features
from learnloop.profiles import ProfileStore, all_profiles
from schemas.profiles import UserProfile

MAX_ERRORS_SHOWN: Final = 10
_FIELDS: Final = frozenset(UserProfile.model_fields)


@dataclass(frozen=True)
class ProfileTable:
    """Profiles with their (optional) context columns and where they came from."""

    profiles: list[UserProfile]
    source: str
    contexts: list[dict[str, FeatureValue]] = field(default_factory=list)

    @property
    def user_ids(self) -> list[str]:
        return [p.user_id for p in self.profiles]

    def as_of(self) -> datetime:
        """The latest activity in the profiles (the closing), or now when there is none."""
        times = [t for p in self.profiles for t in (p.last_seen, p.last_order_at) if t is not None]
        return max(times) if times else datetime.now(UTC)

    def features(self, now: datetime | None = None) -> list[dict[str, FeatureValue]]:
        """Every profile's feature dict at ``now`` (default :meth:`as_of`)."""
        at = now or self.as_of()
        contexts = self.contexts or [{} for _ in self.profiles]
        rows = []
        for profile, context in zip(self.profiles, contexts, strict=True):
            row = profile_features(profile, {}, at)
            row.update(context)
            rows.append(row)
        return rows


def _cell(name: str, value: Any) -> Any:
    """A CSV or Parquet cell as the profile field wants it."""
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            return None
        if name == "categories":
            return json.loads(value)
    return value


def _rows_to_table(rows: Sequence[Mapping[str, Any]], source: str) -> ProfileTable:
    profiles: list[UserProfile] = []
    contexts: list[dict[str, FeatureValue]] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        try:
            values = {k: _cell(k, v) for k, v in row.items() if k in _FIELDS}
            profile = UserProfile.model_validate({k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "row"
            errors.append(f"row {number}: {where}: {first['msg']}")
            continue
        except ValueError as exc:  # categories that are not JSON
            errors.append(f"row {number}: categories: not a JSON object ({exc})")
            continue
        if profile.user_id in seen:
            errors.append(
                f"row {number}: user {profile.user_id!r} repeats row {seen[profile.user_id]}"
            )
            continue
        seen[profile.user_id] = number
        profiles.append(profile)
        contexts.append(
            {
                k: context_value(v)
                for k, v in row.items()
                if k.startswith(CONTEXT_PREFIX) and v is not None and v != ""
            }
        )
    if errors:
        shown = "; ".join(errors[:MAX_ERRORS_SHOWN])
        more = len(errors) - MAX_ERRORS_SHOWN
        raise InvalidInput(
            f"{source}: {len(errors)} bad rows, nothing read: {shown}"
            + (f"; … {more} more" if more > 0 else "")
            + " (fix them, or drop those rows, and run again)"
        )
    if not profiles:
        raise InvalidInput(f"{source} holds no profiles")
    return ProfileTable(profiles=profiles, source=source, contexts=contexts)


def read_profile_file(path: Path) -> ProfileTable:
    """Profiles from a CSV or Parquet export (by the file's suffix)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise InvalidInput(f"no profile export {path}")
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as source:
            reader = csv.DictReader(source)
            if reader.fieldnames is None or "user_id" not in reader.fieldnames:
                raise InvalidInput(f"{path}: no user_id column in the header")
            return _rows_to_table(list(reader), str(path))
    if suffix in {".parquet", ".pq"}:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several kinds for a bad file
            raise InvalidInput(f"cannot read {path} as Parquet: {exc}") from None
        if "user_id" not in table.column_names:
            raise InvalidInput(f"{path}: no user_id column")
        return _rows_to_table(table.to_pylist(), str(path))
    raise InvalidInput(f"cannot tell the format of {path}: name it .csv or .parquet")


async def read_profile_store(store: ProfileStore, source: str) -> ProfileTable:
    """Every profile in the store (pseudonymous ids), read through its change feed."""
    profiles = [p async for p in all_profiles(store)]
    if not profiles:
        raise InvalidInput(
            f"{source} holds no profiles: import some (learnloop personas import-profiles FILE) "
            "or let traffic build them"
        )
    return ProfileTable(profiles=profiles, source=source)
