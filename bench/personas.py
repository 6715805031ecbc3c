"""The persona pipeline on the simulated shop, per seed: how well it names people it never
saw, and how much it helps the bandit.

Per seed, as ``tests/integration/test_personas_data_scientist.py`` does once:

1. the shop's books (a seeded 90-day history of every known shopper) are imported into
   a fresh data directory (``learnloop personas import-profiles``);
2. ``learnloop personas segment`` clusters them; the segments are named after the true
   persona most of their members have (:func:`name_by_majority`, what a data scientist
   does reading the report); ``learnloop personas train`` fits and publishes CatBoost;
3. **held-out users**: the published model names every shopper of *another* shop seed
   (people it never saw, from their own books): macro-F1 against their true persona;
4. **learning**: the same seeded traffic, with a front end that sends only what a page
   knows (``context="minimal"``), on a service with the personas and on a fresh one
   without: the share of the random-to-oracle gap closed over the last quarter. The
   anchor in the same run: raw VW in process on the same traffic with the true persona
   and with none (``run_in_process``).

    nice -n 10 .venv/bin/python bench/personas.py            # 3 seeds, ~4 min
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from sklearn.metrics import f1_score

from devtools.simulator import run_in_process, run_simulation
from devtools.simulator.history import export_history, read_truth
from devtools.simulator.in_process import true_persona
from learnloop.persona_features import profile_features
from learnloop.persona_models import load_current_model, open_persona_model_store
from learnloop.settings import Settings
from offline_learner.personas.profiles_source import read_profile_file
from offline_learner.personas.segments_file import name_by_majority
from runtime.processes import ServiceProcess
from runtime.processes import run_learnloop as learnloop
from schemas.config import DEFAULT_VW_ARGS


async def held_out_macro_f1(data: Path, seed: int, folder: Path) -> float:
    """The published model on another shop's shoppers, against their true persona."""
    books = folder / "held-out.csv"
    export_history(books, folder / "held-out.truth.csv", seed=seed)
    truth = read_truth(folder / "held-out.truth.csv")
    table = read_profile_file(books)
    store = open_persona_model_store(Settings(data_dir=data))
    try:
        model = await load_current_model(store)
    finally:
        await store.close()
    assert model is not None
    at = table.as_of()
    predicted = [model.predict(profile_features(p, {}, at)) for p in table.profiles]
    return float(f1_score([truth[u] for u in table.user_ids], predicted, average="macro"))


async def gap(data: Path, seed: int, decisions: int, log: Path) -> tuple[float, float | None]:
    with ServiceProcess(data, log_file=log) as service:
        report = await run_simulation(
            service.url, decisions=decisions, seed=seed, progress=False, context="minimal"
        )
    return report.gap_closed, report.persona_accuracy


async def one_seed(seed: int, decisions: int, folder: Path) -> dict[str, float | None]:
    books, truth_file = folder / "books.csv", folder / "books.truth.csv"
    export_history(books, truth_file, seed=seed)
    truth = read_truth(truth_file)
    data = folder / "with"
    learnloop("personas", "import-profiles", books, "--data-dir", data)
    segments = folder / "segments.toml"
    learnloop("personas", "segment", "--data-dir", data, "--k-range", "3-7", "--seed", "1",
              "--segments-out", segments)  # fmt: skip
    table = read_profile_file(books)
    name_by_majority(segments, table.features(), [truth[u] for u in table.user_ids])
    trained = json.loads(
        learnloop("personas", "train", "--segments", segments, "--data-dir", data, "--json")
    )
    with_personas, accuracy = await gap(data, seed, decisions, folder / "with.log")
    without, _ = await gap(folder / "without", seed, decisions, folder / "without.log")
    anchor_true = run_in_process(
        DEFAULT_VW_ARGS, decisions, seed, release_every=1, context="minimal", persona=true_persona
    ).gap_closed
    anchor_none = run_in_process(
        DEFAULT_VW_ARGS, decisions, seed, release_every=1, context="minimal"
    ).gap_closed
    return {
        "train_f1": trained["macro_f1"],
        "held_out_f1": await held_out_macro_f1(data, seed + 1000, folder),
        "accuracy": accuracy,
        "with": with_personas,
        "without": without,
        "anchor_true": anchor_true,
        "anchor_none": anchor_none,
    }


async def main(args: argparse.Namespace) -> None:
    rows = {}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="learnloop-personas-") as tmp:
            rows[seed] = await one_seed(seed, args.decisions, Path(tmp))
        print(f"seed {seed} done", flush=True)
    print(f"\n{datetime.now(UTC):%Y-%m-%d}, {args.decisions:,} decisions per run, minimal "
          f"front end, `{DEFAULT_VW_ARGS}`\n")  # fmt: skip
    print("| seed | macro-F1, held-out split (vs segments) | macro-F1, unseen shop's users "
          "(vs truth) | in-run accuracy | gap closed with personas | without | anchor: "
          "raw VW, true persona | anchor: raw VW, none |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for seed, r in rows.items():
        accuracy = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        print(f"| {seed} | {r['train_f1']:.3f} | {r['held_out_f1']:.3f} | {accuracy} | "
              f"{r['with']:.3f} | {r['without']:.3f} | {r['anchor_true']:.3f} | "
              f"{r['anchor_none']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 23])
    parser.add_argument("--decisions", type=int, default=4000)
    asyncio.run(main(parser.parse_args()))
