"""A personalized flag on the simulated shop, per seed: does it learn each persona's best
variant, and by how much does that beat the fixed default?

Per flag and seed, as ``tests/integration/test_flag_learns.py`` does once: a fresh
``learnloop serve``; the flag created personalized for everyone over all its variants
with a 10 % holdout on the default (``run_flag_simulation(create=True)``); the shop's
visits evaluate it from a minimal front end that names each shopper's persona (the
truth for logged-in shoppers, ``visitor`` for anonymous ones). Over the last quarter,
per true persona, the exact expected reward per exposure of what the learned arm served,
of the default variant and of the persona's best variant on the same visits; the
anchor is raw VW in process on the same visits (``run_flag_anchor``, the decision
point's default arguments, the same holdout).

    nice -n 10 .venv/bin/python bench/flags_learning.py      # 2 flags x 3 seeds, ~3 min
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from devtools.simulator import run_flag_anchor, run_flag_simulation
from devtools.simulator.flag_ledger import FlagSimulationReport
from runtime.processes import ServiceProcess
from schemas.config import DEFAULT_VW_ARGS

HOLDOUT = 0.1


async def one_run(
    flag: str, seed: int, decisions: int, folder: Path
) -> tuple[FlagSimulationReport, FlagSimulationReport]:
    """The service's report and the anchor's, on the same seeded visits."""
    with ServiceProcess(folder / "data", log_file=folder / "serve.log") as service:
        report = await run_flag_simulation(
            service.url,
            flag,
            decisions=decisions,
            seed=seed,
            context="minimal",
            persona="explicit",
            create=True,
            holdout_share=HOLDOUT,
            progress=False,
        )
    anchor = run_flag_anchor(flag, decisions, seed, holdout_share=HOLDOUT, context="minimal")
    return report, anchor


async def main(args: argparse.Namespace) -> None:
    runs: dict[tuple[str, int], tuple[FlagSimulationReport, FlagSimulationReport]] = {}
    for flag in args.flags:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory(prefix="learnloop-flags-") as tmp:
                runs[flag, seed] = await one_run(flag, seed, args.decisions, Path(tmp))
            report = runs[flag, seed][0]
            print(f"{flag} seed {seed}: {report.http_errors} HTTP errors, "
                  f"{report.wall_seconds:.1f} s", flush=True)  # fmt: skip
    print(f"\n{datetime.now(UTC):%Y-%m-%d}, {args.decisions:,} evaluations per run, minimal "
          f"front end with the persona named, holdout {HOLDOUT:g}, `{DEFAULT_VW_ARGS}`; "
          "expected reward per exposure of the learned arm over the last quarter\n")  # fmt: skip
    print("| flag | seed | persona | learned | default | oracle | learned - default | "
          "best variant served | anchor: raw VW | anchor - default |")  # fmt: skip
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (flag, seed), (report, anchor) in runs.items():
        for persona, s in report.personas.items():
            a = anchor.personas[persona]
            print(f"| {flag} | {seed} | {persona} | {s.learned:.3f} | {s.default:.3f} | "
                  f"{s.oracle:.3f} | {s.margin:+.3f} | {100 * s.best_share:.0f} % | "
                  f"{a.learned:.3f} | {a.margin:+.3f} |")  # fmt: skip
        print(f"| {flag} | {seed} | **all** | {report.learned:.3f} | {report.default:.3f} | "
              f"{report.oracle:.3f} | {report.learned - report.default:+.3f} | | "
              f"{anchor.learned:.3f} | {anchor.learned - anchor.default:+.3f} |")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flags", nargs="+", default=["checkout_layout", "bulk_order_form"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 23])
    parser.add_argument("--decisions", type=int, default=4000)
    asyncio.run(main(parser.parse_args()))
