"""The replay's reader process: the same evaluation in-process and pipelined (handover
included), a bad row's error raised in the replay with its message, and no reader left
behind when the replay stops early or is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from learnloop.errors import InvalidInput
from offline_learner import replay_feed
from offline_learner.candidates import Baseline, Candidate, Constant, Uniform, VWCandidate
from offline_learner.dataset import Dataset
from offline_learner.replay import evaluate
from offline_learner.replay_feed import batches, feed
from schemas.events import JoinedExample
from tests.unit.synthetic_log import logged

VW = "--cb_explore_adf --epsilon 0.05 -q ca"
ROWS = 2500


def _readers() -> list[int]:
    """Pids of this process's reader children (Linux /proc)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == me and b"replay_feed" in command:
            found.append(int(entry.name))
    return found


def _gone(pid: int, within: float = 10.0) -> bool:
    """Whether process ``pid`` has exited (waits at most ``within`` seconds for it)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    rows = logged(ROWS, seed=5, epsilon=0.4, greedy="a1", inactive_every=7)
    path = tmp_path_factory.mktemp("feed") / "dataset"
    Dataset.from_examples(rows).write_parquet(path)
    return Dataset.from_parquet(path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pipelined_replay_equals_the_in_process_one(
    parquet: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small thresholds, so the automatic path starts the reader and hands over mid-run.
    monkeypatch.setattr(replay_feed, "SPAWN_AT", 512)
    monkeypatch.setattr(replay_feed, "HANDOVER", 1024)
    candidates: list[Candidate] = [VWCandidate("vw", VW), Constant("a2"), Baseline("a0"), Uniform()]
    estimators = ("IPS", "SNIPS", "DM", "DR", "SNDR")
    results = [
        evaluate(parquet, candidates, estimators=estimators, pipeline=mode, describe=True)
        for mode in (False, True, None)
    ]
    payloads = [r.to_dict() for r in results]
    assert results[0].n == ROWS - ROWS // 7 and results[0].inactive == ROWS // 7
    assert payloads[0] == payloads[1] == payloads[2]
    # The summary folded into the pass (by the reader, skipped rows included) is describe's.
    assert results[0].dataset == parquet.describe().to_dict()
    assert _readers() == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_readers_fast_path_equals_the_validated_path(
    parquet: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reader reads the Parquet columns straight (parquet_fast); a list of the same
    # examples goes through the pydantic models in-process: the same evaluation.
    monkeypatch.setattr(replay_feed, "SPAWN_AT", 512)
    monkeypatch.setattr(replay_feed, "HANDOVER", 1000)  # not whole batches: rounded up
    candidates: list[Candidate] = [VWCandidate("vw", VW), Uniform()]
    estimators = ("IPS", "SNIPS", "DM", "DR", "SNDR")
    validated = evaluate(list(parquet), candidates, estimators=estimators)
    pipelined = evaluate(parquet, candidates, estimators=estimators, pipeline=None)
    assert pipelined.to_dict() == validated.to_dict()
    assert _readers() == []


def test_batches_carry_what_the_replay_needs() -> None:
    rows = logged(10, seed=1, inactive_every=4)
    got = list(batches(rows, size=4))
    assert [b.read for b in got] == [4, 4, 2]
    assert sum(b.inactive for b in got) == 2
    first, example = got[0], rows[0]
    assert first.rewards[0] == example.reward
    assert first.propensities[0] == example.decision.chosen_probability
    assert first.action_ids[0] == tuple(a.id for a in example.decision.actions)
    assert replay_feed.decision_time(first.times[0]) == example.decision.timestamp


def _with_bad_row(rows: list[JoinedExample], index: int) -> list[JoinedExample]:
    bad = rows[index].decision.model_copy(
        update={"probabilities": [0.0] * len(rows[index].decision.actions)}
    )
    rows[index] = rows[index].model_copy(update={"decision": bad})
    return rows


@pytest.mark.parametrize("pipeline", [False, True])
def test_a_bad_row_raises_the_same_error_on_both_paths(tmp_path: Path, pipeline: bool) -> None:
    rows = _with_bad_row(logged(1500, seed=2), 1300)
    Dataset.from_examples(rows).write_parquet(tmp_path / "bad")
    dataset = Dataset.from_parquet(tmp_path / "bad")
    with pytest.raises(InvalidInput, match=r"example e1300: the logged probability .* is 0.0"):
        evaluate(dataset, [Uniform()], estimators=("IPS",), pipeline=pipeline)
    assert _readers() == []


def test_a_list_is_read_in_process() -> None:
    stream = feed(logged(600, seed=3), pipeline=True)
    assert next(stream).read == 512
    assert _readers() == []
    stream.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_stopping_early_stops_the_reader(parquet: Dataset) -> None:
    stream = feed(parquet, pipeline=True)
    assert next(stream).read == replay_feed.BATCH
    (reader,) = _readers()
    stream.close()
    assert _gone(reader)
    assert _readers() == []


KILLED_REPLAY = """
import os, signal, sys
from offline_learner.dataset import Dataset
from offline_learner.replay_feed import feed
stream = feed(Dataset.from_parquet(sys.argv[1]), pipeline=True)
next(stream)
print(" ".join(p for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())
      and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] == str(os.getpid())),
      flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")
def test_the_reader_dies_with_a_killed_replay(parquet: Dataset) -> None:
    path = parquet.source.removeprefix("parquet:")
    done = subprocess.run(
        [sys.executable, "-c", KILLED_REPLAY, path], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL
    children = [int(p) for p in done.stdout.split()]
    assert children, done.stderr
    assert all(_gone(pid) for pid in children)
