"""The feature team's scenario through the real openfeature-sdk against a real ``learnloop serve``.

In both modes (embedded; distributed on tansu and redis-server), the team manages
flags with the admin routes (as ``X-Actor: feature-team``) and reads them only through
OpenFeature with :class:`LearnloopProvider`:

1. ``checkout_layout`` with three variants (STATIC for everyone);
2. ``bulk_order_form`` fixed on for shop owners (TARGETING_MATCH; DEFAULT for others);
3. ``checkout_layout`` personalized for consultants between two variants (PERSONALIZED,
   the exposure's ``event_id`` in the flag metadata);
4. 20 % of direct customers on ``two_step`` (SPLIT), sticky across requests and restarts;
5. the kill switch off (DISABLED, the default for everyone) and on again;
6. the audit history of every change, newest first.

Errors come back as OpenFeature codes with the caller's default (FLAG_NOT_FOUND,
TYPE_MISMATCH, GENERAL for a server that is down); the bulk prefetch serves a page from
one request; ``track()`` posts an outcome that the join attributes to the exposure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from learnloop_client import FlagNotFound, InvalidRequest, LearnloopClient, NotFound, Outcome
from learnloop_client.openfeature import LearnloopProvider
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagEvaluationDetails, Reason
from openfeature.track import TrackingEventDetails

from learnloop.eventlog.sqlite import SqliteEventLog
from learnloop.streams import Streams
from runtime.processes import ServiceProcess, free_port, settings_env
from schemas import JoinedExample

pytestmark = pytest.mark.integration

TEAM = {"X-Actor": "feature-team"}
LAYOUTS = {"one_page": "one_page", "two_step": "two_step", "accordion": "accordion"}
CHECKOUT: dict[str, Any] = {
    "description": "the checkout page's layout",
    "type": "string",
    "variants": LAYOUTS,
    "default_variant": "one_page",
    "reward_map": {"purchase": 1.0},
}
BULK: dict[str, Any] = {
    "description": "the bulk order form on product pages",
    "type": "boolean",
    "variants": {"on": True, "off": False},
    "default_variant": "off",
    "rules": [{"name": "shop owners", "personas": ["shop_owner"], "variant": "on"}],
}
PERSONALIZED_RULE = {
    "name": "consultants learn",
    "personas": ["consultant"],
    "personalized": ["two_step", "accordion"],
}
ROLLOUT_RULE = {
    "name": "direct customers 20 %",
    "personas": ["direct_customer"],
    "rollout": [{"variant": "two_step", "weight": 20}],
}
DIRECT = [f"d{i}" for i in range(200)]


@pytest.fixture(params=["embedded", "distributed"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceProcess]:
    """``learnloop serve`` with one API process: embedded on SQLite, or (when the test asks
    for ``mode`` ``distributed``) on the test's tansu and redis-server."""
    env = {"LEARNLOOP_FLAG_REFRESH_SECONDS": "0.2"}
    data: Path | None = tmp_path / "data"
    if "mode" in request.fixturenames and request.getfixturevalue("mode") == "distributed":
        env |= settings_env(request.getfixturevalue("kafka_settings"))
        data = None  # the flags, models and profiles live in Redis
    with ServiceProcess(data, workers=1, env=env, log_file=tmp_path / "serve.log") as running:
        yield running


@pytest.fixture
def admin(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, headers=TEAM, timeout=10) as client:
        yield client


@pytest.fixture(autouse=True)
def _clean_api() -> Iterator[None]:
    yield
    api.clear_providers()


def who(user: str, persona: str, **attributes: Any) -> EvaluationContext:
    return EvaluationContext(user, {"persona": persona, "page": "checkout", **attributes})


