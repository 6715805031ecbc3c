"""The simulated shop: exact expectations, persona signal, delays, reproducibility,
learnability in-process, and the HTTP driver against a fake service."""

from __future__ import annotations

import itertools
import json
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devtools.simulator import (
    ACTIONS,
    PERSONAS,
    Shop,
    render_report,
    run_in_process,
    run_simulation,
)
from devtools.simulator.ledger import Ledger
from devtools.simulator.rules import RULES
from devtools.simulator.shop import BASKET_ADD_DELAY, lognormal_cdf, plan_event_time
from learnloop.decision_points import load_config_file
from learnloop.errors import ConfigurationError, Unavailable

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def shop() -> Shop:
    return Shop(seed=7)


@pytest.fixture(scope="module")
def visits(shop: Shop) -> list[Any]:
    return list(shop.visits(START, 4000))


def test_oracle_is_at_least_every_action(shop: Shop, visits: list[Any]) -> None:
    for visit in visits:
        rewards = shop.expected_rewards(visit)
        assert set(rewards) == set(ACTIONS)
        assert all(0.0 <= r <= 3.0 for r in rewards.values())
        assert shop.oracle(visit) >= max(rewards.values()) - 1e-12
        assert shop.uniform(visit) <= shop.oracle(visit)


def test_uniform_is_clearly_below_the_oracle(shop: Shop, visits: list[Any]) -> None:
    uniform = statistics.fmean(shop.uniform(v) for v in visits)
    oracle = statistics.fmean(shop.oracle(v) for v in visits)
    assert 0.6 <= uniform <= 1.0
    assert oracle >= 1.9
    assert oracle - uniform >= 0.9


def test_no_single_action_is_good_enough(shop: Shop, visits: list[Any]) -> None:
    """Context matters: the best fixed action stays far from the oracle."""
    oracle = statistics.fmean(shop.oracle(v) for v in visits)
    best_fixed = max(statistics.fmean(shop.expected_reward(v, a) for v in visits) for a in ACTIONS)
    assert oracle - best_fixed >= 0.6


def test_every_persona_has_its_own_best_action(shop: Shop, visits: list[Any]) -> None:
    best: dict[str, set[str]] = defaultdict(set)
    for visit in visits:
        rewards = shop.expected_rewards(visit)
        best[visit.persona].add(max(rewards, key=rewards.__getitem__))
    assert set(best) == set(PERSONAS)
    assert best["builder"] == {"trending"}
    assert best["shop_owner"] == {"bestsellers"}
    assert {"category1", "category2"} <= best["consultant"]


@pytest.mark.parametrize(
    ("feature", "persona", "others_below"),
    [
        ("recruits", "builder", 2.0),
        ("orders_for_others_share", "consultant", 0.3),
        ("avg_basket", "shop_owner", 250.0),
    ],
)
def test_behavioural_features_carry_the_persona(
    visits: list[Any], feature: str, persona: str, others_below: float
) -> None:
    by_persona: dict[str, list[float]] = defaultdict(list)
    for visit in visits:
        by_persona[visit.persona].append(float(visit.features[feature]))
    mine = statistics.fmean(by_persona[persona])
    for other, values in by_persona.items():
        if other != persona:
            assert statistics.fmean(values) < others_below < mine, (other, feature)


def test_visitors_are_anonymous(visits: list[Any]) -> None:
    for visit in visits:
        if visit.persona == "visitor":
            assert visit.shopper.user_id is None
            assert visit.features["logged_in"] is False


def test_delays_put_some_outcomes_after_the_window(shop: Shop, visits: list[Any]) -> None:
    outcomes = [o for v in visits for o in shop.outcomes(v, "bestsellers")]
    late = sum(o.delay > shop.window_seconds for o in outcomes) / len(outcomes)
    assert 0.03 < late < 0.2
    basket_late = 1 - lognormal_cdf(shop.window_seconds, *BASKET_ADD_DELAY)
    assert 0.1 < basket_late < 0.25


@pytest.mark.parametrize("action", ACTIONS)
def test_expected_reward_matches_sampled_outcomes(
    shop: Shop, visits: list[Any], action: str
) -> None:
    """The analytic expectation and the sampled, window-cut rewards agree."""
    expected = statistics.fmean(shop.expected_reward(v, action) for v in visits)
    realised = statistics.fmean(shop.realised_reward(shop.outcomes(v, action)) for v in visits)
    assert abs(expected - realised) < 0.08  # ~4 standard errors at 4,000 visits


def test_same_seed_same_stream() -> None:
    def stream(seed: int) -> list[tuple[Any, ...]]:
        s = Shop(seed=seed)
        return [
            (
                v.timestamp,
                v.session_id,
                v.shopper.user_id,
                dict(v.features),
                s.outcomes(v, "trending"),
            )
            for v in s.visits(START, 300)
        ]

    assert stream(3) == stream(3)
    assert stream(3) != stream(4)


