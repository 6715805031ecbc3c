"""The persona-model store: versioned persona classifiers with their history, in memory
(tests), on local disk (embedded mode) or in Redis (distributed mode,
:mod:`learnloop.persona_models_redis`).

One store holds one sequence of versions (there is one persona model per installation,
not one per decision point). ``publish`` with ``version=0`` takes the next version under
the store's lock; a given version must be newer than the current one
(:class:`~learnloop.errors.Conflict`). Every model's bytes are kept: a persona model is
a few hundred kB and is published about once a closing, so every version stays a
rollback target.

Local layout under ``<data_dir>/personas/``::

    00000003.model     model bytes of v3 (PersonaModel.to_bytes)
    manifest.json      the current PersonaModelRelease
    history.jsonl      every release, oldest first
    .lock              flock held while publishing

written in the model store's order (:mod:`learnloop.modelstore.local`): model bytes
durable, then the manifest swapped atomically, then the history line; a reader polling
``current()`` never sees a manifest naming a missing model.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from learnloop.durable_files import append_line, lines_from_end, write_atomic
from learnloop.errors import Conflict, InvalidInput, NotFound, Unavailable
from learnloop.persona_model import PersonaModel
from learnloop.settings import Settings
from schemas.personas import PersonaModelRelease, StoredPersonaRelease

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
HISTORY = "history.jsonl"
LOCK = ".lock"
DIRECTORY = "personas"
"""The store's directory under the data directory."""


class PersonaModelStore(Protocol):
    async def publish(self, release: PersonaModelRelease, model: bytes) -> PersonaModelRelease:
        """Store the bytes and make ``release`` current; ``version=0`` takes the next one.
        Returns the release with its version and ``model_location``."""
        ...

    async def current(self) -> PersonaModelRelease | None:
        """The current release, or ``None`` before the first."""
        ...

    async def load(self, release: PersonaModelRelease) -> bytes:
        """The model bytes of a release (:class:`NotFound` when missing)."""
        ...

    async def history(self, limit: int | None = None) -> list[StoredPersonaRelease]:
        """The releases, newest first (at most ``limit``)."""
        ...

    async def close(self) -> None: ...


def _check_newer(release: PersonaModelRelease, current: PersonaModelRelease | None) -> int:
    """The version to publish ``release`` as (0 means the next one)."""
    latest = current.version if current is not None else 0
    if release.version == 0:
        return latest + 1
    if release.version <= latest:
        raise Conflict(
            f"persona model v{release.version} is not newer than the current v{latest}: "
            "publish with version 0 to take the next one"
        )
    return release.version


class MemoryPersonaModelStore:
    """Persona models in dicts, for tests."""

    def __init__(self) -> None:
        self._releases: list[PersonaModelRelease] = []
        self._blobs: dict[int, bytes] = {}

    async def publish(self, release: PersonaModelRelease, model: bytes) -> PersonaModelRelease:
        version = _check_newer(release, self._releases[-1] if self._releases else None)
        stored = release.model_copy(
            update={"version": version, "model_location": f"memory://personas/{version}"}
        )
        self._blobs[version] = model
        self._releases.append(stored)
        return stored

    async def current(self) -> PersonaModelRelease | None:
        return self._releases[-1] if self._releases else None

    async def load(self, release: PersonaModelRelease) -> bytes:
        try:
            return self._blobs[release.version]
        except KeyError:
            raise NotFound(f"persona model v{release.version} is not stored") from None

    async def history(self, limit: int | None = None) -> list[StoredPersonaRelease]:
        newest = list(reversed(self._releases))[:limit]
        return [
            StoredPersonaRelease(release=r, model_kept=r.version in self._blobs) for r in newest
        ]

    async def close(self) -> None:
        return None


