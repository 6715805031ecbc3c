"""The replay's input: joined examples read, decoded and featurized into compact batches,
in a reader process on the second core when the dataset is large enough to pay for it.

The replay's own loop then runs only the VW candidates, the reward model and the
estimator updates. A batch carries what that loop needs of each activated example
(labelled and unlabelled ADF lines, reward, logged propensity, chosen index, logged
probabilities, action ids, decision time), never the pydantic models: pickling those
would cost more than building them. The same :func:`batches` builds them in-process
and in the reader, so both paths give identical results.

The reader (a fresh interpreter) gets the :class:`~offline_learner.dataset.Dataset` itself (it
pickles: it holds a recipe, not rows) and opens it again; a plain list or iterator of
examples, or a dataset that does not pickle, is read in-process. Batches go through a
pipe, which blocks the reader when the replay falls behind, so memory stays bounded
(about two batches in flight). The dataset's summary is folded in on the way (the
reader's when it read). A bad row raises in the reader and is raised again in
the replay with the same type and message. The reader dies with the replay: it is
stopped on every exit path, and on Linux asks the kernel for SIGTERM if the replay dies.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from learnloop.errors import InvalidInput
from learnloop.featurizer import CachedFeaturizer, labelled
from offline_learner.datasets.parquet_fast import ParquetSource, SummaryFold, read_rows, source_of
from offline_learner.datasets.summary import SummaryAccumulator
from schemas.events import DecisionEvent, JoinedExample

BATCH = 512
"""Examples per batch: big enough that a pipe round trip is cheap, small in memory."""
SPAWN_AT = 1024
"""Rows read in-process before the reader is started (smaller inputs never start one)."""
HANDOVER = 4096
"""Rows read in-process; the reader skips them and the replay takes its batches after."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class OfferedAction:
    """An offered action as the built-in fixed candidates read it: its id."""

    id: str


class Logged(NamedTuple):
    """A logged decision as the built-in candidates read it: the offered actions and the
    logging probabilities (see ``replay.LIGHT_CANDIDATES``); one per replayed example,
    so the cheapest record to build."""

    actions: tuple[OfferedAction, ...]
    probabilities: tuple[float, ...]


@dataclass(slots=True)
class Batch:
    """Consecutive rows of the dataset: counts, and the activated examples' columns."""

    read: int = 0
    """Rows read, activated or not."""
    inactive: int = 0
    lines: list[list[str]] = field(default_factory=list)
    labelled: list[list[str]] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    propensities: list[float] = field(default_factory=list)
    chosen: list[int] = field(default_factory=list)
    probabilities: list[tuple[float, ...]] = field(default_factory=list)
    action_ids: list[tuple[str, ...]] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    """Decision times, microseconds since the epoch (exact, cheaper to pickle)."""
    decisions: list[DecisionEvent] = field(default_factory=list)
    """The decisions themselves, only when asked for (in-process: never pickled)."""


def decision_time(micros: int) -> datetime:
    """A batch's decision time back as an aware datetime."""
    return _EPOCH + micros * _MICROSECOND


