"""The data scientist's session over several seeds: does the offline estimate hold what
the promoted policy then earns online, and does the promotion pay?

Per seed, as ``tests/integration/test_offline_data_scientist.py`` does once:

1. a fresh ``learnloop serve`` with deliberately weak arguments
   (``--cb_explore_adf --epsilon 0.3``) serves the simulated shop (``--logged``
   decisions); the data directory is copied to replay the fresh traffic on later;
2. the log is exported, ``optimize`` searches ``--trials`` settings on a 70/30
   temporal split of its first three quarters and confirms the best on the last
   quarter (rows the search never saw), and the best is promoted into the running
   service;
3. fresh traffic (another seed, ``--fresh`` decisions) runs on the promoted service and
   on the copy of the weak one: the same visits, the same shopper luck;
4. the value measured online (mean reward of the fresh decisions' joined examples, as
   the service's join computed them) is compared with the confirmation estimate's
   interval, and with the estimate where the best was chosen (selection-biased).

The anchor, measured in the same run: raw VW in process (``run_in_process``) with the
promoted arguments, learning the fresh traffic from scratch: what those arguments earn
with no warm start.

    nice -n 10 .venv/bin/python bench/offline_session.py              # 3 seeds, ~5 min
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import fmean

from devtools.simulator import run_in_process, run_simulation
from learnloop.settings import Settings
from offline_learner.dataset import Dataset
from offline_learner.search import optimize
from runtime.processes import ServiceProcess
from runtime.releases import promote_dataset

WEAK = "--cb_explore_adf --epsilon 0.3"
POINT = "home_products"
ACTIONS = ("category1", "category2", "bestsellers", "trending")


def weak_config(path: Path) -> Path:
    actions = "".join(f'[[decision_points.actions]]\nid = "{a}"\n' for a in ACTIONS)
    path.write_text(
        f'[[decision_points]]\nname = "{POINT}"\nvw_args = "{WEAK}"\n'
        "[decision_points.reward_map]\nbasket_add = 3.0\ndetail_view = 1.0\n" + actions
    )
    return path


async def simulate(service: ServiceProcess, seed: int, decisions: int, start: datetime) -> float:
    report = await run_simulation(
        service.url, decisions=decisions, seed=seed, start=start, progress=False
    )
    return report.learned_expected


async def session(seed: int, args: argparse.Namespace, folder: Path) -> dict[str, object]:
    env = {"LEARNLOOP_CONFIG": str(weak_config(folder / "weak.toml"))}
    data, before = folder / "data", folder / "before"
    start = datetime.now(UTC) - timedelta(hours=3)
    with ServiceProcess(data, env=env, log_file=folder / "serve.log") as service:
        await simulate(service, seed, args.logged, start)
    shutil.copytree(data, before)
    exported = folder / "dataset"
    logged = Dataset.from_event_log(data, decision_point=POINT)
    logged.write_parquet(exported)
    summary = Dataset.from_parquet(exported).describe()
    assert summary.last is not None
    searched, confirm = Dataset.from_parquet(exported).split(0.75)
    earlier, later = searched.split(0.7)
    search = optimize(
        earlier, later, current_vw_args=WEAK, trials=args.trials, seed=0, confirm_examples=confirm
    )
    best = search.best
    assert best is not None and search.confirmation is not None
    confirmed = search.confirmation.candidate("best")
    fresh_start = summary.last + timedelta(minutes=2)
    settings = Settings(data_dir=data, config=folder / "weak.toml")
    with ServiceProcess(data, env=env, log_file=folder / "serve-promoted.log") as service:
        await promote_dataset(settings, exported, decision_point=POINT, vw_args=best.vw_args)
        await asyncio.sleep(2.0)  # the API polls the model store every 0.1 s
        promoted = await simulate(service, seed + 1, args.fresh, fresh_start)
    with ServiceProcess(before, env=env, log_file=folder / "serve-weak.log") as service:
        weak = await simulate(service, seed + 1, args.fresh, fresh_start)
    online = fmean(
        e.reward
        for e in Dataset.from_event_log(data, decision_point=POINT)
        if e.decision.timestamp >= fresh_start
    )
    anchor = run_in_process(best.vw_args, decisions=args.fresh, seed=seed + 1, release_every=1)
    e = confirmed.estimates["SNIPS"]
    assert e is not None and confirmed.difference is not None
    return {
        "seed": seed,
        "best": best.vw_args,
        "difference": confirmed.difference,
        "chosen_on": best.estimate,
        "estimate": e,
        "online": online,
        "inside": e.lower <= online <= e.upper,
        "weak": weak,
        "promoted": promoted,
        "anchor": anchor.learned_expected,
    }


async def main(args: argparse.Namespace) -> None:
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="learnloop-session-") as tmp:
            rows.append(await session(seed, args, Path(tmp)))
        print(f"seed {seed} done", flush=True)
    print(
        f"\n{args.logged:,} logged decisions under `{WEAK}`, {args.trials} trials, "
        f"{args.fresh:,} fresh decisions; expected reward per decision over the fresh "
        "run's last quarter\n"
    )
    print(
        "| seed | best - current (confirmation, SNIPS) | offline estimate [95 %] "
        "| where it was chosen | measured online | inside | weak online | promoted online "
        "| anchor: raw VW, promoted args, cold |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | :---: | ---: | ---: | ---: |")
    for r in rows:
        d, e = r["difference"], r["estimate"]
        print(
            f"| {r['seed']} | {d.value:+.3f} [{d.lower:+.3f}, {d.upper:+.3f}] "  # type: ignore[attr-defined]
            f"| {e.value:.3f} [{e.lower:.3f}, {e.upper:.3f}] "  # type: ignore[attr-defined]
            f"| {r['chosen_on'].value:.3f} | {r['online']:.3f} "  # type: ignore[attr-defined]
            f"| {'yes' if r['inside'] else 'no'} | {r['weak']:.3f} | {r['promoted']:.3f} "
            f"| {r['anchor']:.3f} |"
        )
    for r in rows:
        print(f"\nseed {r['seed']} best: `{r['best']}`")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 21, 31])
    parser.add_argument("--logged", type=int, default=6000)
    parser.add_argument("--fresh", type=int, default=4000)
    parser.add_argument("--trials", type=int, default=12)
    asyncio.run(main(parser.parse_args()))