class LocalPersonaModelStore:
    """Persona models as files under ``root`` (``<data_dir>/personas``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._write_lock = threading.Lock()

    def model_path(self, version: int) -> Path:
        return self.root / f"{version:08d}.model"

    async def publish(self, release: PersonaModelRelease, model: bytes) -> PersonaModelRelease:
        return await asyncio.to_thread(self._publish_sync, release, model)

    def _publish_sync(self, release: PersonaModelRelease, model: bytes) -> PersonaModelRelease:
        with self._write_lock:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise Unavailable(
                    f"cannot create the persona-model store {self.root}: {exc}"
                ) from exc
            with open(self.root / LOCK, "a+b") as lock:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
                version = _check_newer(release, self._read_manifest())
                path = self.model_path(version)
                stored = release.model_copy(
                    update={"version": version, "model_location": path.resolve().as_uri()}
                )
                write_atomic(path, model)  # 1. model bytes durable
                write_atomic(self.root / MANIFEST, stored.model_dump_json().encode())  # 2. swap
                self._append_history(stored)  # 3. history
                return stored

    def _append_history(self, release: PersonaModelRelease) -> None:
        append_line(self.root / HISTORY, release.model_dump_json().encode())

    async def current(self) -> PersonaModelRelease | None:
        return await asyncio.to_thread(self._read_manifest)

    def _read_manifest(self) -> PersonaModelRelease | None:
        path = self.root / MANIFEST
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Unavailable(f"cannot read the persona-model manifest {path}: {exc}") from exc
        try:
            return PersonaModelRelease.model_validate_json(data)
        except ValidationError as exc:
            raise Unavailable(
                f"{path} is not a valid persona-model release ({exc.error_count()} errors): "
                "restore it from history.jsonl's last line or delete it to start afresh"
            ) from exc

    async def load(self, release: PersonaModelRelease) -> bytes:
        path = self.model_path(release.version)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound(f"persona model v{release.version} is not in {self.root}") from None

    async def history(self, limit: int | None = None) -> list[StoredPersonaRelease]:
        return await asyncio.to_thread(self._history_sync, limit)

    def _history_sync(self, limit: int | None) -> list[StoredPersonaRelease]:
        releases: list[PersonaModelRelease] = []
        for line in lines_from_end(self.root / HISTORY):
            if limit is not None and len(releases) >= limit:
                break
            try:
                releases.append(PersonaModelRelease.model_validate_json(line))
            except ValidationError:
                logger.warning("ignored a torn or invalid line in %s", self.root / HISTORY)
        current = self._read_manifest()
        if current is not None and (not releases or releases[0].version < current.version):
            releases.insert(0, current)  # a crash between the manifest and the history
        return [
            StoredPersonaRelease(release=r, model_kept=self.model_path(r.version).exists())
            for r in releases[:limit]
        ]

    async def close(self) -> None:
        return None


async def load_current_model(store: PersonaModelStore) -> PersonaModel | None:
    """The current persona model, loaded and labelled with its version (``None`` before
    the first publish)."""
    release = await store.current()
    if release is None:
        return None
    return PersonaModel.from_bytes(await store.load(release), version=release.version)


async def rollback(
    store: PersonaModelStore, now: datetime, to_version: int | None = None, note: str = ""
) -> PersonaModelRelease:
    """Serve an earlier persona model again: its bytes are republished as the next version
    (source ``rollback``, ``restores_version`` naming it), so the history keeps both.

    ``to_version`` defaults to the release before the current one.
    """
    history = await store.history()
    if not history:
        raise NotFound("no persona model is published yet: run learnloop personas train first")
    current = history[0].release
    if to_version is None:
        if len(history) < 2:
            raise InvalidInput(
                f"v{current.version} is the only persona model: nothing to roll back to"
            )
        target = history[1].release
    else:
        found = [h.release for h in history if h.release.version == to_version]
        if not found:
            versions = ", ".join(f"v{h.release.version}" for h in history[:20])
            raise NotFound(f"no persona model v{to_version}; the store has {versions}")
        target = found[0]
    if target.version == current.version:
        raise InvalidInput(f"v{target.version} is already the current persona model")
    model = await store.load(target)
    restored = target.model_copy(
        update={
            "version": 0,
            "created_at": now,
            "source": "rollback",
            "restores_version": target.version,
            "model_location": "",
            "note": note or f"rollback from v{current.version}",
        }
    )
    return await store.publish(restored, model)


def open_persona_model_store(settings: Settings) -> PersonaModelStore:
    """The store of the configured mode: ``<data_dir>/personas`` embedded, Redis with
    ``kafka`` (close it when done)."""
    if settings.backend == "kafka":
        from learnloop.persona_models_redis import RedisPersonaModelStore

        return RedisPersonaModelStore(settings.redis_url, settings.redis_prefix)
    return LocalPersonaModelStore(Path(settings.data_dir) / DIRECTORY)