def eventually(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait for the API's flag cache to see a change (it refreshes every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not seen within {timeout} s: {what}")


def put(admin: httpx.Client, key: str, definition: dict[str, Any]) -> dict[str, Any]:
    response = admin.put(f"/v1/flags/{key}", json=definition)
    assert response.status_code == 200, response.text
    flag: dict[str, Any] = response.json()
    return flag


def shape(details: FlagEvaluationDetails[Any]) -> tuple[Any, str | None, Any]:
    return details.value, details.variant, details.reason


def rollout(client: OpenFeatureClient) -> dict[str, tuple[Any, str | None, Any]]:
    return {u: shape(client.get_string_details("checkout_layout", "x", who(u, "direct_customer")))
            for u in DIRECT}  # fmt: skip


def test_the_feature_team_scenario_through_openfeature(
    mode: str, service: ServiceProcess, admin: httpx.Client
) -> None:
    api.set_provider(LearnloopProvider(service.url))
    client = api.get_client("checkout-page")
    assert api.get_provider_metadata().name == "learnloop"
    consultant, owner = who("c1", "consultant"), who("o1", "shop_owner")

    # 1. three variants, no rules: the default for everyone
    assert put(admin, "checkout_layout", CHECKOUT)["version"] == 1
    eventually(lambda: client.get_string_details("checkout_layout", "x", owner).reason
               == Reason.STATIC, "checkout_layout created")  # fmt: skip
    assert shape(client.get_string_details("checkout_layout", "x", consultant)) == (
        "one_page", "one_page", Reason.STATIC)  # fmt: skip

    # 2. the bulk order form, fixed on for shop owners
    put(admin, "bulk_order_form", BULK)
    eventually(lambda: client.get_boolean_value("bulk_order_form", False, owner),
               "bulk_order_form created")  # fmt: skip
    assert shape(client.get_boolean_details("bulk_order_form", False, owner)) == (
        True, "on", Reason.TARGETING_MATCH)  # fmt: skip
    assert shape(client.get_boolean_details("bulk_order_form", True, consultant)) == (
        False, "off", Reason.DEFAULT)  # fmt: skip

    # 3. consultants: the bandit picks between two layouts, each evaluation an exposure
    put(admin, "checkout_layout", {**CHECKOUT, "rules": [PERSONALIZED_RULE]})
    eventually(lambda: client.get_string_details("checkout_layout", "x", consultant).reason
               == "PERSONALIZED", "personalized rule")  # fmt: skip
    exposures = [client.get_string_details("checkout_layout", "x", who(f"c{i}", "consultant"))
                 for i in range(20)]  # fmt: skip
    assert {d.value for d in exposures} <= {"two_step", "accordion"}
    assert all(d.variant == d.value and d.reason == "PERSONALIZED" for d in exposures)
    event_ids = [d.flag_metadata["event_id"] for d in exposures]
    assert len(set(event_ids)) == 20  # one logged exposure per evaluation
    assert all(d.flag_metadata["persona"] == "consultant" for d in exposures)
    assert shape(client.get_string_details("checkout_layout", "x", owner)) == (
        "one_page", "one_page", Reason.DEFAULT)  # fmt: skip

    # 4. 20 % of direct customers on two_step, sticky
    put(admin, "checkout_layout", {**CHECKOUT, "rules": [PERSONALIZED_RULE, ROLLOUT_RULE]})
    eventually(lambda: any(r[2] == Reason.SPLIT for r in rollout(client).values()), "rollout")
    first = rollout(client)
    split = [u for u, r in first.items() if r == ("two_step", "two_step", Reason.SPLIT)]
    rest = [u for u, r in first.items() if r == ("one_page", "one_page", Reason.DEFAULT)]
    assert len(split) + len(rest) == len(DIRECT)
    assert 0.12 <= len(split) / len(DIRECT) <= 0.28, len(split)
    assert rollout(client) == first  # the same users, the same variants

    # 5. the kill switch: the default for everyone, personalized consultants included
    assert admin.post("/v1/flags/checkout_layout/disable").json()["enabled"] is False
    eventually(lambda: client.get_string_details("checkout_layout", "x", consultant).reason
               == Reason.DISABLED, "disabled")  # fmt: skip
    for context in (consultant, owner, who(split[0], "direct_customer")):
        details = client.get_string_details("checkout_layout", "x", context)
        assert shape(details) == ("one_page", "one_page", Reason.DISABLED)
        assert "event_id" not in details.flag_metadata
    assert admin.post("/v1/flags/checkout_layout/enable").json()["enabled"] is True
    eventually(lambda: client.get_string_details("checkout_layout", "x", consultant).reason
               == "PERSONALIZED", "enabled")  # fmt: skip
    assert rollout(client) == first

    # 6. the audit history: who changed what, newest first, each with the flag after it
    history = admin.get("/v1/flags/checkout_layout/history").json()
    assert [c["action"] for c in history] == ["enable", "disable", "update", "update", "create"]
    assert [c["version"] for c in history] == [5, 4, 3, 2, 1]
    assert {c["by"] for c in history} == {"feature-team"}
    assert history[0]["flag"]["enabled"] is True and history[1]["flag"]["enabled"] is False
    assert any(d["path"].startswith("rules") for d in history[2]["diff"])

    # errors: OpenFeature's codes, the caller's default
    missing = client.get_boolean_details("no_such_flag", True, owner)
    assert (missing.value, missing.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)
    wrong = client.get_boolean_details("checkout_layout", True, owner)  # a string flag
    assert (wrong.value, wrong.error_code) == (True, ErrorCode.TYPE_MISMATCH)
    api.set_provider(LearnloopProvider(f"http://127.0.0.1:{free_port()}", timeout=0.5), "down")
    down = api.get_client("down").get_string_details("checkout_layout", "x", owner)
    assert (down.value, down.reason, down.error_code) == ("x", Reason.ERROR, ErrorCode.GENERAL)

    # restarted on the same data: the flags and every sticky bucket are the same
    service.stop()
    service.start()
    assert rollout(client) == first


def test_the_typed_client_reads_the_real_answers(
    service: ServiceProcess, admin: httpx.Client
) -> None:
    put(admin, "bulk_order_form", BULK)
    with LearnloopClient(service.url) as client:
        context = {"session_id": "s1", "features": {"page": "home"}}
        decision = client.decide("home_products", context, ["category1", "trending"],
                                 persona="consultant")  # fmt: skip
        assert decision.action_id in {"category1", "trending"}
        assert {r.id for r in decision.ranking} == {"category1", "trending"}
        assert decision.persona == "consultant"
        assert client.outcome("basket_add", event_id=decision.event_id).accepted == 1
        batch = [Outcome("detail_view", session_id="s1"), Outcome("basket_add", session_id="s1")]
        assert client.outcomes(batch).accepted == 2
        assert client.reward(decision.event_id, 2.0).event_id == decision.event_id
        deferred = client.decide("home_products", persona="visitor", defer_activation=True)
        client.activate(deferred.event_id)
        eventually(lambda: client.evaluate_flags(persona="shop_owner").get("bulk_order_form")
                   is not None, "bulk_order_form created")  # fmt: skip
        owner = client.evaluate_flag("bulk_order_form", {"user_id": "o1"}, persona="shop_owner")
        assert (owner.value, owner.variant, owner.reason) == (True, "on", "TARGETING_MATCH")
        assert owner.flag_version == 1 and owner.event_id is None
        page = client.evaluate_flags({"user_id": "o1"}, ["bulk_order_form", "nope"], "shop_owner")
        assert page["nope"].reason == "ERROR" and page["nope"].error_code == "FLAG_NOT_FOUND"
        assert page["bulk_order_form"] == owner
        with pytest.raises(FlagNotFound) as unknown:
            client.evaluate_flag("nope")
        assert (unknown.value.status, unknown.value.code) == (404, "flag_not_found")
        with pytest.raises(NotFound):
            client.activate("no-such-decision")
        with pytest.raises(InvalidRequest) as bad:
            client.decide("home_products", actions=["not an id"])
        assert bad.value.status == 422 and bad.value.details


def test_prefetch_async_and_track_lead_to_a_joined_example(
    service: ServiceProcess, admin: httpx.Client
) -> None:
    put(admin, "page_size", {"type": "number", "variants": {"small": 12, "large": 24},
                             "default_variant": "large"})  # fmt: skip
    banner_variants = {"red": {"color": "red", "slots": [1, 2]}}
    put(admin, "order_banner", {"type": "object", "variants": banner_variants,
                                "default_variant": "red"})  # fmt: skip
    put(admin, "bulk_order_form", BULK)
    put(admin, "checkout_layout", {**CHECKOUT, "rules": [PERSONALIZED_RULE]})
    provider = LearnloopProvider(service.url, prefetch=True, cache_ttl=60)
    api.set_provider(provider)
    client = api.get_client("checkout-page")
    consultant = who("c1", "consultant", session_id="s1")
    eventually(lambda: client.get_string_details("checkout_layout", "x", who("c0", "consultant"))
               .reason == "PERSONALIZED", "flags created")  # fmt: skip

    # one bulk request serves the page: the second resolve is cached, the same exposure
    layout = client.get_string_details("checkout_layout", "x", consultant)
    again = client.get_string_details("checkout_layout", "x", consultant)
    bulk = client.get_boolean_details("bulk_order_form", True, consultant)
    assert layout.reason == "PERSONALIZED" and "cached" not in layout.flag_metadata
    assert again.flag_metadata["cached"] is True and bulk.flag_metadata["cached"] is True
    assert again.flag_metadata["event_id"] == layout.flag_metadata["event_id"]
    assert (bulk.value, bulk.reason) == (False, Reason.DEFAULT)
    # numbers and objects keep their JSON types through the real answers
    assert client.get_integer_details("page_size", 0, consultant).value == 24
    assert client.get_float_value("page_size", 0.0, consultant) == 24.0
    banner = client.get_object_details("order_banner", {}, consultant)
    assert (banner.value, banner.variant, banner.reason) == (
        {"color": "red", "slots": [1, 2]}, "red", Reason.STATIC)  # fmt: skip

    async def resolve_async() -> tuple[str, bool]:
        owner = who("o1", "shop_owner")
        layout = await client.get_string_value_async("checkout_layout", "x", owner)
        bulk = await client.get_boolean_value_async("bulk_order_form", False, owner)
        await provider.aclose()
        return layout, bulk

    assert asyncio.run(resolve_async()) == ("one_page", True)

    # the purchase is attributed to the consultant's exposure and joined with it
    event_id = layout.flag_metadata["event_id"]
    assert provider.exposures(consultant) == {"checkout_layout": event_id}
    now = datetime.now(UTC)
    details = TrackingEventDetails(value=1.0, attributes={"timestamp": now.isoformat()})
    client.track("purchase", consultant, details)
    # a later exposure in event time closes the purchase's 20 s window
    later = who("c2", "consultant", timestamp=now + timedelta(seconds=120))
    assert client.get_string_details("checkout_layout", "x", later).reason == "PERSONALIZED"
    example = asyncio.run(joined(service.data_dir, str(event_id)))
    assert example.decision.decision_point == "flag.checkout_layout"
    assert example.decision.chosen_action == layout.variant
    assert example.decision.persona == "consultant"
    assert [o.type for o in example.outcomes] == ["purchase"]
    assert example.reward == 1.0


async def joined(data_dir: Path, event_id: str, timeout: float = 20.0) -> JoinedExample:
    """The joined example of ``event_id`` once the embedded join wrote it."""
    log = SqliteEventLog(data_dir / "log")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in await log.read([Streams.JOINED], -1, 100_000):
                example = JoinedExample.model_validate_json(record.value)
                if example.event_id == event_id:
                    return example
            await asyncio.sleep(0.1)
    finally:
        await log.close()
    raise AssertionError(f"no joined example for {event_id} within {timeout} s")
