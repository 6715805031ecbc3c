"""Model store on local disk: the embedded mode's model store.

Layout, one directory per decision point::

    root/
      home_products/
        00000041.vw        model bytes of release 41
        00000042.vw        model bytes of release 42
        00000042.pin       release 42 is pinned (a promotion or rollback, or the release
                           one replaced): never pruned
        manifest.json      the current ModelRelease (points at 00000042.vw)
        history.jsonl      the releases, oldest first, one JSON line each: every promotion
                           and rollback, and the newest ``history_keep`` online releases
        .lock              held (flock) by the one process publishing right now

``publish`` makes the model file durable first (temp file, fsync, rename,
fsync the directory) and only then swaps the manifest the same way, so a
reader -- another process polling ``current()`` -- never sees a manifest that
names a missing or half-written model; then it appends the release to the
history (fsynced; a torn last line left by a crash is ignored, and a current
release missing from the history is shown at its top). The newest ``keep``
model files are kept (so a reader that just read the previous manifest can
still load it), and every pinned one (a promotion or rollback, so a rollback
target of interest survives); older ones are deleted.

Writers: the online learner and, now and then, ``learnloop offline promote`` or
``learnloop models rollback`` from another process. ``publish`` holds an
exclusive ``flock`` on the directory's ``.lock`` from reading the current
version to the end, and refuses a version that is not newer than the current
one with :class:`Conflict` (the loser reads ``current()`` again).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import threading
from pathlib import Path

from pydantic import ValidationError

from learnloop.durable_files import TMP_SUFFIX, append_line, lines_from_end, write_atomic
from learnloop.errors import Conflict, InvalidInput, NotFound, Unavailable
from learnloop.modelstore.base import PINNED_SOURCES, with_current
from schemas.api import StoredRelease
from schemas.events import ModelRelease

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
HISTORY = "history.jsonl"
HISTORY_KEEP = 10_000
"""Online releases the history keeps (promotions and rollbacks are all kept)."""
_HISTORY_LINE_BYTES = 1_024  # compact once the file is about twice history_keep lines
LOCK = ".lock"
_PIN_FILE = re.compile(r"^(\d{8,})\.pin$")
_MODEL_FILE = re.compile(r"^(\d{8,})\.vw$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class LocalModelStore:
    """Versioned VW models and a manifest per decision point under ``root``.

    Parameters
    ----------
    root:
        Directory holding one sub-directory per decision point; created if missing.
    keep:
        How many model files to keep per decision point (at least 2, so the
        previous model stays loadable while readers switch).
    """

    def __init__(self, root: Path, keep: int = 5, history_keep: int = HISTORY_KEEP) -> None:
        if keep < 2:
            raise InvalidInput(f"keep={keep}: keep at least 2 model files per decision point")
        if history_keep < 1:
            raise InvalidInput(f"history_keep={history_keep}: keep at least 1 history entry")
        self.root = Path(root)
        self.keep = keep
        self.history_keep = history_keep
        self._write_lock = threading.Lock()
        # decision point -> ((st_ino, st_mtime_ns, st_size), release): current() is polled often.
        self._cache: dict[str, tuple[tuple[int, int, int], ModelRelease]] = {}

    def _dir(self, decision_point: str) -> Path:
        if not _SAFE_NAME.match(decision_point) or decision_point in {".", ".."}:
            raise InvalidInput(
                f"decision point name {decision_point!r} cannot be a directory name: "
                "use letters, digits, '_', '.', '-'"
            )
        return self.root / decision_point

    def model_path(self, decision_point: str, version: int) -> Path:
        """Where the model file of ``version`` lives (it may have been pruned)."""
        return self._dir(decision_point) / f"{version:08d}.vw"

    async def publish(self, release: ModelRelease, model: bytes) -> ModelRelease:
        """Write the model, then swap the manifest; returns the release with its location."""
        return await asyncio.to_thread(self._publish_sync, release, model)

    def _publish_sync(self, release: ModelRelease, model: bytes) -> ModelRelease:
        directory = self._dir(release.decision_point)
        with self._write_lock:
            directory.mkdir(parents=True, exist_ok=True)
            with open(directory / LOCK, "a+b") as lock:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
                return self._publish_locked(directory, release, model)

    def _publish_locked(self, directory: Path, release: ModelRelease, model: bytes) -> ModelRelease:
        self._cache.pop(release.decision_point, None)  # another process may have swapped it
        current = self._read_manifest(release.decision_point)
        if current is not None and release.version <= current.version:
            raise Conflict(
                f"model release {release.decision_point} v{release.version} is not newer than "
                f"the current v{current.version} ({current.source}): read current() again"
            )
        path = self.model_path(release.decision_point, release.version)
        if release.source in PINNED_SOURCES:
            write_atomic(path.with_suffix(".pin"), b"")  # 0. never pruned
        write_atomic(path, model)  # 1. model bytes durable
        stored = release.model_copy(update={"model_location": path.resolve().as_uri()})
        write_atomic(directory / MANIFEST, stored.model_dump_json().encode())  # 2. swap
        self._append_history(directory, stored)  # 3. history
        self._prune(directory, release.version)
        return stored

    def _append_history(self, directory: Path, release: ModelRelease) -> None:
        path = directory / HISTORY
        size = append_line(path, release.model_dump_json().encode())
        if size > self.history_keep * _HISTORY_LINE_BYTES:
            self._compact_history(path)

    def _compact_history(self, path: Path) -> None:
        """Keep the newest ``history_keep`` entries and every promotion and rollback (the
        online releases in between are the bulk: about one a second under traffic)."""
        lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
        newest = len(lines) - self.history_keep
        kept = [
            line
            for index, line in enumerate(lines)
            if index >= newest or b'"source":"online"' not in line
        ]
        write_atomic(path, b"\n".join(kept) + b"\n")
        logger.info("history %s compacted from %d to %d entries", path, len(lines), len(kept))

    def _prune(self, directory: Path, current_version: int) -> None:
        """Delete model files beyond the newest ``keep`` but the pinned ones, and temp
        files left by crashes."""
        versions: list[int] = []
        pinned: set[int] = set()
        for entry in os.scandir(directory):
            match = _MODEL_FILE.match(entry.name)
            if match:
                versions.append(int(match.group(1)))
            elif pin := _PIN_FILE.match(entry.name):
                pinned.add(int(pin.group(1)))
            elif entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX):
                # Only the writer (we hold the lock) creates temp files: these are crash debris.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        versions.sort(reverse=True)
        for version in versions[self.keep :]:
            if version != current_version and version not in pinned:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(directory / f"{version:08d}.vw")

    async def pin(self, decision_point: str, version: int) -> bool:
        """Mark ``version``'s model as never pruned; whether it is still stored."""
        return await asyncio.to_thread(self._pin_sync, decision_point, version)

    def _pin_sync(self, decision_point: str, version: int) -> bool:
        directory = self._dir(decision_point)
        path = self.model_path(decision_point, version)
        with self._write_lock, open(directory / LOCK, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # a prune cannot run between
            if not path.exists():
                return False
            write_atomic(path.with_suffix(".pin"), b"")
            return True

    async def history(self, decision_point: str, limit: int | None = None) -> list[StoredRelease]:
        """The releases, newest first, read from the end of ``history.jsonl``."""
        return await asyncio.to_thread(self._history_sync, decision_point, limit)

    def _history_sync(self, decision_point: str, limit: int | None) -> list[StoredRelease]:
        directory = self._dir(decision_point)
        releases: list[ModelRelease] = []
        for line in lines_from_end(directory / HISTORY):
            if limit is not None and len(releases) >= limit:
                break
            try:
                releases.append(ModelRelease.model_validate_json(line))
            except ValidationError:
                logger.warning("ignored a torn or invalid line in %s", directory / HISTORY)
        history = [
            StoredRelease(release=r, model_kept=self.model_path(decision_point, r.version).exists())
            for r in releases
        ]
        merged = with_current(history, self._read_manifest(decision_point))
        return merged[:limit] if limit is not None else merged

    async def current(self, decision_point: str) -> ModelRelease | None:
        """The current release; the manifest is re-parsed only when its file changed."""
        return self._read_manifest(decision_point)

    def _read_manifest(self, decision_point: str) -> ModelRelease | None:
        path = self._dir(decision_point) / MANIFEST
        try:
            # Open first, then fstat the open file: the key and the bytes belong to one inode.
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
                cached = self._cache.get(decision_point)
                if cached is not None and cached[0] == key:
                    return cached[1]
                data = handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Unavailable(f"cannot read model manifest {path}: {exc}") from exc
        try:
            release = ModelRelease.model_validate_json(data)
        except ValidationError as exc:
            raise Unavailable(
                f"model manifest {path} is not a valid model release ({exc.error_count()} errors): "
                "restore it from the previous model file or delete the directory to start fresh"
            ) from exc
        self._cache[decision_point] = (key, release)
        return release

    async def load(self, release: ModelRelease) -> bytes:
        """The model bytes of ``release``, found by decision point and version under ``root``."""
        path = self.model_path(release.decision_point, release.version)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as exc:
            raise NotFound(
                f"model {release.decision_point} v{release.version} is not in {path.parent} "
                f"(only the newest {self.keep} are kept): read current() again and load that"
            ) from exc

    async def close(self) -> None:
        return None
