"""Evaluation and feature-importance jobs of the Personalizer-compatible API, out of process.

An offline evaluation replays days of logged decisions through several VW learners: far
too long for a request, and the decision service may not import the offline learner. So
the API stores a job document and calls a :class:`~app.personalizer.jobs.JobLauncher`;
here :class:`SubprocessJobLauncher` starts ``python -m runtime.personalizer_jobs <kind>
<loop> <job_id>`` with the same settings. The child opens the same
:class:`~learnloop.personalizer_store.PersonalizerStore`
(:func:`runtime.job_stores.open_personalizer_store`: the SQLite file under the data
directory, or Redis), runs :func:`run_job` and writes the
status and result into the document, where the API's routes read it. The child records
its pid, host and a heartbeat, so the routes can tell a job whose process died
(:func:`app.personalizer.evaluation_views.effective_status`).

The job outlives the request and the API worker that started it (a restarted worker
does not kill it); :meth:`SubprocessJobLauncher.aclose` stops the ones still running
(they record ``canceled``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import cast

from app.personalizer.jobs import JobKind
from learnloop.personalizer_store import PersonalizerStore
from learnloop.settings import Settings
from runtime.job_stores import open_personalizer_store
from runtime.personalizer_job_run import KINDS, mark_failed, run_job
from runtime.processes import settings_env

log = logging.getLogger("learnloop.personalizer.jobs")

JOB_NICENESS = 10
"""A job replays for minutes on the API's machine: it yields the CPU to serving."""

__all__ = ["SubprocessJobLauncher", "main", "run_job"]


def child_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The job process's environment: the worker's own, plus ``LEARNLOOP_*`` for every
    setting that differs from its default, with the data directory and the config file
    made absolute (the child must find the same files whatever its working directory).

    >>> env = child_env(Settings(data_dir=Path("/srv/ll")), base={"PATH": "/bin"})
    >>> env["PATH"], env["LEARNLOOP_DATA_DIR"]
    ('/bin', '/srv/ll')
    """
    env = dict(os.environ if base is None else base)
    env.update(settings_env(settings))
    env["LEARNLOOP_DATA_DIR"] = str(Path(settings.data_dir).resolve())
    if settings.config is not None:
        env["LEARNLOOP_CONFIG"] = str(Path(settings.config).resolve())
    root = str(Path(__file__).resolve().parent.parent)  # so ``-m runtime...`` imports
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    return env


class SubprocessJobLauncher:
    """A :class:`~app.personalizer.jobs.JobLauncher` that runs each job in its own process.

    Parameters
    ----------
    settings:
        The API's settings; the child gets the same through its environment.
    store:
        The API's Personalizer store: when a child exits without having written a final
        status (killed, crashed on import), the launcher marks its job failed there.
    python:
        The interpreter (this one by default).
    """

    def __init__(
        self,
        settings: Settings,
        store: PersonalizerStore | None = None,
        *,
        python: str = sys.executable,
    ) -> None:
        self.settings = settings
        self.store = store
        self.python = python
        self._running: dict[int, asyncio.subprocess.Process] = {}
        self._reapers: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> int:
        """Children started by this launcher that have not exited yet."""
        return len(self._running)

    async def launch(self, kind: JobKind, loop: str, job_id: str) -> None:
        """Start the job and return at once; a reaper task waits for the child."""
        process = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "runtime.personalizer_jobs",
            kind,
            loop,
            job_id,
            env=child_env(self.settings),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            # stderr is inherited: the job's log lines join the service's, with its pid.
            start_new_session=True,  # a Ctrl-C in the terminal stops the service, not jobs
        )
        log.info("Personalizer %s job %s of loop %s: pid %d", kind, job_id, loop, process.pid)
        self._running[process.pid] = process
        reaper = asyncio.create_task(self._reap(process, kind, loop, job_id))
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)

    async def _reap(
        self, process: asyncio.subprocess.Process, kind: JobKind, loop: str, job_id: str
    ) -> None:
        try:
            code = await process.wait()
        finally:
            self._running.pop(process.pid, None)
        if code != 0:
            log.warning("Personalizer %s job %s exited with %s", kind, job_id, code)
        if self.store is not None:
            try:
                await mark_failed(
                    self.store, kind, loop, job_id, f"the job process exited with code {code}"
                )
            except Exception:  # the store is down: the routes' heartbeat rule still applies
                log.exception("could not record the end of job %s", job_id)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Stop the children still running (SIGTERM: they record ``canceled``) and wait
        for them, killing any that outlast ``timeout``."""
        for process in list(self._running.values()):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        if self._reapers:
            _, pending = await asyncio.wait(set(self._reapers), timeout=timeout)
            for process in list(self._running.values()):
                if process.returncode is None:
                    process.kill()
            if pending:
                await asyncio.wait(pending, timeout=timeout)


# -- the job process -----------------------------------------------------------------------


async def _main(kind: JobKind, loop: str, job_id: str) -> int:
    settings = Settings()
    async with open_personalizer_store(settings) as store:
        task = asyncio.ensure_future(run_job(kind, loop, job_id, settings, store))
        events = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            events.add_signal_handler(sig, task.cancel)
        try:
            job = await task
        except asyncio.CancelledError:
            job = None
            stopped = True
        else:
            stopped = job is not None and job.status == "timeout"
    if stopped:  # the computing thread cannot be stopped: leave without waiting for it
        logging.shutdown()
        os._exit(143)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m runtime.personalizer_jobs evaluation|feature_importance LOOP JOB_ID``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in KINDS:
        print(
            "usage: python -m runtime.personalizer_jobs evaluation|feature_importance LOOP JOB_ID",
            file=sys.stderr,
        )
        return 2
    from runtime.cli_common import setup_logging

    setup_logging(os.environ.get("LEARNLOOP_LOG_LEVEL", "INFO"))
    with contextlib.suppress(OSError):
        os.nice(JOB_NICENESS)  # the API workers' requests come first
    return asyncio.run(_main(cast(JobKind, args[0]), args[1], args[2]))


if __name__ == "__main__":
    sys.exit(main())
