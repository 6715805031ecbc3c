"""LearnloopProvider under the real openfeature-sdk, against a fake learnloop (MockTransport).

Proves the mapping both ways: an OpenFeature evaluation context becomes learnloop's
request (targeting key, session, persona, features); learnloop's value, variant and
reason come back in OpenFeature's details, with the exposure's ``event_id`` in the
flag metadata; every failure becomes its OpenFeature error code with the caller's
default; the bulk prefetch serves a page per context for ``cache_ttl`` (fake clock);
``track`` posts outcomes attributed to the context's exposures or its session.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from learnloop_client import AsyncLearnloopClient, LearnloopClient
from learnloop_client.openfeature import LearnloopProvider
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.track import TrackingEventDetails

BASE = "http://learnloop.test"
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
FLAGS: dict[str, tuple[Any, str | None, str]] = {  # key -> value, variant, reason
    "new_search": (True, "on", "STATIC"),
    "checkout_layout": ("two_step", "two_step", "PERSONALIZED"),
    "bulk_order_form": ("table", "table", "TARGETING_MATCH"),
    "page_size": (24, "large", "SPLIT"),
    "discount_rate": (3, "low", "DEFAULT"),
    "ratio": (2.5, "half", "STATIC"),
    "banner": ({"color": "red", "items": [1, 2]}, "red", "DISABLED"),
}


class FakeLearnloop:
    """The flag and outcome routes as the API documents them, counting every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.outcomes: list[dict[str, Any]] = []
        self.exposures = 0
        self.status: int | None = None  # answer every request with this error status

    def evaluation(self, key: str) -> dict[str, Any]:
        if key == "broken_flag":
            return {"key": key, "reason": "STATIC"}  # no value: unreadable
        if key == "failing_flag":
            return {
                "key": key,
                "value": None,
                "variant": None,
                "reason": "ERROR",
                "persona": "visitor",
                "error_code": "GENERAL",
                "error_message": "boom",
            }
        value, variant, reason = FLAGS[key]
        out = {
            "key": key,
            "value": value,
            "variant": variant,
            "reason": reason,
            "persona": "consultant",
            "flag_version": 2,
        }
        if reason == "PERSONALIZED":
            self.exposures += 1
            out["event_id"] = f"x{self.exposures}"
        return out

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status is not None:
            return httpx.Response(self.status, json={"error": "unauthorized", "message": "key"})
        body = json.loads(request.content)
        path = request.url.path
        if path == "/v1/outcomes":
            self.outcomes.extend(body)
            return httpx.Response(202, json={"accepted": len(body), "duplicates": 0})
        if path == "/v1/flags/evaluate":
            keys = body.get("keys") or list(FLAGS)
            flags = {}
            for key in keys:
                if key in FLAGS:
                    flags[key] = self.evaluation(key)
                else:
                    flags[key] = {
                        "key": key,
                        "value": None,
                        "variant": None,
                        "reason": "ERROR",
                        "persona": "visitor",
                        "error_code": "FLAG_NOT_FOUND",
                    }
            return httpx.Response(200, json={"flags": flags})
        key = path.removeprefix("/v1/flags/").removesuffix("/evaluate")
        if key == "garbled_flag":
            return httpx.Response(200, content=b"<html>")
        if key not in FLAGS and key not in ("broken_flag", "failing_flag"):
            return httpx.Response(404, json={"error": "flag_not_found", "message": f"no {key}"})
        return httpx.Response(200, json=self.evaluation(key))

    def paths(self) -> Counter[str]:
        return Counter(r.url.path for r in self.requests)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeLearnloop:
    return FakeLearnloop()


def provider_for(fake: FakeLearnloop, **options: Any) -> LearnloopProvider:
    transport = httpx.MockTransport(fake.handle)
    return LearnloopProvider(
        client=LearnloopClient(BASE, transport=transport),
        async_client=AsyncLearnloopClient(BASE, transport=transport),
        **options,
    )


def openfeature_client(provider: LearnloopProvider) -> OpenFeatureClient:
    api.set_provider(provider)
    return api.get_client("test")


@pytest.fixture(autouse=True)
def _clean_api() -> Any:
    yield
    api.clear_providers()


CONTEXT = EvaluationContext("u1", {"session_id": "s1", "page": "cart"})


def test_metadata_names_learnloop(fake: FakeLearnloop) -> None:
    assert provider_for(fake).get_metadata().name == "learnloop"
    with pytest.raises(ValueError, match="base_url"):
        LearnloopProvider()


