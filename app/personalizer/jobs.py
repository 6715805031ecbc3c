"""Evaluations and feature importances run outside the API process: the launcher protocol.

An evaluation replays a loop's logged data through the offline learner, which the
decision service may not import (services never import each other). The composition
root passes in a :class:`JobLauncher` (``runtime/personalizer_jobs.py``) that starts
the job in its own process; the job reads the job document from the
:class:`~learnloop.personalizer_store.PersonalizerStore`, runs, and writes its status
and result back there, where the routes read it.
"""

from __future__ import annotations

from typing import Literal, Protocol

JobKind = Literal["evaluation", "feature_importance"]


class JobLauncher(Protocol):
    async def launch(self, kind: JobKind, loop: str, job_id: str) -> None:
        """Start the job whose document is stored under ``(loop, kind, job_id)`` and
        return at once; the job updates its document as it runs."""
