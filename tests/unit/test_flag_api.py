"""``/v1/flags`` over in-memory stores: validation, evaluation paths, exposures, the
holdout, the kill switch, the audit history, the cache and the metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from learnloop.clock import FakeClock
from learnloop.decision_points import MemoryDecisionPointStore, load_config_file
from learnloop.errors import Unavailable
from learnloop.eventlog import MemoryEventLog, Streams
from learnloop.eventlog.base import Append, AppendResult
from learnloop.flag_store import MemoryFlagStore
from learnloop.modelstore import MemoryModelStore
from learnloop.settings import Settings
from schemas.events import DecisionEvent
from schemas.features import Action, Context
from schemas.flags import Flag, FlagEvaluationRequest
from tests.unit.test_api_harness import START

ADMIN = {"X-API-Key": "admin-secret"}
LAYOUT: dict[str, Any] = {
    "description": "Checkout page layout",
    "type": "string",
    "variants": {"classic": "classic", "one_page": "one-page", "wizard": "wizard"},
    "default_variant": "classic",
}
CONSULTANTS = {
    "name": "consultants",
    "personas": ["consultant"],
    "personalized": ["one_page", "wizard"],
}


class CountingStore(MemoryFlagStore):
    """Counts the reads that would hit a real store."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.reads = 0

    async def get(self, key: str) -> Flag | None:
        self.reads += 1
        return await super().get(key)

    async def all(self) -> list[Flag]:
        self.reads += 1
        return await super().all()


@dataclass
class App:
    client: TestClient
    events: MemoryEventLog
    decision_points: MemoryDecisionPointStore
    flags: CountingStore

    def put(self, key: str, body: dict[str, Any], actor: str | None = None) -> Any:
        headers = dict(ADMIN, **({"X-Actor": actor} if actor else {}))
        return self.client.put(f"/v1/flags/{key}", json=body, headers=headers)

    def evaluate(self, key: str, **body: Any) -> dict[str, Any]:
        response = self.client.post(f"/v1/flags/{key}/evaluate", json=body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def decisions(self) -> list[DecisionEvent]:
        records = self.client.portal.call(self.events.read, [Streams.DECISIONS], -1)  # type: ignore[union-attr]
        return [DecisionEvent.model_validate_json(r.value) for r in records]


class BrokenLog(MemoryEventLog):
    """An event log that refuses every append (a disk full, a lost broker)."""

    async def append(self, records: Sequence[Append]) -> list[AppendResult]:
        raise Unavailable("the event log is unreachable")


@contextmanager
def flag_app(
    store: CountingStore | None = None, events: MemoryEventLog | None = None, **settings: Any
) -> Iterator[App]:
    clock = FakeClock(START)
    events = events or MemoryEventLog()
    points = MemoryDecisionPointStore(load_config_file(None))
    flags = store or CountingStore(clock)
    app = create_app(
        Settings(admin_api_key="admin-secret", model_swap_min_seconds=0.0, **settings),
        events=events,
        decision_points=points,
        models=MemoryModelStore(),
        clock=clock,
        flags=flags,
    )
    with TestClient(app) as client:
        yield App(client, events, points, flags)


@pytest.fixture
def api() -> Iterator[App]:
    with flag_app() as running:
        yield running


def test_create_read_list_and_a_static_evaluation(api: App) -> None:
    created = api.put("checkout_layout", LAYOUT, actor="ana")

    assert created.status_code == 200
    assert (created.json()["version"], created.json()["updated_by"]) == (1, "ana")
    assert api.client.get("/v1/flags/checkout_layout", headers=ADMIN).json() == created.json()
    assert [f["key"] for f in api.client.get("/v1/flags", headers=ADMIN).json()] == [
        "checkout_layout"
    ]
    answer = api.evaluate("checkout_layout", context={"user_id": "u1"})
    assert answer == {
        "key": "checkout_layout",
        "value": "classic",
        "variant": "classic",
        "reason": "STATIC",
        "event_id": None,
        "persona": "unclassified",
        "flag_version": 1,
        "error_code": None,
        "error_message": None,
    }
    assert api.decisions() == []  # a static flag logs nothing


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"default_variant": "missing"}, "default_variant 'missing'"),
        ({"variants": {"classic": 3}}, "variant 'classic': a string flag needs a string"),
        ({"rules": [{"variant": "tabs"}]}, "rules[0]: unknown variant 'tabs'"),
        (
            {"rules": [{"rollout": [{"variant": "wizard", "weight": 120}]}]},
            "less than or equal to 100",
        ),
        ({"rules": [{"personalized": []}]}, "personalized"),
        ({"holdout_share": 1.0}, "holdout_share"),
        ({"vw_args": "--cb_adf"}, "vw_args"),
    ],
)
def test_a_bad_definition_is_refused_naming_the_problem_and_nothing_is_stored(
    api: App, change: dict[str, Any], words: str
) -> None:
    api.put("checkout_layout", LAYOUT)
    counter = api.client.portal.call(api.flags.version)  # type: ignore[union-attr]
    points = api.client.get("/v1/decision-points").json()

    refused = api.put(
        "checkout_layout", {**LAYOUT, **change, "rules": change.get("rules", [CONSULTANTS])}
    )
    new = api.put("banner", {**LAYOUT, **change})

    for response in (refused, new):
        assert response.status_code == 422, response.text
        assert words in response.json()["message"]
    assert api.client.portal.call(api.flags.version) == counter  # type: ignore[union-attr]
    assert api.client.get("/v1/flags/banner", headers=ADMIN).status_code == 404
    assert len(api.client.get("/v1/flags/checkout_layout/history", headers=ADMIN).json()) == 1
    assert api.client.get("/v1/decision-points").json() == points  # no decision point either


