"""Benchmark the offline learner, in one run.

a. estimator throughput: every array estimator, and the streaming accumulator the
   replay uses, on 1 M logged examples (synthetic arrays);
b. replay evaluation throughput against raw VW learn on the same examples: raw VW is
   the fastest plain use of VW from Python on prebuilt labelled lines (pylibvw's parse +
   ``learn_multi``; reading and featurizing excluded), pyvw's ``Workspace.learn(lines)``
   shown for reference; the replay is ``offline_learner.replay.evaluate`` end to end
   (Parquet read, decode, featurize, the candidate's progressive learn, the estimates),
   timed in wall time, in the main process's CPU time and in both processes' CPU time
   (the replay reads and featurizes in a child process on large datasets);
c. peak memory of that replay on datasets of growing size, each in a fresh process
   (``ru_maxrss``): it must stay flat, not grow with the dataset;
d. the estimates against the truth: on the shop logged by uniform random, the true
   value of every fixed policy is known exactly (``devtools.simulator.logged``).

The datasets are the synthetic shop's traffic logged by uniform random, written once
as learnloop Parquet datasets under ``--cache`` and reused. Prints a markdown table
(copied into docs/benchmarks.md). CPU-bound rows use process time, best of
``--repeats``: other load on the machine inflates wall time, not the work done.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from devtools.simulator.logged import logged_examples, true_value
from devtools.simulator.shop import ACTIONS
from offline_learner.dataset import Dataset
from offline_learner.estimators import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    Estimate,
    OffPolicyData,
    SwitchDR,
)
from offline_learner.estimators.streaming import StreamingEstimates
from schemas.config import DEFAULT_VW_ARGS

CHUNK = 4096


def dataset(rows: int, cache: Path, seed: int = 1) -> Path:
    """The shop logged by uniform random, ``rows`` examples, as a Parquet dataset."""
    path = cache / f"shop-uniform-{seed}-{rows}"
    if not (path / "_complete").exists():
        if path.exists():
            import shutil

            shutil.rmtree(path)
        started = time.perf_counter()
        Dataset.from_examples(lambda: logged_examples(rows, seed=seed)).write_parquet(path)
        (path / "_complete").write_text("")
        print(f"  wrote {rows:,} rows to {path} in {time.perf_counter() - started:.0f} s")
    return path


def best_of(repeats: int, run: object) -> float:
    """The smallest process time of ``repeats`` calls of ``run``."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        run()  # type: ignore[operator]
        times.append(time.process_time() - started)
    return min(times)


def estimator_rows(n: int, repeats: int) -> list[tuple[str, float]]:
    rng = np.random.default_rng(0)
    k = 4
    logged = rng.integers(0, k, n)
    mu = np.full(n, 1 / k)
    pi = rng.dirichlet(np.ones(k), n)
    target = pi[np.arange(n), logged]
    rewards = rng.choice([0.0, 1.0, 3.0], n, p=[0.6, 0.3, 0.1])
    rhat_all = rng.uniform(0, 3, (n, k))
    rhat = rhat_all[np.arange(n), logged]
    qhat = (pi * rhat_all).sum(axis=1)
    data = OffPolicyData.of(rewards, mu, target, rhat, qhat)
    out = []
    for estimator in (IPS(), SNIPS(), DM(), DR(), SwitchDR(), SNDR()):
        seconds = best_of(repeats, lambda e=estimator: e.estimate_data(data))
        out.append((f"{type(estimator).__name__} (arrays)", n / seconds))
    for name, estimator in (
        ("IPS Cressie-Read", IPS(interval="cressie-read", reward_range=(0.0, 3.0))),
        ("SNIPS Cressie-Read", SNIPS(interval="cressie-read", reward_range=(0.0, 3.0))),
    ):
        seconds = best_of(repeats, lambda e=estimator: e.estimate_data(data))
        out.append((f"{name} (arrays)", n / seconds))

    def streamed() -> None:
        acc = StreamingEstimates([IPS(), SNIPS(), DM(), DR(), SwitchDR(), SNDR()])
        for i in range(0, n, CHUNK):
            s = slice(i, i + CHUNK)
            acc.update(rewards[s], mu[s], target[s], rhat[s], qhat[s])
        for name in ("ips", "snips", "dr", "sndr"):
            acc.estimate(name)

    out.append(("all six, streaming in 4,096-row chunks", n / best_of(repeats, streamed)))
    return out


