"""Crash-test workload: append forever from many asyncio tasks, acknowledging on stdout.

Run as ``python eventlog_writer.py DATA_DIR [TASKS]``. A line ``A <unique_key>`` is
printed (and flushed) only after ``append`` returned, and ``C <n>`` only after the
``commit`` that set state ``commits`` to ``n`` returned, so the parent test may
SIGKILL this process at any moment and then check that every acknowledged write
survived. Importing this module does nothing (pytest collects it for doctests).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from learnloop.eventlog import Append, SqliteEventLog


def acknowledge(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def appender(log: SqliteEventLog, task: int) -> None:
    """Append one decision at a time, forever."""
    sequence = 0
    while True:
        key = f"t{task}-{sequence}"
        await log.append([Append(stream="decisions", value=key.encode(), unique_key=key)])
        acknowledge(f"A {key}")
        sequence += 1


async def committer(log: SqliteEventLog) -> None:
    """Like the join runner: output record and consumer state in one commit, forever."""
    count = 0
    while True:
        count += 1
        record = Append(stream="joined", value=str(count).encode(), unique_key=f"j{count}")
        await log.commit([record], {"commits": str(count).encode()})
        acknowledge(f"C {count}")


async def main(data_dir: Path, tasks: int) -> None:
    log = SqliteEventLog(data_dir)
    await asyncio.gather(committer(log), *(appender(log, task) for task in range(tasks)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 64))