def test_refused_keys_and_admin_key(api: App) -> None:
    assert api.put("export", LAYOUT).status_code == 422
    assert api.put("bad key", LAYOUT).status_code in (404, 422)
    assert api.client.put("/v1/flags/checkout_layout", json=LAYOUT).status_code == 401
    assert api.client.get("/v1/flags").status_code == 401
    assert api.put("checkout_layout", LAYOUT, actor="x" * 300).status_code == 422


def test_an_unknown_flag_is_404_alone_and_an_error_entry_in_bulk(api: App) -> None:
    api.put("checkout_layout", LAYOUT)

    single = api.client.post("/v1/flags/nope/evaluate", json={})
    bulk = api.client.post("/v1/flags/evaluate", json={"keys": ["nope", "checkout_layout"]})

    assert single.status_code == 404
    assert single.json()["error"] == "flag_not_found"
    flags = bulk.json()["flags"]
    assert (flags["nope"]["reason"], flags["nope"]["error_code"]) == ("ERROR", "FLAG_NOT_FOUND")
    assert flags["checkout_layout"]["reason"] == "STATIC"
    everything = api.client.post("/v1/flags/evaluate", json={}).json()["flags"]
    assert list(everything) == ["checkout_layout"]
    no_body = api.client.post("/v1/flags/checkout_layout/evaluate")
    assert (no_body.status_code, no_body.json()["persona"]) == (200, "visitor")
    broken = api.client.post(
        "/v1/flags/evaluate", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400


def test_targeting_precedence_and_the_persona_as_decisions_resolve_it(api: App) -> None:
    api.put(
        "bulk_order_form",
        {
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "default_variant": "off",
            "rules": [
                {
                    "conditions": [{"attribute": "device", "op": "eq", "value": "kiosk"}],
                    "variant": "off",
                },
                {"personas": ["shop_owner"], "variant": "on"},
            ],
        },
    )

    owner = api.evaluate("bulk_order_form", context={"user_id": "u1"}, persona="shop_owner")
    kiosk = api.evaluate(
        "bulk_order_form",
        context={"user_id": "u1", "features": {"device": "kiosk"}},
        persona="shop_owner",
    )
    visitor = api.evaluate("bulk_order_form")

    assert (owner["value"], owner["reason"], owner["persona"]) == (
        True,
        "TARGETING_MATCH",
        "shop_owner",
    )
    assert (kiosk["value"], kiosk["reason"]) == (False, "TARGETING_MATCH")  # the first rule wins
    assert (visitor["value"], visitor["reason"], visitor["persona"]) == (
        False,
        "DEFAULT",
        "visitor",
    )


def test_a_personalized_rule_logs_an_exposure_at_the_flags_decision_point(api: App) -> None:
    api.put("checkout_layout", {**LAYOUT, "rules": [CONSULTANTS], "window_seconds": 30})

    point = api.client.get("/v1/decision-points/flag.checkout_layout").json()
    answer = api.evaluate(
        "checkout_layout", context={"user_id": "u7", "session_id": "s7"}, persona="consultant"
    )
    (logged,) = api.decisions()

    assert [a["id"] for a in point["actions"]] == ["classic", "one_page", "wizard"]
    assert (point["window_seconds"], point["baseline_share"]) == (30, 0.0)
    assert answer["reason"] == "PERSONALIZED"
    assert answer["variant"] in {"one_page", "wizard"}
    assert answer["value"] == LAYOUT["variants"][answer["variant"]]
    assert answer["event_id"] == logged.event_id
    assert logged.decision_point == "flag.checkout_layout"
    assert [a.id for a in logged.actions] == ["one_page", "wizard"]
    assert logged.actions[logged.chosen_index].id == answer["variant"]
    assert (logged.persona, logged.context.session_id) == ("consultant", "s7")
    assert logged.context.user_id != "u7"  # the pseudonym, as for decisions
    # an outcome against the exposure is accepted like any decision's
    posted = api.client.post(
        "/v1/outcomes", json={"event_id": answer["event_id"], "type": "basket_add"}
    )
    assert posted.status_code == 202, posted.text


def test_an_exposure_is_idempotent_by_event_id(api: App) -> None:
    api.put("checkout_layout", {**LAYOUT, "rules": [CONSULTANTS]})
    body = {"context": {"user_id": "u7"}, "persona": "consultant", "event_id": "exp-1"}

    first = api.evaluate("checkout_layout", **body)
    again = api.evaluate("checkout_layout", **body)
    bulk = api.client.post("/v1/flags/evaluate", json=body).json()["flags"]["checkout_layout"]
    bulk_again = api.client.post("/v1/flags/evaluate", json=body).json()["flags"]["checkout_layout"]

    assert first == again
    assert first["event_id"] == "exp-1"
    assert bulk == bulk_again
    assert bulk["event_id"] == "exp-1:checkout_layout"
    assert [d.event_id for d in api.decisions()] == ["exp-1", "exp-1:checkout_layout"]


def test_the_holdout_is_served_the_default_and_logged_with_the_real_probabilities(
    api: App,
) -> None:
    rule = {"personas": ["consultant"], "personalized": ["classic", "one_page", "wizard"]}
    api.put("checkout_layout", {**LAYOUT, "rules": [rule], "holdout_share": 0.3})

    answers = [
        api.evaluate("checkout_layout", context={"user_id": f"u{i}"}, persona="consultant")
        for i in range(400)
    ]
    decisions = api.decisions()

    held = [d for d in decisions if d.arm == "baseline"]
    assert 0.22 < len(held) / len(decisions) < 0.38
    # Every exposure is offered every variant, default first; the holdout gets the default.
    assert all([a.id for a in d.actions] == ["classic", "one_page", "wizard"] for d in decisions)
    assert all(d.chosen_action == "classic" for d in held)
    # The logged probabilities are the draw's: the holdout's share on the default on top
    # of the model's (uniform while untrained), for held-out and learned exposures alike.
    for d in decisions:
        assert sum(d.probabilities) == pytest.approx(1.0)
        assert d.probabilities[0] == pytest.approx(0.3 + 0.7 / 3)
        assert d.probabilities[1] == pytest.approx(0.7 / 3)
    assert {a["variant"] for a in answers} == {"classic", "one_page", "wizard"}
    point = api.client.get("/v1/decision-points/flag.checkout_layout").json()
    assert point["baseline_share"] == 0.3 and point["baseline"] == "first"


def test_a_sticky_rollout_is_close_to_its_split(api: App) -> None:
    rollout = {"personas": ["direct_customer"], "rollout": [{"variant": "wizard", "weight": 20}]}
    api.put("checkout_layout", {**LAYOUT, "rules": [rollout]})
    service = api.client.app.state.flags  # type: ignore[attr-defined]

    def variant(user: str) -> str:
        request = FlagEvaluationRequest(context=Context(user_id=user), persona="direct_customer")
        answer = api.client.portal.call(service.evaluate, "checkout_layout", request)  # type: ignore[union-attr]
        return str(answer.variant)

    first = {f"user-{i}": variant(f"user-{i}") for i in range(2000)}
    share = sum(v == "wizard" for v in first.values()) / len(first)

    assert 0.17 < share < 0.23
    assert all(variant(user) == v for user, v in first.items())
    over_http = [
        api.evaluate("checkout_layout", context={"user_id": user}, persona="direct_customer")
        for user in list(first)[:50]
    ]
    assert [a["variant"] for a in over_http] == list(first.values())[:50]
    assert {a["reason"] for a in over_http} == {"SPLIT", "DEFAULT"}


def test_the_kill_switch_and_the_audit_history(api: App) -> None:
    api.put("checkout_layout", LAYOUT, actor="ana")
    api.put(
        "checkout_layout",
        {**LAYOUT, "rules": [{"personas": ["consultant"], "variant": "wizard"}]},
        actor="ben",
    )

    off = api.client.post(
        "/v1/flags/checkout_layout/disable", headers={**ADMIN, "X-Actor": "oncall"}
    )
    disabled = api.evaluate("checkout_layout", persona="consultant")
    on = api.client.post("/v1/flags/checkout_layout/enable", headers=ADMIN)
    enabled = api.evaluate("checkout_layout", persona="consultant")
    history = api.client.get("/v1/flags/checkout_layout/history", headers=ADMIN).json()

    assert (off.json()["enabled"], off.json()["version"]) == (False, 3)
    assert (disabled["variant"], disabled["reason"]) == ("classic", "DISABLED")
    assert (on.json()["enabled"], on.json()["updated_by"]) == (True, "admin")
    assert (enabled["variant"], enabled["reason"]) == ("wizard", "TARGETING_MATCH")
    assert [(c["action"], c["version"], c["by"]) for c in history] == [
        ("enable", 4, "admin"),
        ("disable", 3, "oncall"),
        ("update", 2, "ben"),
        ("create", 1, "ana"),
    ]
    assert history[1]["diff"] == [{"path": "enabled", "before": True, "after": False}]
    assert history[2]["diff"][0]["path"] == "rules"
    limited = api.client.get("/v1/flags/checkout_layout/history?limit=1", headers=ADMIN).json()
    assert [c["action"] for c in limited] == ["enable"]


def test_delete_keeps_the_history_and_the_decision_point(api: App) -> None:
    api.put("checkout_layout", {**LAYOUT, "rules": [CONSULTANTS]})

    deleted = api.client.delete("/v1/flags/checkout_layout", headers=ADMIN)

    assert deleted.json() == {"key": "checkout_layout", "deleted": True}
    assert api.client.post("/v1/flags/checkout_layout/evaluate", json={}).status_code == 404
    assert api.client.get("/v1/decision-points/flag.checkout_layout").status_code == 200
    history = api.client.get("/v1/flags/checkout_layout/history", headers=ADMIN).json()
    assert [c["action"] for c in history] == ["delete", "create"]
    assert history[0]["flag"] is None
    assert api.client.delete("/v1/flags/checkout_layout", headers=ADMIN).status_code == 404
    assert api.client.get("/v1/flags/never/history", headers=ADMIN).status_code == 404


def test_evaluations_never_read_the_store_and_a_change_elsewhere_is_seen_within_a_second() -> None:
    clock = FakeClock(START)
    shared = CountingStore(clock)
    with flag_app(shared) as first, flag_app(shared) as second:
        first.put("checkout_layout", LAYOUT)
        deadline = time.monotonic() + 1.0
        while second.client.post("/v1/flags/checkout_layout/evaluate", json={}).status_code == 404:
            assert time.monotonic() < deadline, "the second app did not see the new flag"
        reads = shared.reads
        for _ in range(200):
            second.evaluate("checkout_layout")
            first.evaluate("checkout_layout")
        assert shared.reads == reads  # no change: the watchers only read the counter

        first.client.post("/v1/flags/checkout_layout/disable", headers=ADMIN)
        deadline = time.monotonic() + 1.0
        while second.evaluate("checkout_layout")["reason"] != "DISABLED":
            assert time.monotonic() < deadline, "the second app did not see the kill switch"


def test_metrics_count_evaluations_exposures_and_errors(api: App) -> None:
    api.put("checkout_layout", {**LAYOUT, "rules": [CONSULTANTS]})
    answer = api.evaluate("checkout_layout", persona="consultant")
    api.evaluate("checkout_layout", persona="visitor")
    api.client.post("/v1/flags/nope/evaluate", json={})

    text = api.client.get("/metrics").text

    variant = answer["variant"]
    assert (
        sample(
            text,
            "learnloop_flag_evaluations_total",
            flag="checkout_layout",
            variant=variant,
            reason="PERSONALIZED",
        )
        == 1
    )
    assert (
        sample(
            text,
            "learnloop_flag_evaluations_total",
            flag="checkout_layout",
            variant="classic",
            reason="DEFAULT",
        )
        == 1
    )
    assert (
        sample(
            text,
            "learnloop_flag_exposures_total",
            flag="checkout_layout",
            variant=variant,
            persona="consultant",
        )
        == 1
    )
    assert (
        sample(
            text, "learnloop_flag_evaluation_errors_total", flag="(unknown)", code="FLAG_NOT_FOUND"
        )
        == 1
    )


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a Prometheus text exposition."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


def test_flagd_export_then_import_elsewhere_evaluates_alike(api: App) -> None:
    rollout = {"personas": ["direct_customer"], "rollout": [{"variant": "wizard", "weight": 20}]}
    api.put("checkout_layout", {**LAYOUT, "rules": [CONSULTANTS, rollout], "holdout_share": 0.1})
    api.put("bulk_order_form", {**LAYOUT, "enabled": False})

    exported = api.client.get("/v1/flags/export?format=flagd", headers=ADMIN)
    assert exported.status_code == 200
    document = exported.json()
    assert set(document["flags"]) == {"checkout_layout", "bulk_order_form"}
    assert document["flags"]["bulk_order_form"]["state"] == "DISABLED"

    with flag_app() as other:
        imported = other.client.post(
            "/v1/flags/import?format=flagd", json=document, headers={**ADMIN, "X-Actor": "ci"}
        )
        assert imported.status_code == 200, imported.text
        assert {(f["key"], f["updated_by"]) for f in imported.json()} == {
            ("checkout_layout", "ci"),
            ("bulk_order_form", "ci"),
        }
        history = other.client.get("/v1/flags/checkout_layout/history", headers=ADMIN).json()
        assert [c["action"] for c in history] == ["import"]
        assert other.client.get("/v1/decision-points/flag.checkout_layout").status_code == 200
        for user in ("a", "b", "c", "d", "e", "f"):
            for persona in ("direct_customer", "shop_owner"):
                body = {"context": {"user_id": user}, "persona": persona}
                assert other.evaluate("checkout_layout", **body) == api.evaluate(
                    "checkout_layout", **body
                )
        assert other.evaluate("bulk_order_form")["reason"] == "DISABLED"


def test_a_bad_import_stores_nothing(api: App) -> None:
    api.put("checkout_layout", LAYOUT)
    counter = api.client.portal.call(api.flags.version)  # type: ignore[union-attr]
    good = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"}
    bad = {**good, "defaultVariant": "missing"}

    refused = api.client.post(
        "/v1/flags/import", json={"flags": {"banner": good, "broken": bad}}, headers=ADMIN
    )

    assert refused.status_code == 422
    assert "broken" in refused.json()["message"]
    assert api.client.portal.call(api.flags.version) == counter  # type: ignore[union-attr]
    assert api.client.get("/v1/flags/banner", headers=ADMIN).status_code == 404


def test_the_join_counts_reward_per_variant_of_flag_decision_points_only() -> None:
    """Negative rewards (penalties, Personalizer's -1...1) go into the sums too: a
    counter refused them, and the join's process crashed on the first one."""
    from prometheus_client import CollectorRegistry, generate_latest

    from join_service.metrics import JoinMetrics
    from schemas.events import JoinedExample

    def example(point: str, chosen: int, reward: float) -> JoinedExample:
        decision = DecisionEvent(
            event_id=f"{point}-{chosen}-{reward}",
            timestamp=START,
            decision_point=point,
            context=Context(),
            persona="consultant",
            actions=[Action(id="one_page"), Action(id="wizard")],
            chosen_index=chosen,
            probabilities=[0.5, 0.5],
            model_version="0",
        )
        return JoinedExample(
            event_id=decision.event_id,
            timestamp=START,
            decision=decision,
            reward=reward,
            close_reason="outcome",
        )

    registry = CollectorRegistry()
    JoinMetrics(registry).emitted(
        [
            example("flag.checkout_layout", 1, 3.0),
            example("flag.checkout_layout", 1, 1.0),
            example("flag.checkout_layout", 0, 0.0),
            example("flag.checkout_layout", 0, -0.5),  # a penalty: sums may go down
            example("home_products", 1, 3.0),
            example("home_products", 0, -1.0),
        ]
    )
    text = generate_latest(registry).decode()

    point = {"decision_point": "flag.checkout_layout"}
    assert sample(text, "learnloop_flag_reward_sum", **point, variant="wizard") == 4.0
    assert sample(text, "learnloop_flag_reward_count", **point, variant="wizard") == 2.0
    assert sample(text, "learnloop_flag_reward_sum", **point, variant="one_page") == -0.5
    assert sample(text, "learnloop_flag_reward_count", **point, variant="one_page") == 2.0
    home = {"decision_point": "home_products", "arm": "learned", "persona": "consultant"}
    assert sample(text, "learnloop_joined_reward_sum", **home) == 2.0
    assert sample(text, "learnloop_joined_reward_count", **home) == 2.0
    assert "home_products" not in {
        s.labels.get("decision_point")
        for f in text_string_to_metric_families(text)
        if f.name.startswith("learnloop_flag")
        for s in f.samples
    }


def test_the_decision_point_is_kept_in_step_with_the_flag(api: App) -> None:
    api.put("banner", LAYOUT)
    assert api.client.get("/v1/decision-points/flag.banner").status_code == 404  # not needed

    api.put("checkout_layout", {**LAYOUT, "rules": [CONSULTANTS]})
    changed = {
        **LAYOUT,
        "default_variant": "wizard",
        "rules": [CONSULTANTS],
        "holdout_share": 0.2,
        "window_seconds": 40,
        "reward_map": {"purchase": 10.0},
        "aggregation": "sum",
    }
    api.put("checkout_layout", changed)
    point = api.client.get("/v1/decision-points/flag.checkout_layout").json()
    assert [a["id"] for a in point["actions"]] == ["wizard", "classic", "one_page"]
    assert (point["baseline_share"], point["window_seconds"], point["aggregation"]) == (
        0.2,
        40,
        "sum",
    )
    assert point["reward_map"] == {"purchase": 10.0}

    api.put("checkout_layout", {**LAYOUT, "rules": []})  # no longer personalized: still in step
    point = api.client.get("/v1/decision-points/flag.checkout_layout").json()
    assert (point["baseline_share"], point["window_seconds"]) == (0.0, 20)


def test_an_exposure_that_cannot_be_logged_answers_the_default_with_reason_error() -> None:
    with flag_app(events=BrokenLog()) as api:
        api.put("checkout_layout", {**LAYOUT, "rules": [CONSULTANTS]})

        failed = api.evaluate("checkout_layout", persona="consultant")
        fine = api.evaluate("checkout_layout", persona="visitor")
        bulk = api.client.post("/v1/flags/evaluate", json={"persona": "consultant"}).json()

        assert (failed["value"], failed["reason"], failed["error_code"]) == (
            "classic",
            "ERROR",
            "GENERAL",
        )
        assert "unreachable" in failed["error_message"]
        assert failed["event_id"] is None
        assert fine["reason"] == "DEFAULT"
        assert bulk["flags"]["checkout_layout"]["reason"] == "ERROR"
        text = api.client.get("/metrics").text
        errors = sample(
            text, "learnloop_flag_evaluation_errors_total", flag="checkout_layout", code="GENERAL"
        )
        assert errors == 2
