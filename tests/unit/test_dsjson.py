"""DSJson export: VW's own parser reads our lines and learns from them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import vowpalwabbit

from schemas import DecisionEvent, JoinedExample
from schemas.dsjson import to_dsjson

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)


def joined(event_id: str, page: str, chosen: int, reward: float) -> JoinedExample:
    decision = DecisionEvent(
        event_id=event_id,
        timestamp=T0,
        decision_point="home_products",
        context={"session_id": "s1", "features": {"page": page, "geo": {"region": "eu"}, "n": 2}},
        persona="builder",
        actions=[{"id": "category1"}, {"id": "bestsellers", "features": {"new": True}}],
        chosen_index=chosen,
        probabilities=[0.3, 0.7],
        model_version="4",
    )
    return JoinedExample(
        event_id=event_id, timestamp=T0, decision=decision, reward=reward, close_reason="outcome"
    )


def test_dsjson_fields_follow_vw_conventions() -> None:
    line = json.loads(to_dsjson(joined("e1", "home", chosen=0, reward=3.0)))
    assert line["_label_cost"] == -3.0
    assert line["_label_probability"] == 0.3
    assert line["_label_Action"] == 1 and line["_labelIndex"] == 0
    assert line["a"] == [1, 2] and line["p"] == [0.3, 0.7]
    assert line["EventId"] == "e1" and line["Timestamp"] == "2026-03-01T09:00:00Z"
    assert line["c"]["c"] == {"page": "home", "geo.region": "eu", "n": 2}
    assert line["c"]["_multi"][1] == {"a": {"id": "bestsellers", "new": True}}
    chosen_second = json.loads(to_dsjson(joined("e2", "home", chosen=1, reward=0.0)))
    assert chosen_second["a"] == [2, 1] and chosen_second["p"] == [0.7, 0.3]
    assert chosen_second["_label_Action"] == 2


def test_vowpalwabbit_parses_and_learns_from_dsjson() -> None:
    ws = vowpalwabbit.Workspace("--cb_explore_adf --dsjson --epsilon 0.1 -q ca --quiet")
    # On page "home" bestsellers pays, on page "cart" category1 pays.
    for i in range(300):
        page = "home" if i % 2 else "cart"
        chosen = i % 4 // 2
        good = (page == "home") == (chosen == 1)
        ws.learn(to_dsjson(joined(f"e{i}", page, chosen, 3.0 if good else 0.0)))
    assert ws.get_weighted_examples() == 300  # every line parsed as one example
    home = ws.predict(to_dsjson(joined("q1", "home", 0, 0.0)))
    cart = ws.predict(to_dsjson(joined("q2", "cart", 0, 0.0)))
    assert home[1] > 0.9 and cart[0] > 0.9