def raw_vw_rates(path: Path, rows: int, repeats: int) -> dict[str, float]:
    """Raw VW learn on prebuilt labelled lines (featurizing and reading excluded):
    examples per process-second for the fastest plain use of VW from Python (pylibvw's
    parse + ``learn_multi`` + finish, what ``VWPolicy.learn_lines`` does, without even
    the policy object) and, for reference, pyvw's documented ``Workspace.learn(lines)``."""
    import pylibvw
    import vowpalwabbit

    from learnloop.featurizer import CachedFeaturizer, labelled

    cached = CachedFeaturizer()
    texts, lines = [], []
    for example in Dataset.from_parquet(path).take(rows):
        d = example.decision
        labelled_lines = labelled(
            cached.example(d.context, d.persona, d.actions),
            d.chosen_index,
            example.reward,
            d.chosen_probability,
        )
        lines.append(labelled_lines)
        texts.append("\n".join(labelled_lines))

    def direct() -> None:
        ws = vowpalwabbit.Workspace(f"{DEFAULT_VW_ARGS} --quiet")
        learn, finish, parse = (
            pylibvw.vw.learn_multi,
            pylibvw.vw._finish_example_multi_ex,
            ws._parse,
        )
        for text in texts:
            examples = parse(text)
            learn(ws, examples)
            finish(ws, examples)
        ws.finish()

    def documented() -> None:
        ws = vowpalwabbit.Workspace(f"{DEFAULT_VW_ARGS} --quiet")
        for labelled_lines in lines:
            ws.learn(labelled_lines)
        ws.finish()

    return {
        "direct": len(lines) / best_of(repeats, direct),
        "documented": len(lines) / best_of(repeats, documented),
    }


READER_CHILD = """
import itertools, json, pickle, sys, time
from offline_learner.dataset import Dataset
from offline_learner.datasets.parquet_fast import source_of
from offline_learner.replay_feed import batches, fast_batches
dataset, rows = Dataset.from_parquet(sys.argv[1]), int(sys.argv[2])
def run(stream):
    started, read = time.process_time(), 0
    for batch in stream:
        pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)  # as for the pipe
        read += batch.read
        if read >= rows:
            break
    return read / (time.process_time() - started)
fast = run(fast_batches(source_of(dataset)))
validated = run(batches(itertools.islice(iter(dataset), rows)))
print(json.dumps({"fast": fast, "validated": validated}))
"""