def test_each_resolver_answers_value_variant_and_reason(fake: FakeLearnloop) -> None:
    client = openfeature_client(provider_for(fake))
    cases: list[tuple[Any, ...]] = [
        (client.get_boolean_details, "new_search", False, True, "on", Reason.STATIC),
        (
            client.get_string_details,
            "bulk_order_form",
            "form",
            "table",
            "table",
            Reason.TARGETING_MATCH,
        ),
        (client.get_integer_details, "page_size", 12, 24, "large", Reason.SPLIT),
        (client.get_float_details, "discount_rate", 0.0, 3.0, "low", Reason.DEFAULT),
        (client.get_float_details, "ratio", 0.0, 2.5, "half", Reason.STATIC),
        (
            client.get_object_details,
            "banner",
            {},
            {"color": "red", "items": [1, 2]},
            "red",
            Reason.DISABLED,
        ),
    ]
    for resolve, key, default, value, variant, reason in cases:
        details = resolve(key, default, CONTEXT)
        assert (details.value, details.variant, details.reason) == (value, variant, reason), key
        assert details.error_code is None
        assert details.flag_metadata == {"persona": "consultant", "flag_version": 2}
    assert isinstance(client.get_float_value("discount_rate", 0.0, CONTEXT), float)


def test_a_personalized_flag_carries_its_exposure_in_the_metadata(fake: FakeLearnloop) -> None:
    provider = provider_for(fake)
    details = openfeature_client(provider).get_string_details("checkout_layout", "one", CONTEXT)
    assert (details.value, details.variant) == ("two_step", "two_step")
    assert details.reason == "PERSONALIZED"  # not an OpenFeature reason: passed as a string
    assert details.flag_metadata["event_id"] == "x1"
    assert provider.exposures(CONTEXT) == {"checkout_layout": "x1"}


def test_the_evaluation_context_becomes_learnloops_request(fake: FakeLearnloop) -> None:
    context = EvaluationContext(
        "u7",
        {
            "session_id": "s7",
            "persona": "shop_owner",
            "timestamp": T0,
            "device": "mobile",
            "cart_items": 3,
            "geo": {"region": "eu", "deep": {"x": 1}},
            "tags": ["a", "b"],
            "seen_at": T0,
        },
    )
    openfeature_client(provider_for(fake)).get_boolean_value("new_search", False, context)
    assert fake.body() == {
        "context": {
            "user_id": "u7",
            "session_id": "s7",
            "features": {
                "device": "mobile",
                "cart_items": 3,
                "geo": {"region": "eu"},
                "seen_at": "2026-05-01T12:00:00+00:00",
            },
        },
        "persona": "shop_owner",
        "timestamp": "2026-05-01T12:00:00+00:00",
    }


ERRORS = [
    ("get_boolean_details", "no_such_flag", False, ErrorCode.FLAG_NOT_FOUND),
    ("get_boolean_details", "bulk_order_form", False, ErrorCode.TYPE_MISMATCH),  # a string
    ("get_integer_details", "new_search", 7, ErrorCode.TYPE_MISMATCH),  # a bool is no integer
    ("get_integer_details", "ratio", 7, ErrorCode.TYPE_MISMATCH),  # 2.5 is no integer
    ("get_string_details", "page_size", "d", ErrorCode.TYPE_MISMATCH),
    ("get_object_details", "new_search", {"d": 1}, ErrorCode.TYPE_MISMATCH),
    ("get_string_details", "broken_flag", "d", ErrorCode.PARSE_ERROR),
    ("get_string_details", "garbled_flag", "d", ErrorCode.PARSE_ERROR),
    ("get_string_details", "failing_flag", "d", ErrorCode.GENERAL),
]


@pytest.mark.parametrize(("method", "key", "default", "code"), ERRORS)
async def test_failures_map_to_openfeature_codes_and_return_the_default(
    fake: FakeLearnloop, method: str, key: str, default: Any, code: ErrorCode
) -> None:
    client = openfeature_client(provider_for(fake))
    for details in (
        getattr(client, method)(key, default, CONTEXT),
        await getattr(client, method + "_async")(key, default, CONTEXT),
    ):
        assert (details.value, details.reason, details.error_code) == (default, Reason.ERROR, code)
        assert details.error_message


