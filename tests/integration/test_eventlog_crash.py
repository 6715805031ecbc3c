"""kill -9 the embedded event log while 64 tasks append: no acknowledged write is lost.

This covers a crashed process (the OS still holds the page cache). Power loss is
covered by ``synchronous=FULL`` (fsync per commit), which a test cannot pull the
plug on; see docs/event-log.md.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from learnloop.eventlog import SqliteEventLog

WRITER = Path(__file__).with_name("eventlog_writer.py")
ACKS_BEFORE_KILL = 2000
STARTUP_DEADLINE_SECONDS = 20.0


def read_acks_until(proc: subprocess.Popen[bytes], wanted: int) -> bytes:
    """Collect the writer's stdout until it acknowledged ``wanted`` appends."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    buffer = b""
    deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
    while buffer.count(b"A t") < wanted:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            acked = buffer.count(b"A t")
            pytest.fail(f"writer acknowledged only {acked} appends in time")
        if not selector.select(timeout=remaining):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            stderr = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"writer exited early with {proc.wait()}:\n{stderr}")
        buffer += chunk
    selector.close()
    return buffer


@pytest.mark.integration
async def test_sigkill_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(data_dir), "64"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        output = read_acks_until(proc, ACKS_BEFORE_KILL)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout is not None
    output += proc.stdout.read()  # acks written before the kill landed

    # Only complete lines count: a line cut by the kill was not an acknowledgement.
    lines = output.decode().split("\n")[:-1]
    appended = [line[2:] for line in lines if line.startswith("A ")]
    commits = [int(line[2:]) for line in lines if line.startswith("C ")]
    assert len(appended) >= ACKS_BEFORE_KILL and commits

    log = SqliteEventLog(data_dir)
    try:
        missing = [key for key in appended if await log.find("decisions", key) is None]
        assert missing == [], f"{len(missing)} acknowledged appends lost, e.g. {missing[:5]}"
        for key in appended[:50]:
            record = await log.find("decisions", key)
            assert record is not None and record.value == key.encode()

        # The commit's record and state landed together, and at least as far as acked.
        state = await log.load_state("commits")
        assert state is not None and int(state) >= max(commits)
        assert await log.find("joined", f"j{int(state)}") is not None
        assert await log.find("joined", f"j{int(state) + 1}") is None

        # The recovered log keeps working: offsets continue after the crash.
        end = await log.end_offset()
        assert end >= len(appended) + len(commits)
        records = await log.read(["decisions"], after=-1, limit=1_000_000)
        assert len({r.offset for r in records}) == len(records) >= len(appended)
    finally:
        await log.close()
