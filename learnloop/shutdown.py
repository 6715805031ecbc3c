"""Stopping services cleanly: SIGTERM/SIGINT handling and cancellations that libraries lose.

Every ``learnloop`` service stops on SIGTERM or SIGINT by setting its own stop flag
(:func:`on_stop_signal`), so that its ``finally`` blocks run: the event log closes,
the join checkpoints, the learner publishes and commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from typing import Final

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def on_stop_signal(callback: Callable[[], object]) -> Iterator[None]:
    """Call ``callback`` on SIGTERM or SIGINT while the block runs (on the running loop)."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, callback)
    try:
        yield
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


log = logging.getLogger(__name__)


def cancel_requested() -> bool:
    """Whether the current task was cancelled, even if a library swallowed the
    ``CancelledError`` (redis-py 8.1 on Python 3.11 does, for about one cancel in
    three): loops that await such a library check it so shutdown never waits forever."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def stop_task(task: asyncio.Task[None], attempts: int = 10) -> None:
    """Cancel ``task`` and wait for it, cancelling again while a cancellation is lost
    (see :func:`cancel_requested`); give up after ``attempts`` tries of 0.1 s, so a stuck
    task can never hold a shutdown forever."""
    for _ in range(attempts):
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=0.1)
        if done:
            return
    log.warning("task %s did not stop; leaving it to the loop's close", task.get_name())