async def test_an_unreachable_or_refusing_server_is_general_with_the_default(
    fake: FakeLearnloop,
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    down = LearnloopProvider(
        client=LearnloopClient(BASE, transport=httpx.MockTransport(refuse)),
        async_client=AsyncLearnloopClient(BASE, transport=httpx.MockTransport(refuse)),
    )
    client = openfeature_client(down)
    assert client.get_boolean_details("new_search", True).error_code == ErrorCode.GENERAL
    assert client.get_boolean_value("new_search", True) is True
    assert await client.get_string_value_async("bulk_order_form", "form") == "form"

    fake.status = 401
    refusing = openfeature_client(provider_for(fake))
    details = refusing.get_string_details("bulk_order_form", "form", CONTEXT)
    assert (details.value, details.error_code) == ("form", ErrorCode.GENERAL)
    assert "unauthorized" in (details.error_message or "")


def test_prefetch_asks_once_per_context_and_ttl(fake: FakeLearnloop) -> None:
    clock = FakeClock()
    provider = provider_for(fake, prefetch=True, cache_ttl=30.0, clock=clock)
    client = openfeature_client(provider)
    first = client.get_string_details("checkout_layout", "one", CONTEXT)
    again = client.get_string_details("checkout_layout", "one", CONTEXT)
    assert client.get_boolean_value("new_search", False, CONTEXT) is True
    assert client.get_integer_value("page_size", 0, CONTEXT) == 24
    assert fake.paths() == {"/v1/flags/evaluate": 1}
    assert "cached" not in first.flag_metadata and again.flag_metadata["cached"] is True
    # the cached personalized answer keeps the exposure logged when the page was fetched
    assert first.flag_metadata["event_id"] == again.flag_metadata["event_id"] == "x1"
    assert fake.exposures == 1

    other = EvaluationContext("u2", {"session_id": "s2", "page": "cart"})
    client.get_boolean_value("new_search", False, other)
    assert fake.paths() == {"/v1/flags/evaluate": 2}

    clock.now += 30.0  # the page expired: the next resolve fetches a new one
    assert client.get_boolean_value("new_search", False, CONTEXT) is True
    assert fake.paths() == {"/v1/flags/evaluate": 3}

    # a key the page does not hold is asked for alone (it may be new): 404 -> not found
    missing = client.get_boolean_details("no_such_flag", False, CONTEXT)
    assert missing.error_code == ErrorCode.FLAG_NOT_FOUND
    assert fake.paths()["/v1/flags/no_such_flag/evaluate"] == 1


async def test_async_prefetch_shares_the_page(fake: FakeLearnloop) -> None:
    client = openfeature_client(provider_for(fake, prefetch=True))
    assert await client.get_boolean_value_async("new_search", False, CONTEXT) is True
    assert await client.get_float_value_async("ratio", 0.0, CONTEXT) == 2.5
    assert client.get_integer_value("page_size", 0, CONTEXT) == 24
    assert fake.paths() == {"/v1/flags/evaluate": 1}


def test_track_posts_an_outcome_for_each_exposure_of_the_context(fake: FakeLearnloop) -> None:
    provider = provider_for(fake)
    client = openfeature_client(provider)
    client.get_string_value("checkout_layout", "one", CONTEXT)
    client.get_boolean_value("new_search", False, CONTEXT)  # static: no exposure
    # the same user and session, other page features: the same exposures
    later = EvaluationContext("u1", {"session_id": "s1", "page": "thanks"})
    client.track("purchase", later, TrackingEventDetails(value=42.0))
    assert fake.outcomes == [{"type": "purchase", "event_id": "x1", "value": 42.0}]

    api.set_evaluation_context(EvaluationContext())
    client.get_string_value("checkout_layout", "one", EvaluationContext("u9"))
    details = TrackingEventDetails(value=1.0, attributes={"flag_key": "other_flag"})
    client.track("click", EvaluationContext("u9", {"session_id": "s9"}), details)
    # u9 had an exposure in no session; in session s9 none: attributed by session
    assert fake.outcomes[-1] == {"type": "click", "session_id": "s9", "value": 1.0}
    client.track(
        "click",
        EvaluationContext("u9"),
        TrackingEventDetails(value=1.0, attributes={"timestamp": T0.isoformat()}),
    )
    assert fake.outcomes[-1] == {
        "type": "click",
        "event_id": "x2",
        "value": 1.0,
        "timestamp": "2026-05-01T12:00:00+00:00",
    }


def test_track_with_nothing_to_attribute_or_a_failing_server_does_not_raise(
    fake: FakeLearnloop, caplog: pytest.LogCaptureFixture
) -> None:
    client = openfeature_client(provider_for(fake))
    with caplog.at_level(logging.WARNING):
        client.track("purchase", EvaluationContext("nobody"))
        assert fake.requests == []
        fake.status = 401
        client.track("purchase", EvaluationContext("u1", {"session_id": "s1"}))
    messages = [r.getMessage() for r in caplog.records]
    assert any("nothing to attribute" in m for m in messages)
    assert any("not recorded" in m for m in messages)


async def test_shutdown_closes_only_the_clients_the_provider_built(fake: FakeLearnloop) -> None:
    given = provider_for(fake)
    given.shutdown()
    await given.aclose()
    assert given.resolve_boolean_details("new_search", False).value is True  # still usable
    built = LearnloopProvider(BASE)
    sync_client, async_client = built._sync(), built._async()
    await built.aclose()
    assert sync_client._http.is_closed and async_client._http.is_closed
