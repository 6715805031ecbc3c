"""Files that survive a crash: atomic replacement, fsynced appends, reading from the end.

The stores on local disk (models, persona models) keep a manifest that readers poll and
an append-only history; these are the three ways they touch files.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"
"""Temp files are ``.<name>.<uuid>.tmp`` next to their target (crash debris to sweep)."""
_TAIL_CHUNK = 64 * 1024


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (POSIX needs the directory fsynced)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that the path holds either the old or the whole new content."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def append_line(path: Path, line: bytes) -> int:
    """Append ``line`` and a newline to ``path``, fsynced; the file's new size. A crash may
    have torn the last line: then ours starts on a fresh line (readers skip the torn one)."""
    with open(path, "ab") as handle:
        if handle.tell() > 0:
            with open(path, "rb") as reader:
                reader.seek(-1, os.SEEK_END)
                if reader.read(1) != b"\n":
                    handle.write(b"\n")
        handle.write(line + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
        return handle.tell()


def lines_from_end(path: Path) -> list[bytes] | _ReverseLines:
    """The non-empty lines of ``path``, last first, read in chunks from its end."""
    try:
        handle = open(path, "rb")  # noqa: SIM115  (closed by the iterator)
    except FileNotFoundError:
        return []
    return _ReverseLines(handle)


class _ReverseLines:
    """Iterates a file's lines backwards without reading all of it (history can grow long)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def __iter__(self) -> Iterator[bytes]:
        with self.handle as handle:
            position = handle.seek(0, os.SEEK_END)
            rest = b""
            while position > 0:
                size = min(_TAIL_CHUNK, position)
                position -= size
                handle.seek(position)
                block = handle.read(size) + rest
                lines = block.split(b"\n")
                rest = lines[0]  # may continue in the previous chunk
                for line in reversed(lines[1:]):
                    if line.strip():
                        yield line
            if rest.strip():
                yield rest