def test_visits_advance_event_time(visits: list[Any]) -> None:
    gaps = [(b.timestamp - a.timestamp).total_seconds() for a, b in itertools.pairwise(visits)]
    assert min(gaps) >= 0.05 - 1e-9 and max(gaps) <= 0.2 + 1e-9


def test_ledger_releases_outcomes_in_event_time_order(shop: Shop, visits: list[Any]) -> None:
    ledger = Ledger(shop, decisions=len(visits), seed=7)
    for visit in visits:
        ledger.record(visit, "bestsellers", f"e{visit.index}")
    cut = visits[len(visits) // 2].timestamp
    early, rest = ledger.due(cut), ledger.due()
    times = [datetime.fromisoformat(o["timestamp"]) for o in early + rest]
    assert times == sorted(times) and all(t <= cut for t in times[: len(early)])
    assert len(times) == ledger.outcomes
    session_only = sum("event_id" not in o for o in early + rest) / len(times)
    assert 0.05 < session_only < 0.15
    report = ledger.report()
    assert report.scored_decisions == len(visits) // 4
    assert report.learned_expected == pytest.approx(
        statistics.fmean(
            shop.expected_reward(v, "bestsellers") for v in visits[-len(visits) // 4 :]
        )
    )


@pytest.mark.parametrize("rule", ["mlm", "seasons"])
def test_the_shipped_vw_args_learn_either_shop_with_delayed_feedback(rule: str) -> None:
    """Seeded: the shipped VW args, with the service's delays, close >= 60% of the gap
    in 3,000 decisions on the project's shop and on the held-out one.

    Uniform random closes 0% and the oracle 100%; measured 82-89 % here (94-96 % at
    20,000). The score is the mean of 750 expected rewards whose standard error is
    under 0.03 against a gap of 1.2: 60 % is 20 standard errors away from chance.
    """
    (home,) = [dp for dp in load_config_file(None) if dp.name == "home_products"]
    report = run_in_process(home.vw_args, decisions=3000, seed=7, shop=rule)
    assert report.oracle_expected - report.uniform_expected > 0.9
    assert report.gap_closed >= 0.6, report


def test_pairwise_interactions_cannot_learn_the_held_out_rule() -> None:
    """Why the shipped args cross context x context x action: the ``seasons`` rule puts
    its signal in three-way interactions, which ``-q ca`` alone cannot represent
    (measured 0.50 against 0.82 for the shipped args at 3,000 decisions)."""
    (home,) = [dp for dp in load_config_file(None) if dp.name == "home_products"]
    pairwise = run_in_process("--cb_explore_adf --squarecb -q ca -q ua", 3000, 7, shop="seasons")
    shipped = run_in_process(home.vw_args, 3000, 7, shop="seasons")
    assert shipped.gap_closed >= pairwise.gap_closed + 0.25, (shipped, pairwise)


SEASONS_BEST = [
    # (persona, features that differ from a cold home-page desktop visit up north, best)
    ("builder", {}, "category2"),
    ("builder", {"season": "summer"}, "trending"),
    ("shop_owner", {}, "bestsellers"),
    ("shop_owner", {"season": "spring"}, "category2"),
    ("visitor", {}, "bestsellers"),
    ("visitor", {"device": "mobile"}, "trending"),
    ("consultant", {}, "category1"),
    ("consultant", {"region": "south"}, "category2"),
    ("direct_customer", {}, "bestsellers"),
    ("direct_customer", {"season": "summer"}, "trending"),
    ("direct_customer", {"category_page": "nutrition"}, "category2"),
]


@pytest.mark.parametrize(("persona", "change", "best"), SEASONS_BEST)
def test_the_held_out_rule_turns_each_best_block_on_a_second_feature(
    persona: str, change: dict[str, str], best: str
) -> None:
    features = {"season": "winter", "device": "desktop", "region": "north"}
    features = {**features, "category_page": "home", **change}
    appeal = RULES["seasons"].appeal(persona, features)
    assert ACTIONS[appeal.index(max(appeal))] == best


def test_an_unknown_shop_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="mlm, seasons"):
        Shop(seed=1, rule="bazaar")


def test_each_shop_draws_its_own_persona_mix() -> None:
    for rule in RULES.values():
        shop = Shop(seed=3, rule=rule.name)
        seen = Counter(v.persona for v in shop.visits(START, 4000))
        for persona, share in rule.persona_share.items():
            assert seen[persona] / 4000 == pytest.approx(share, abs=0.03)


class FakeService:
    """Answers decisions with a seeded random action; checks event-time discipline."""

    def __init__(self) -> None:
        self.stream_time = datetime.min.replace(tzinfo=UTC)
        self.decisions: dict[str, datetime] = {}
        self.sessions: dict[str, datetime] = {}
        self.outcomes: list[dict[str, Any]] = []
        self.sent_after_close = 0
        self.count = 0
        self.late = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/metrics":
            late = f'learnloop_join_dropped_total{{reason="late"}} {self.late}.0\n'
            return httpx.Response(
                200, text=late + 'learnloop_join_dropped_total{reason="stale"} 2.0\n'
            )
        if request.url.path.startswith("/v1/models/"):
            return httpx.Response(200, json={"examples_learned": self.count})
        if request.method == "GET":
            return httpx.Response(404, json={"detail": "not here"})
        body = json.loads(request.content)
        if request.url.path == "/v1/decisions":
            assert request.headers["x-api-key"] == "k"
            at = datetime.fromisoformat(body["timestamp"])
            self.count += 1
            event_id = f"d{self.count}"
            self.decisions[event_id] = at
            self.sessions[body["context"]["session_id"]] = at
            self.stream_time = max(self.stream_time, at)
            action = ACTIONS[self.count % len(ACTIONS)]
            return httpx.Response(200, json={"event_id": event_id, "action_id": action})
        for outcome in body:
            at = datetime.fromisoformat(outcome["timestamp"])
            decided = self.decisions.get(outcome.get("event_id", "")) or self.sessions.get(
                outcome.get("session_id", "")
            )
            if decided is not None:
                deadline = decided + timedelta(seconds=20)
                if at <= deadline and self.stream_time > deadline:
                    self.sent_after_close += 1  # an in-window outcome would be counted late
                self.late += at > deadline
            self.stream_time = max(self.stream_time, at)
            self.outcomes.append(outcome)
        return httpx.Response(202, json={"accepted": len(body)})


async def test_driver_sends_decisions_then_outcomes_in_event_time() -> None:
    fake = FakeService()
    report = await run_simulation(
        "http://sim.test",
        decisions=800,
        seed=5,
        concurrency=16,
        start=START,
        progress=False,
        client_key="k",
        transport=httpx.MockTransport(fake),
    )
    assert report.decisions == 800 and report.http_errors == 0
    assert report.outcomes_sent == len(fake.outcomes) - 1  # all but the clock tick
    assert fake.outcomes[-1]["type"] == "clock_tick"
    assert fake.sent_after_close == 0
    assert report.outcomes_late > 0 and report.expected_defaults > 0
    assert report.service_late_outcomes == report.outcomes_late  # this run's, not the total
    assert report.service_orphaned_outcomes == 0.0
    assert report.service_examples_learned == 800
    assert render_report(report).row_count >= 10


async def test_driver_refuses_an_unreachable_service() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(Unavailable, match="no decision succeeded"):
        await run_simulation(
            "http://sim.test",
            decisions=50,
            start=START,
            progress=False,
            transport=httpx.MockTransport(down),
        )


async def test_driver_stops_early_when_the_service_goes_away() -> None:
    fake = FakeService()

    def flaky(request: httpx.Request) -> httpx.Response:
        if fake.count >= 100 and request.url.path == "/v1/decisions":
            raise httpx.ReadError("gone", request=request)
        return fake(request)

    report = await run_simulation(
        "http://sim.test",
        decisions=1000,
        concurrency=10,
        start=START,
        progress=False,
        client_key="k",
        transport=httpx.MockTransport(flaky),
    )
    assert report.decisions == 100 and report.requested == 1000
    assert report.http_errors == 10 and "ReadError" in (report.first_error or "")


async def test_driver_refuses_a_decision_point_it_cannot_score() -> None:
    def other(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"actions": [{"id": "a"}, {"id": "b"}]})

    with pytest.raises(ConfigurationError, match="scores exactly"):
        await run_simulation(
            "http://sim.test",
            decisions=10,
            start=START,
            progress=False,
            transport=httpx.MockTransport(other),
        )


def test_a_run_that_cannot_fit_after_the_stream_time_is_refused() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ConfigurationError, match="fresh data dir"):
        plan_event_time(1_000_000, 0.125, 20.0, now, stream_time=now)


async def test_driver_starts_after_the_services_stream_time() -> None:
    """A second run must not land behind the first: its windows would close at once."""
    fake = FakeService()

    def busy(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/metrics":
            text = 'learnloop_join_input_events_total{stream="decisions"} 9.0\n'
            return httpx.Response(200, text=text + "learnloop_join_lag_seconds 30.0\n")
        return fake(request)

    began = datetime.now(UTC)
    report = await run_simulation(
        "http://sim.test",
        decisions=2000,
        start=None,
        progress=False,
        client_key="k",
        transport=httpx.MockTransport(busy),
    )
    first = min(fake.decisions.values())
    assert first > began - timedelta(seconds=31)
    assert max(fake.decisions.values()) < datetime.now(UTC) + timedelta(minutes=3)
    assert report.decisions == 2000
