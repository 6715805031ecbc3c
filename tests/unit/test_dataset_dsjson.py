"""DSJson import: VW's CB DSJson, a Personalizer-style log, learnloop's own export."""

from __future__ import annotations

from pathlib import Path

import pytest

from learnloop.errors import InvalidInput
from learnloop.featurizer import training_example
from offline_learner.dataset import Dataset
from tests.unit.dataset_examples import examples

DATA = Path(__file__).parents[1] / "data" / "offline"


def test_vw_cb_dsjson() -> None:
    rows = list(Dataset.from_dsjson(DATA / "vw_cb.dsjson", decision_point="news"))
    assert [r.event_id for r in rows] == ["vw_cb-1", "vw_cb-2", "vw_cb-4"]  # line 3 is blank
    first = rows[0].decision
    assert first.decision_point == "news" and first.persona == "unclassified"
    assert first.context.features == {"GUser": {"id": "anna", "tod": "morning"}, "device": "mobile"}
    assert [a.id for a in first.actions] == ["action-1", "action-2", "action-3"]
    assert first.actions[1].features == {"TAction.topic": "politics"}
    assert first.chosen_index == 1 and first.chosen_action == "action-2"
    # p is aligned through a (1-based, chosen first): a=[2,1,3], p=[0.7,0.2,0.1]
    assert first.probabilities == [0.2, 0.7, 0.1]
    assert [r.reward for r in rows] == [1.0, 0.0, 0.5]  # reward = -cost
    # no ``p``: the logged propensity at the chosen action, the others share the rest
    assert rows[2].decision.probabilities == [0.25, 0.75]
    # ids from an ``id`` feature; arrays flatten to indexed names
    assert [a.id for a in rows[2].decision.actions] == ["a-x", "a-y"]
    assert rows[2].decision.context.features["GUser"] == {"id": "anna", "emb.0": 0.5, "emb.1": 1.5}
    # the featurizer writes foreign namespaces as c features named namespace.feature
    lines = training_example(first, rows[0].reward)
    assert (
        lines[0]
        == "shared |c GUser.id=anna GUser.tod=morning device=mobile |u persona=unclassified"
    )
    assert lines[2] == "0:-1.0:0.7 |a id=action-2 TAction.topic=politics"


def test_personalizer_log() -> None:
    path = DATA / "personalizer.json"
    learnable = list(Dataset.from_dsjson(path, decision_point="pets"))
    everything = list(Dataset.from_dsjson(path, decision_point="pets", include_skipped=True))
    assert len(learnable) == 2 and len(everything) == 3
    skipped = everything[1]
    assert skipped.event_id == "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    assert skipped.decision.activated is False
    first = learnable[0]
    decision = first.decision
    assert decision.timestamp.isoformat() == "2020-02-11T09:15:30.123456+00:00"
    assert decision.model_version == "e11c2f9a/0b7d"
    assert [a.id for a in decision.actions] == ["Cats", "Dogs___Puppies", "Birds"]  # from _tag
    assert decision.actions[0].features == {
        "i.constant": 1.0,
        "i.id": "Cats",
        "j.breed": "siamese",
        "j.age": 2.0,
    }
    # arrays of objects merge into one namespace; deeper objects get dotted names
    assert decision.context.features == {
        "FromUrl": {"weekday": "tuesday", "season": "winter"},
        "user": {"profile": "returning", "location.country": "no"},
    }
    # _label_probability (sampling rate applied) wins at the chosen action
    assert decision.chosen_index == 0 and decision.probabilities == [0.45, 0.05, 0.05]
    assert first.reward == 1.0 and first.close_reason == "outcome"
    assert [(o.outcome_id, o.value) for o in first.outcomes] == [(first.event_id, 1.0)]
    # an ActionTaken entry is an activation, not an outcome
    assert [o.value for o in learnable[1].outcomes] == [0.5]
    assert learnable[1].reward == 0.5 and learnable[1].decision.chosen_action == "Dogs___Puppies"
    assert learnable[1].decision.probabilities == [0.05, 0.9, 0.05]


def test_learnloop_export_round_trip(tmp_path: Path) -> None:
    source = Dataset.from_examples(examples(12))
    assert source.write_dsjson(tmp_path / "out.dsjson") == 12
    back = list(Dataset.from_dsjson(tmp_path / "out.dsjson", decision_point="home"))
    assert len(back) == 12
    for original, read in zip(source, back, strict=True):
        o, r = original.decision, read.decision
        assert r.event_id == o.event_id and r.timestamp == o.timestamp
        assert r.context.features == o.context.features
        assert (r.persona, r.actions, r.chosen_index) == (o.persona, o.actions, o.chosen_index)
        assert r.probabilities == o.probabilities and r.model_version == o.model_version
        assert read.reward == original.reward
        assert [x.value for x in read.outcomes] == [x.value for x in original.outcomes]
        # the point of it all: the same VW lines for training offline as online
        assert training_example(r, read.reward) == training_example(o, original.reward)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: not a JSON line"),
        ('{"_label_cost": 1}', "line 2: no 'c' object"),
        ('{"c": {"_multi": []}}', "'c._multi' must be a non-empty list"),
        ('{"c": {"_multi": [{"x": 1}], "_slots": [{}]}}', "slates DSJson are not supported"),
        ('{"c": {"_multi": [{"a": {"x": 1}}]}, "_labelIndex": 3, "p": [1]}', "is not one of the 1"),
        ('{"c": {"_multi": [{"a": {"x": 1}}]}, "_labelIndex": 0}', "no logging propensity"),
        ('{"c": {"_multi": [{"x": 1}]}, "_labelIndex": 0, "_label_probability": 0}', "not in"),
        ('{"c": {"_multi": [{"x": 1}]}, "a": [1], "p": [1], "Timestamp": "soon"}', "ISO 8601"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    good = (DATA / "vw_cb.dsjson").read_text().splitlines()[0]
    path = tmp_path / "bad.dsjson"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(InvalidInput, match=message) as info:
        list(Dataset.from_dsjson(path))
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no DSJson file"):
        Dataset.from_dsjson(tmp_path / "nope.json")