def reader_rates(path: Path, rows: int) -> dict[str, float]:
    """Rows per process-second of the replay's reader work alone (read, decode,
    featurize, pickle each batch as for the pipe), in a fresh process (so the peak
    memory rows below stay the replays' own): the trusted fast path for learnloop
    Parquet, and the validated path (pydantic models) it replaced."""
    done = subprocess.run(
        [sys.executable, "-c", READER_CHILD, str(path), str(rows)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


REPLAY_CHILD = """
import json, resource, sys, time
from offline_learner.dataset import Dataset
from offline_learner.candidates import VWCandidate
from offline_learner.replay import evaluate
path, estimators = sys.argv[1], sys.argv[2].split(",")
wall, cpu = time.perf_counter(), time.process_time()
pipeline = {"auto": None, "off": False}[sys.argv[4]]
result = evaluate(Dataset.from_parquet(path), [VWCandidate("default", sys.argv[3])],
                  estimators=estimators, pipeline=pipeline)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
children = resource.getrusage(resource.RUSAGE_CHILDREN)
kids, kids_cpu = children.ru_maxrss, children.ru_utime + children.ru_stime
print(json.dumps({"n": result.n, "cpu": cpu, "wall": wall, "rss_kib": ours,
                  "child_cpu": kids_cpu,
                  "child_rss_kib": kids,
                  "value": result.candidate("default").estimates[estimators[0]].value}))
"""


def replay(path: Path, estimators: str, pipeline: str = "auto") -> dict[str, float]:
    """One replay in a fresh process: its counts, times and peak memory; ``pipeline``
    ``off`` keeps the reading and featurizing in the replay's process."""
    done = subprocess.run(
        [sys.executable, "-c", REPLAY_CHILD, str(path), estimators, DEFAULT_VW_ARGS, pipeline],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _fixed(share: dict[str, float], _visit: object) -> dict[str, float]:
    return share


def truth_rows(path: Path, rows: int) -> list[tuple[str, float, list[Estimate]]]:
    """IPS / SNIPS / DR of fixed policies on the logged shop against their exact value."""
    from offline_learner.candidates import Constant, Uniform
    from offline_learner.replay import evaluate

    candidates: list[Constant | Uniform] = [Constant(a) for a in ACTIONS] + [Uniform()]
    result = evaluate(
        Dataset.from_parquet(path).take(rows),
        candidates,
        estimators=("IPS", "SNIPS", "DR"),
        reference=None,
    )
    out = []
    for candidate in candidates:
        name = candidate.name
        share = (
            dict.fromkeys(ACTIONS, 1 / len(ACTIONS))
            if isinstance(candidate, Uniform)
            else {candidate.action_id: 1.0}
        )
        truth = true_value(partial(_fixed, share), rows, seed=1)
        estimates = result.candidate(name).estimates
        chosen = [estimates[e] for e in ("IPS", "SNIPS", "DR")]
        out.append((name, truth, [e for e in chosen if e is not None]))
    return out


def main(args: argparse.Namespace) -> None:
    args.cache.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}\n")  # fmt: skip

    print("| estimator | examples/s (1 M examples) |")
    print("| --- | ---: |")
    for name, rate in estimator_rows(args.estimator_rows, args.repeats):
        print(f"| {name} | {rate:,.0f} |")

    sizes = sorted({*args.memory_rows, args.rows})
    paths = {n: dataset(n, args.cache) for n in sizes}
    # First, while this process is small: a child starts with its parent's peak RSS
    # (Linux keeps the high-water mark over fork and exec).
    print("\npeak memory of one replay (IPS, SNIPS, DM, DR, SNDR; one VW candidate + logged)\n")
    print("| dataset rows | peak RSS, replay process | peak RSS, reader process |")
    print("| ---: | ---: | ---: |")
    for n in sorted(args.memory_rows):
        run = replay(paths[n], "SNIPS,IPS,DM,DR,SNDR")
        ours, child = run["rss_kib"] / 1024, run["child_rss_kib"] / 1024
        print(f"| {n:,} | {ours:,.0f} MiB | {child:,.0f} MiB |")

    print(f"\nreplay vs raw VW learn ({args.rows:,} examples, `{DEFAULT_VW_ARGS}`)\n")
    rates = raw_vw_rates(paths[args.rows], args.rows, args.repeats)
    raw = max(rates.values())  # the target compares against the fastest plain use of VW
    print("| measurement | examples/s | vs raw VW |")
    print("| --- | ---: | ---: |")
    print(
        f"| raw VW learn (pylibvw parse + learn_multi, prebuilt lines) | {rates['direct']:,.0f} "
        f"| {rates['direct'] / raw:.2f}x |"
    )
    print(
        f"| pyvw `Workspace.learn(lines)`, prebuilt lines (reference) "
        f"| {rates['documented']:,.0f} | {rates['documented'] / raw:.2f}x |"
    )
    readers = reader_rates(paths[args.rows], args.rows)
    for name, label in (("fast", "trusted Parquet fast path"), ("validated", "validated path")):
        rate = readers[name]
        print(
            f"| replay's reader alone, {label} ({1e6 / rate:.1f} µs a row) "
            f"| {rate:,.0f} | {rate / raw:.2f}x |"
        )
    for label, estimators, pipeline in (
        ("replay in one process, IPS + SNIPS", "SNIPS,IPS", "off"),
        ("replay, IPS + SNIPS (no reward model)", "SNIPS,IPS", "auto"),
        (
            "replay, IPS + SNIPS + DM + DR + SNDR (with the reward model)",
            "SNIPS,IPS,DM,DR,SNDR",
            "auto",
        ),
    ):
        run = replay(paths[args.rows], estimators, pipeline)
        rate_cpu, rate_wall = run["n"] / run["cpu"], run["n"] / run["wall"]
        rate_all = run["n"] / (run["cpu"] + run["child_cpu"])
        print(f"| {label}: process time, main process | {rate_cpu:,.0f} | {rate_cpu / raw:.2f}x |")
        print(f"| {label}: wall time | {rate_wall:,.0f} | {rate_wall / raw:.2f}x |")
        print(f"| {label}: CPU time of both processes | {rate_all:,.0f} | {rate_all / raw:.2f}x |")

    print(f"\nestimates against the truth ({args.truth_rows:,} rows logged by uniform random)\n")
    print("| policy | true value | IPS [95 %] | SNIPS [95 %] | DR [95 %] |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, truth, estimates in truth_rows(paths[min(sizes)], args.truth_rows):
        cells = [
            f"{e.value:.3f} [{e.lower:.3f}, {e.upper:.3f}]" + ("" if e.contains(truth) else " miss")
            for e in estimates
        ]
        print(f"| {name} | {truth:.3f} | " + " | ".join(cells) + " |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(this benchmark process peaked at {peak:,.0f} MiB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="replay throughput rows")
    parser.add_argument("--memory-rows", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--estimator-rows", type=int, default=1_000_000)
    parser.add_argument("--truth-rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/learnloop-bench"))
    main(parser.parse_args())
