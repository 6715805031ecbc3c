"""A personalized flag learns each persona's best variant, against a real ``learnloop serve``.

A feature team creates ``checkout_layout`` (``classic``, the default, ``one_page``,
``wizard``), personalized for everyone with a 10 % holdout on the default, and the
simulated shop's visitors evaluate it from a minimal front end that names the
shopper's persona (the shop knows its customers' roles: the explicit persona is
honoured, which keeps the test fast; anonymous shoppers are sent as ``visitor``). The
shop's hidden preferences (:mod:`devtools.simulator.flags`) make ``classic`` the best
layout for no one, so over the last quarter, per true persona, what the learned arm
served must beat the fixed default on the same visits by a clear margin. Raw VW
in-process on the same visits (the anchor) says what a bandit can learn of this traffic.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from devtools.simulator import run_flag_anchor, run_flag_simulation
from devtools.simulator.flags import CHECKOUT_LAYOUT
from devtools.simulator.shop import PERSONAS
from runtime.processes import ServiceProcess

pytestmark = pytest.mark.integration

SEED = 7
DECISIONS = 4000
HOLDOUT = 0.1
ADMIN_KEY = "flag-test-admin-key-0123456789abcdef"
MARGIN = 0.3


def exposures_by_arm(url: str) -> dict[str, float]:
    """The service's own count of the flag's logged decisions, by arm."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    arms: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("learnloop_decisions_total{") and '"flag.checkout_layout"' in line:
            arm = line.split('arm="', 1)[1].split('"', 1)[0]
            arms[arm] = arms.get(arm, 0.0) + float(line.rpartition(" ")[2])
    return arms


async def test_a_personalized_checkout_layout_beats_the_default_for_every_persona(
    tmp_path: Path,
) -> None:
    env = {"LEARNLOOP_ADMIN_API_KEY": ADMIN_KEY}
    with ServiceProcess(tmp_path / "data", env=env, log_file=tmp_path / "serve.log") as service:
        report = await run_flag_simulation(
            service.url,
            "checkout_layout",
            decisions=DECISIONS,
            seed=SEED,
            context="minimal",
            persona="explicit",
            create=True,
            holdout_share=HOLDOUT,
            progress=False,
            admin_key=ADMIN_KEY,
        )
        flag = httpx.get(
            f"{service.url}/v1/flags/checkout_layout",
            headers={"X-API-Key": ADMIN_KEY},
            timeout=10,
        ).json()
        arms = exposures_by_arm(service.url)
    anchor = run_flag_anchor(
        "checkout_layout", DECISIONS, SEED, holdout_share=HOLDOUT, context="minimal"
    )

    assert report.http_errors == 0 and report.decisions == DECISIONS, report.first_error
    assert report.reasons == {"PERSONALIZED": DECISIONS}
    assert flag["variants"] == dict(CHECKOUT_LAYOUT.values) and flag["holdout_share"] == HOLDOUT
    # The holdout is the service's baseline arm, drawn as the ledger predicts, on the default.
    assert arms == {"baseline": report.arms["holdout"], "learned": report.arms["learned"]}
    assert report.holdout_on_default == 1.0
    assert report.service_examples_learned is not None
    assert report.service_examples_learned >= 0.9 * DECISIONS

    assert set(report.personas) == set(PERSONAS)
    for persona, score in report.personas.items():
        # Development runs (seed 7, 4,000 visits): margins 0.6-1.2 per persona; the
        # standard error of a persona's margin is below 0.08 (>= 80 learned exposures
        # scored, paired on the same visits), so 0.3 cannot be reached by chance.
        assert score.margin > MARGIN, (persona, score)
        assert score.holdout is not None and score.learned > score.holdout + MARGIN
        # The anchor learns the same on this traffic (within exploration noise).
        assert anchor.personas[persona].margin > MARGIN, (persona, anchor.personas[persona])
    # The service does about as well as raw VW in-process on the same visits.
    assert report.learned > anchor.learned - 0.25, (report.learned, anchor.learned)