def batches(
    rows: Iterable[JoinedExample],
    size: int = BATCH,
    *,
    decisions: bool = False,
    summary: SummaryAccumulator | None = None,
) -> Generator[Batch, None, None]:
    """``rows`` in batches of ``size`` rows read (the last may be shorter); with the
    decisions themselves when ``decisions``; every row folded into ``summary``."""
    cached = CachedFeaturizer()
    # One tuple per distinct actions list and logging pmf in a batch: pickled once.
    ids: dict[tuple[str, ...], tuple[str, ...]] = {}
    pmfs: dict[tuple[float, ...], tuple[float, ...]] = {}
    batch = Batch()
    for example in rows:
        batch.read += 1
        if summary is not None:
            summary.add(example)
        decision = example.decision
        if not decision.activated:
            batch.inactive += 1
        else:
            chosen = decision.chosen_index
            mu = decision.probabilities[chosen]
            if not 0.0 < mu <= 1.0:
                raise InvalidInput(_bad_propensity(example.event_id, mu))
            lines = cached.example(decision.context, decision.persona, decision.actions)
            batch.lines.append(lines)
            batch.labelled.append(labelled(lines, chosen, example.reward, mu))
            batch.rewards.append(example.reward)
            batch.propensities.append(mu)
            batch.chosen.append(chosen)
            pmf = tuple(decision.probabilities)
            batch.probabilities.append(pmfs.setdefault(pmf, pmf))
            key = tuple(a.id for a in decision.actions)
            batch.action_ids.append(ids.setdefault(key, key))
            batch.times.append((decision.timestamp - _EPOCH) // _MICROSECOND)
            if decisions:
                batch.decisions.append(decision)
        if batch.read == size:
            yield batch
            batch = Batch()
            ids.clear()  # memory stays bounded whatever the variety of pmfs
            pmfs.clear()
    if batch.read:
        yield batch


def fast_batches(
    source: ParquetSource,
    size: int = BATCH,
    *,
    skip: int = 0,
    summary: SummaryAccumulator | None = None,
) -> Generator[Batch, None, None]:
    """What :func:`batches` gives for the rows of a learnloop Parquet dataset, built
    straight from its columns (:mod:`offline_learner.datasets.parquet_fast`); the first
    ``skip`` rows are only folded into ``summary``."""
    fold = None if summary is None else SummaryFold(summary)
    batch = Batch()
    for rows in read_rows(source):
        lines_of, chosen_of, rewards, pmfs = (
            rows.lines,
            rows.chosen,
            rows.rewards,
            rows.probabilities,
        )
        ids_of, micros = rows.action_ids, rows.micros
        if fold is not None:
            fold.add(rows)
        start = min(skip, len(micros))
        skip -= start
        for i in range(start, len(micros)):
            batch.read += 1
            lines = lines_of[i]
            if lines is None:
                batch.inactive += 1
            else:
                chosen, pmf, reward = chosen_of[i], pmfs[i], rewards[i]
                mu = pmf[chosen]
                if not 0.0 < mu <= 1.0:
                    raise InvalidInput(_bad_propensity(rows.event_id(i), mu))
                batch.lines.append(lines)
                batch.labelled.append(labelled(lines, chosen, reward, mu))
                batch.rewards.append(reward)
                batch.propensities.append(mu)
                batch.chosen.append(chosen)
                batch.probabilities.append(pmf)
                batch.action_ids.append(ids_of[i])
                batch.times.append(micros[i])
            if batch.read == size:
                yield batch
                batch = Batch()
    if batch.read:
        yield batch


def _bad_propensity(event_id: str, mu: float) -> str:
    return (
        f"example {event_id}: the logged probability of the chosen action is {mu}; "
        "off-policy estimates need the logging policy's probability in (0, 1]"
    )


def feed(
    examples: Iterable[JoinedExample],
    pipeline: bool | None = None,
    *,
    decisions: bool = False,
    summary: SummaryAccumulator | None = None,
) -> Generator[Batch, None, None]:
    """The batches of ``examples``, read in a reader process where that pays.

    ``pipeline``: ``None`` decides (a dataset that pickles and has more than
    :data:`HANDOVER` rows), ``True`` forces the reader for a dataset that pickles,
    ``False`` reads in-process. ``decisions`` keeps the decisions in the batches (for
    candidates that read more of them than actions and probabilities), which reads
    in-process. Every row is folded into ``summary`` (the dataset's description, in
    the same pass). Closing the iterator stops the reader.
    """
    source = None if decisions else source_of(examples)
    recipe = _recipe(examples) if pipeline is not False and not decisions else None
    if recipe is None:
        if source is not None:
            yield from fast_batches(source, summary=summary)
        else:
            yield from batches(examples, decisions=decisions, summary=summary)
        return
    if pipeline:
        with _Reader(recipe, 0, summary) as forced:
            yield from forced
        return
    reader: _Reader | None = None
    handover = -(-HANDOVER // BATCH) * BATCH  # whole batches
    rows = iter(examples) if source is None else None
    first = (
        fast_batches(source, summary=summary)
        if source is not None
        else batches(itertools.islice(rows or (), handover), summary=summary)
    )
    done = 0
    try:
        # The reader starts while the first rows are replayed here, so its start-up and
        # its skipping of those rows overlap with work, not wait.
        with contextlib.closing(first):
            for batch in first:
                done += batch.read
                yield batch
                if reader is None and done >= SPAWN_AT:
                    # The reader summarises every row, the skipped ones too.
                    reader = _Reader(recipe, handover, summary).start()
                if done >= handover:
                    break
        if reader is None or done < handover:
            return  # the input ended before the reader was needed
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # the reader reads the rest; let the source go (files, connections)
        with reader:
            yield from reader
    finally:
        if reader is not None:
            reader.stop()


def _recipe(examples: Iterable[JoinedExample]) -> bytes | None:
    """The pickled dataset when ``examples`` is a Dataset that pickles, else ``None``."""
    from offline_learner.dataset import Dataset

    if not isinstance(examples, Dataset):
        return None
    try:
        return pickle.dumps(examples, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        return None  # a closure somewhere (e.g. examples from a generator function)


_BOOT = (
    "import pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
    "from offline_learner.replay_feed import _serve; _serve()"
)


class _Reader:
    """The reader process and the replay's end of its pipe.

    A plain ``python -c`` subprocess rather than ``multiprocessing``: spawn re-runs the
    caller's main script, which breaks scripts without an ``if __name__`` guard.
    """

    def __init__(self, recipe: bytes, skip: int, summary: SummaryAccumulator | None) -> None:
        self._recipe, self._skip, self._summary = recipe, skip, summary
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> _Reader:
        if self._process is None:
            self._process = process = subprocess.Popen(
                [sys.executable, "-c", _BOOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            assert process.stdin is not None
            pickle.dump(sys.path, process.stdin)
            source = None if self._summary is None else self._summary.source
            pickle.dump((self._recipe, self._skip, source), process.stdin)
            process.stdin.close()
        return self

    def __enter__(self) -> _Reader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[Batch]:
        process = self.start()._process
        assert process is not None and process.stdout is not None
        while True:
            try:
                message = pickle.load(process.stdout)
            except EOFError:
                code = process.wait()
                raise RuntimeError(
                    f"the replay's reader process ended without finishing (exit code {code})"
                ) from None
            if isinstance(message, Batch):
                yield message
            elif message is None:
                return
            elif isinstance(message, SummaryAccumulator):
                if self._summary is not None:
                    vars(self._summary).update(vars(message))  # it saw every row
                return
            else:
                raise message

    def stop(self) -> None:
        """Stop the reader (done or not) and wait for it."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _serve() -> None:
    """The reader process: open the dataset, write its batches, then ``None`` (or the
    error) to stdout, which is the pipe to the replay; prints go to stderr instead."""
    _die_with_parent()
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    try:
        recipe, skip, source = pickle.load(sys.stdin.buffer)
        summary = None if source is None else SummaryAccumulator(source)
        dataset = pickle.loads(recipe)
        source = source_of(dataset)
        if source is not None:
            stream = fast_batches(source, skip=skip, summary=summary)
        else:
            rows = iter(dataset)
            for example in itertools.islice(rows, skip):  # the replay did these itself
                if summary is not None:
                    summary.add(example)
            stream = batches(rows, summary=summary)
        for batch in stream:
            pickle.dump(batch, out, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump(summary, out)
        out.flush()
    except KeyboardInterrupt:
        return  # Ctrl-C reaches the whole process group; the replay reports it
    except (BrokenPipeError, ConnectionResetError):
        return  # the replay went away (it stopped early or failed)
    except BaseException as error:
        with contextlib.suppress(OSError):
            pickle.dump(_transferable(error), out)
            out.flush()
    finally:
        with contextlib.suppress(OSError):
            out.close()


def _transferable(error: BaseException) -> BaseException:
    """``error`` if it survives pickling, else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when its parent dies (no orphans, even
    when the replay is killed with SIGKILL); elsewhere the daemon flag and stop() do."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
