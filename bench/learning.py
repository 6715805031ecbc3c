"""Learning parity: the served policy against raw VW in process, per seed, per shop.

For each simulated shop (:mod:`devtools.simulator.rules`) and seed, one run drives a
fresh ``learnloop serve`` (shipped defaults unless ``--env``/``--vw-args`` say
otherwise) over HTTP with :func:`devtools.simulator.run_simulation`, then feeds the
same traffic (same shop, seed, window and delays) to the anchor:
:func:`devtools.simulator.run_in_process`, raw VW with the same arguments and the same
featurizer, learning each decision when its window closes and serving from the
freshest model (``release_every=1``). Prints one markdown table per shop: gap closed
(uniform random -> oracle) through the API and by the anchor, their ratio, the
service's releases and swaps, the simulator's wall-clock rate (the served model's lag
in examples grows with it), and the median and worst ratio over the seeds.

    nice -n 10 .venv/bin/python bench/learning.py            # 5 seeds x 2 shops, ~15 min
    nice -n 10 .venv/bin/python bench/learning.py --seeds 7 --shops seasons
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from devtools.simulator import run_in_process, run_simulation
from devtools.simulator.rules import RULES
from learnloop.decision_points import load_config_file
from runtime.processes import ServiceProcess

SEEDS = (7, 11, 23, 42, 5)


@dataclass(frozen=True)
class Row:
    shop: str
    seed: int
    api: float
    anchor: float
    swaps: float | None
    releases: int | None
    wall: float
    decisions: int

    @property
    def ratio(self) -> float:
        return self.api / self.anchor


def _config_with(vw_args: str, folder: Path) -> Path:
    """The shipped config file with ``vw_args`` replaced (every decision point)."""
    text = Path(__file__).parent.parent.joinpath("learnloop/default_config.toml").read_text()
    path = folder / "config.toml"
    path.write_text(re.sub(r'^vw_args = ".*"$', f'vw_args = "{vw_args}"', text, flags=re.M))
    return path


def _swaps(metrics: str) -> float | None:
    """``learnloop_model_swaps_total`` summed over its labels, from /metrics text."""
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("learnloop_model_swaps_total")
    ]
    return sum(values) if values else None


async def one_run(shop: str, seed: int, decisions: int, env: dict[str, str], vw_args: str) -> Row:
    """One seed of one shop: the service over HTTP, then the anchor on the same traffic."""
    with tempfile.TemporaryDirectory(prefix="learnloop-bench-learning-") as tmp:
        folder = Path(tmp)
        env = {**env, "LEARNLOOP_CONFIG": str(_config_with(vw_args, folder))}
        service = ServiceProcess(folder / "data", env=env, log_file=folder / "serve.log").start()
        try:
            report = await run_simulation(service.url, decisions, seed, progress=False, shop=shop)
            async with httpx.AsyncClient(base_url=service.url) as client:
                swaps = _swaps((await client.get("/metrics")).text)
                model = (await client.get("/v1/models/home_products")).json()
        finally:
            service.stop()
    if report.http_errors or report.decisions != decisions:
        raise RuntimeError(f"{shop} seed {seed}: {report.http_errors} errors, {report.first_error}")
    anchor = run_in_process(vw_args, decisions, seed, release_every=1, shop=shop)
    version = model.get("version") if isinstance(model, dict) else None
    return Row(
        shop,
        seed,
        report.gap_closed,
        anchor.gap_closed,
        swaps,
        version,
        report.wall_seconds,
        report.decisions,
    )


def table(rows: list[Row]) -> str:
    """The markdown table of one shop's rows, with the median and worst ratio."""
    out = [
        "| seed | API gap closed | anchor gap closed | API / anchor | releases | swaps/s "
        "| decisions/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = f"{r.swaps / r.wall:.1f}" if r.swaps is not None and r.wall > 0 else "-"
        out.append(
            f"| {r.seed} | {r.api:.3f} | {r.anchor:.3f} | {r.ratio:.3f} | {r.releases} | {rate} "
            f"| {r.decisions / r.wall:.0f} |"
        )
    ratios = [r.ratio for r in rows]
    out.append(
        f"| **median** | {statistics.median(r.api for r in rows):.3f} "
        f"| {statistics.median(r.anchor for r in rows):.3f} | **{statistics.median(ratios):.3f}** "
        "| | | |"
    )
    worst = min(rows, key=lambda r: r.ratio)
    out.append(f"| **worst** (seed {worst.seed}) | {worst.api:.3f} | {worst.anchor:.3f} "
               f"| **{worst.ratio:.3f}** | | | |")  # fmt: skip
    return "\n".join(out)


async def main(args: argparse.Namespace) -> None:
    vw_args = args.vw_args or load_config_file(None)[0].vw_args
    env = dict(item.split("=", 1) for item in args.env)
    print(f"vw_args: `{vw_args}`; service env: {env or 'shipped defaults'}; "
          f"{args.decisions:,} decisions per run\n")  # fmt: skip
    for shop in args.shops.split(","):
        rows = []
        for seed in (int(s) for s in args.seeds.split(",")):
            row = await one_run(shop, seed, args.decisions, env, vw_args)
            print(f"  {shop} seed {seed}: API {row.api:.3f} anchor {row.anchor:.3f}", flush=True)
            rows.append(row)
        print(f"\n### shop `{shop}`\n\n{table(rows)}\n", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--shops", default=",".join(RULES))
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--vw-args", default=None, help="default: the shipped config's")
    parser.add_argument(
        "--env", action="append", default=[], help="LEARNLOOP_X=value for the service"
    )
    asyncio.run(main(parser.parse_args()))
