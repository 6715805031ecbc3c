"""The persona pipeline end to end, as a shop and a data scientist run it, against a real
``learnloop serve``:

1. after a closing the shop imports its books (the simulator's seeded 90-day history of
   every known shopper) with ``learnloop personas import-profiles``;
2. the data scientist segments the profiles, names each segment after reading what it
   is (here: after the true persona most of its users have, which the report's
   description shows a human), trains the CatBoost classifier and publishes it;
3. the service serves the personas on every decision, with a front end that sends only
   what a page knows (the behavioural history lives in the profile store);
4. on the same seeded traffic the bandit closes clearly more of the random-to-oracle
   gap with the personas than a service without them.

Every step runs the ``learnloop`` commands a user types, but for naming the segments,
which a person does by editing the segments file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from devtools.simulator import run_simulation
from devtools.simulator.history import export_history, read_truth
from offline_learner.personas.profiles_source import read_profile_file
from offline_learner.personas.segments_file import name_by_majority
from runtime.processes import ServiceProcess
from runtime.processes import run_learnloop as learnloop

pytestmark = pytest.mark.integration

SEED = 7
DECISIONS = 4000


def wait_for_persona_model(url: str, user: str, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        view = httpx.get(f"{url}/v1/users/{user}", timeout=5).json()
        if view.get("persona_source") == "model" or time.monotonic() > deadline:
            return dict(view)
        time.sleep(0.2)


async def gap_closed(data: Path, log: Path) -> tuple[float, float | None]:
    """The share of the random-to-oracle gap closed over the last quarter, and the
    service's persona accuracy on logged-in shoppers, with a minimal front end."""
    with ServiceProcess(data, log_file=log) as service:
        report = await run_simulation(
            service.url, decisions=DECISIONS, seed=SEED, progress=False, context="minimal"
        )
    assert report.http_errors == 0 and report.decisions == DECISIONS
    return report.gap_closed, report.persona_accuracy


async def test_segment_name_train_serve_closes_more_of_the_gap(tmp_path: Path) -> None:
    books, truth_file = tmp_path / "books.csv", tmp_path / "books.truth.csv"
    export_history(books, truth_file, seed=SEED)
    truth = read_truth(truth_file)
    data = tmp_path / "with-personas"

    # 1.-2. Import the books, segment, name, train, publish (the service need not run).
    learnloop("personas", "import-profiles", books, "--data-dir", data)
    segments = tmp_path / "segments.toml"
    learnloop(
        "personas",
        "segment",
        "--data-dir",
        data,
        "--k-range",
        "3-7",
        "--seed",
        "1",
        "--segments-out",
        segments,
        "--report",
        tmp_path / "segments.html",
    )
    table = read_profile_file(books)
    names = name_by_majority(segments, table.features(), [truth[u] for u in table.user_ids])
    assert {"builder", "consultant", "shop_owner", "direct_customer"} <= set(names.values())
    trained = json.loads(
        learnloop(
            "personas",
            "train",
            "--segments",
            segments,
            "--data-dir",
            data,
            "--report",
            tmp_path / "train.html",
            "--json",
        )
    )
    # Held out from training: a quarter of the shoppers, scored against their segments.
    assert trained["macro_f1"] >= 0.9, trained["macro_f1"]
    assert "<svg" in (tmp_path / "train.html").read_text()

    # 3. The service serves the published model's personas.
    user = next(iter(truth))
    with ServiceProcess(data, log_file=tmp_path / "probe.log") as service:
        view = wait_for_persona_model(service.url, user)
    assert view["persona_source"] == "model", view
    assert view["persona"] == truth[user]

    # 4. The same traffic with and without personas (a fresh service knows no one).
    with_personas, accuracy = await gap_closed(data, tmp_path / "serve-with.log")
    without, _ = await gap_closed(tmp_path / "without-personas", tmp_path / "serve-without.log")
    print(f"\ngap closed: {with_personas:.3f} with personas, {without:.3f} without")
    assert accuracy is not None and accuracy >= 0.9, accuracy
    # Seven runs on the 2-core development VM: 0.68-0.73 with the personas, 0.40-0.48
    # without (minimal front end, shipped VW arguments, 4,000 decisions). The last
    # quarter's standard error is below 0.03 per run, so a difference of 0.15 (over
    # 3.5 standard errors of a difference) cannot pass by chance; the rest of the run-to-
    # run spread is the service's release timing, which a busy machine stretches.
    assert with_personas > without + 0.15, (with_personas, without)
