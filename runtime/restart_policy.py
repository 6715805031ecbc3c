"""When the supervisor restarts a crashed child process, and when it gives up.

Pure: no clock, no processes. The supervisor passes the monotonic time of each
crash in and gets back how long to wait before the restart, or ``None`` when a
child crashed so often in a short time that restarting again would only hide a
broken configuration (then ``learnloop serve`` stops and says so).

>>> policy = RestartPolicy(max_crashes=3, within_seconds=10.0)
>>> [policy.on_crash("api-0", t) for t in (0.0, 1.0, 2.0)]
[0.0, 0.5, 1.0]
>>> policy.on_crash("api-0", 3.0) is None   # a 4th crash within 10 s
True
>>> policy.on_crash("loop", 3.0)           # other children keep their own count
0.0
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class RestartPolicy:
    """Restart at once after a first crash, then back off; give up after ``max_crashes``
    crashes of one child within ``within_seconds``.

    Parameters
    ----------
    max_crashes
        Crashes of one child tolerated within the window.
    within_seconds
        The sliding window the crashes are counted in.
    first_backoff_seconds, max_backoff_seconds
        Delay before the second restart in a window, doubled for each further one,
        capped at the maximum (a crash loop must not burn the CPU the others need).
    """

    max_crashes: int = 5
    within_seconds: float = 60.0
    first_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 5.0
    _crashes: dict[str, deque[float]] = field(default_factory=dict, init=False, repr=False)

    def on_crash(self, child: str, now: float) -> float | None:
        """Record a crash of ``child`` at monotonic time ``now``; the delay before its
        restart in seconds, or ``None`` to give up."""
        recent = self._crashes.setdefault(child, deque())
        recent.append(now)
        while recent and now - recent[0] > self.within_seconds:
            recent.popleft()
        if len(recent) > self.max_crashes:
            return None
        if len(recent) == 1:
            return 0.0
        backoff = self.first_backoff_seconds * 2.0 ** (len(recent) - 2)
        return min(self.max_backoff_seconds, backoff)

    def crashes(self, child: str) -> int:
        """Crashes of ``child`` inside the current window (as of its last crash)."""
        return len(self._crashes.get(child, ()))
