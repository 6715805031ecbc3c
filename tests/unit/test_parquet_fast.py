"""The replay's trusted fast reader of learnloop Parquet datasets gives exactly what the
validated path gives (lines, labels, numbers, summary, evaluation) on every row, and
refuses a file whose column types were changed."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from devtools.simulator.logged import logged_examples
from learnloop.errors import InvalidInput
from learnloop.featurizer import action_line, action_line_of, shared_line, shared_line_of
from offline_learner.candidates import Candidate, Uniform, VWCandidate
from offline_learner.dataset import Dataset
from offline_learner.datasets.parquet_fast import JsonFeaturizer, source_of
from offline_learner.datasets.summary import SummaryAccumulator
from offline_learner.replay import evaluate
from offline_learner.replay_feed import Batch, batches, fast_batches
from schemas.events import DecisionEvent, JoinedExample
from schemas.features import Action, Context

START = datetime(2026, 3, 1, tzinfo=UTC)

CONTEXTS: list[dict[str, object]] = [
    {"page": "home", "hour": 9},
    {"page": "cart", "flag": True, "one": 1, "one_f": 1.0, "zero": -0.0},
    {"geo": {"region": "eu", "vip": False, "n": 3}, "page": "a b|c:d"},
    {},
    {"big": 1e16, "small": 1e-7, "neg": -2.5, "text": "1"},
]
ACTIONS: list[list[Action]] = [
    [Action(id="a"), Action(id="b", features={"new": True})],
    [Action(id="x", features={"price": 10, "sale": 0.5, "tag": "hot deal"}), Action(id="y")],
    [Action(id="a"), Action(id="b", features={"new": 1})],
]


def _varied(n: int) -> list[JoinedExample]:
    """Examples over two decision points and days, with nested, boolean, int and float
    features, inactive rows and several logging pmfs."""
    rows = []
    for i in range(n):
        actions = ACTIONS[i % len(ACTIONS)]
        pmf = [0.25, 0.75] if i % 2 else [0.5, 0.5]
        when = START + timedelta(hours=5 * i)
        decision = DecisionEvent(
            event_id=f"e{i}",
            timestamp=when,
            decision_point="home" if i % 5 else "cart",
            context=Context(user_id=f"u{i % 4}", features=CONTEXTS[i % len(CONTEXTS)]),
            persona=("visitor", "builder", "odd persona")[i % 3],
            actions=actions,
            chosen_index=i % 2,
            probabilities=pmf,
            model_version="1",
            activated=i % 7 != 3,
        )
        rows.append(
            JoinedExample(
                event_id=f"e{i}",
                timestamp=when + timedelta(seconds=20),
                decision=decision,
                reward=float(i % 3) - 0.5,
                close_reason=("default", "outcome")[i % 2],
            )
        )
    return rows


def _both(dataset: Dataset, size: int = 64, skip: int = 0) -> tuple[list[Batch], list[Batch]]:
    source = source_of(dataset)
    assert source is not None
    validated, fast = SummaryAccumulator("s"), SummaryAccumulator("s")
    rows = iter(dataset)
    for example in itertools.islice(rows, skip):
        validated.add(example)
    slow = list(batches(rows, size, summary=validated))
    quick = list(fast_batches(source, size, skip=skip, summary=fast))
    assert fast.result() == validated.result()
    return slow, quick


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    path = tmp_path_factory.mktemp("fast") / "shop"
    Dataset.from_examples(lambda: logged_examples(3000, seed=3)).write_parquet(path)
    return Dataset.from_parquet(path, batch_size=1000)


@pytest.fixture(scope="module")
def varied(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    path = tmp_path_factory.mktemp("fast") / "varied"
    Dataset.from_examples(_varied(300)).write_parquet(path, row_group_size=50)
    return Dataset.from_parquet(path, batch_size=37)


@pytest.mark.parametrize("skip", [0, 100, 1000])
def test_the_shops_rows_equal_the_validated_path(shop: Dataset, skip: int) -> None:
    slow, quick = _both(shop, size=512, skip=skip)
    assert sum(b.read for b in quick) == 3000 - skip
    assert quick == slow  # lines, labels, rewards, propensities, pmfs, ids, times


def test_varied_features_equal_the_validated_path(varied: Dataset) -> None:
    slow, quick = _both(varied)
    assert quick == slow
    lines = [line for b in quick for example in b.lines for line in example]
    # True and 1 stay apart, nesting is flattened, unsafe characters are escaped
    assert "|a id=b new=true" in lines and "|a id=b new:1.0" in lines
    assert any("flag=true one:1.0 one_f:1.0 zero:-0.0" in line for line in lines)
    assert any("geo.region=eu geo.vip=false geo.n:3.0 page=a_b/c;d" in line for line in lines)
    assert any(line.endswith("|u persona=odd_persona") for line in lines)


def test_filtered_datasets_equal_the_validated_path(varied: Dataset) -> None:
    directory = Path(str(varied.source).removeprefix("parquet:"))
    start, end = START + timedelta(days=10), START + timedelta(days=40)
    for dataset in (
        Dataset.from_parquet(directory, decision_point="home", start=start, end=end),
        Dataset.from_parquet(directory, start=start),
        Dataset.from_parquet(directory, end=end),
    ):
        slow, quick = _both(dataset)
        assert quick == slow and sum(b.read for b in quick) > 0


def test_only_a_plain_parquet_dataset_takes_the_fast_path(varied: Dataset) -> None:
    assert source_of(varied) is not None
    assert source_of(varied.take(10)) is None
    assert source_of(varied.filter("home")) is None
    assert source_of(Dataset.from_examples(_varied(3))) is None
    assert source_of(_varied(3)) is None


@pytest.mark.parametrize("pipeline", [False, True])
def test_the_evaluation_is_the_validated_paths(shop: Dataset, pipeline: bool) -> None:
    candidates: list[Candidate] = [
        VWCandidate("vw", "--cb_explore_adf --epsilon 0.05 -q ca"),
        Uniform(),
    ]
    estimators = ("IPS", "SNIPS", "DM", "DR", "SNDR")
    # a list is always read through the models (the validated path), in-process
    validated = evaluate(list(shop), candidates, estimators=estimators)
    fast = evaluate(shop, candidates, estimators=estimators, pipeline=pipeline)
    assert fast.to_dict() == validated.to_dict()


def test_a_file_with_changed_column_types_is_refused(tmp_path: Path) -> None:
    Dataset.from_examples(_varied(20)).write_parquet(tmp_path / "ds")
    (file, *_) = sorted((tmp_path / "ds").rglob("*.parquet"))
    table = pq.read_table(file)
    index = table.schema.get_field_index("chosen_index")
    changed = table.set_column(index, "chosen_index", table["chosen_index"].cast(pa.int64()))
    pq.write_table(changed, file)
    source = source_of(Dataset.from_parquet(tmp_path / "ds"))
    assert source is not None
    with pytest.raises(InvalidInput, match="column chosen_index is int64, learnloop writes int32"):
        list(fast_batches(source))


def test_other_names_for_the_same_types_are_read(tmp_path: Path) -> None:
    # Another writer may call a list's item "element" or spell UTC "+00:00": same data.
    Dataset.from_examples(_varied(40)).write_parquet(tmp_path / "ds")
    expected = list(batches(_varied(40)))
    for file in (tmp_path / "ds").rglob("*.parquet"):
        table = pq.read_table(file)
        fields = [
            pa.field(f.name, pa.list_(pa.field("element", f.type.value_type)))
            if pa.types.is_list(f.type)
            else pa.field(f.name, pa.timestamp("us", tz="+00:00"))
            if pa.types.is_timestamp(f.type)
            else f
            for f in table.schema
        ]
        pq.write_table(table.cast(pa.schema(fields)), file)
    source = source_of(Dataset.from_parquet(tmp_path / "ds"))
    assert source is not None
    got = list(fast_batches(source))
    assert sum(b.read for b in got) == 40
    # the rows come back in partition order: compare them as sets of lines
    assert sorted(map(tuple, (ex for b in got for ex in b.labelled))) == sorted(
        map(tuple, (ex for b in expected for ex in b.labelled))
    )


def test_a_file_without_a_needed_column_is_refused(tmp_path: Path) -> None:
    Dataset.from_examples(_varied(20)).write_parquet(tmp_path / "ds")
    for file in (tmp_path / "ds").rglob("*.parquet"):
        pq.write_table(pq.read_table(file).drop_columns(["actions_json"]), file)
    source = source_of(Dataset.from_parquet(tmp_path / "ds"))
    assert source is not None
    with pytest.raises(InvalidInput, match="lacks the column actions_json"):
        list(fast_batches(source))


@pytest.mark.parametrize("features", CONTEXTS)
def test_one_featurizer_for_models_and_dicts(features: dict[str, object]) -> None:
    context = Context.model_validate({"features": features})
    assert shared_line(context, "visitor") == shared_line_of(context.features, "visitor")
    for actions in ACTIONS:
        for action in actions:
            assert action_line(action) == action_line_of(action.id, action.features)


def test_the_json_featurizer_remembers_lines_within_its_bound() -> None:
    cached = JsonFeaturizer(max_size=2)
    texts = ['{"a": 1.0}', '{"a": true}', '{"a": 1}', '{"a": 1.0}']
    lines = [cached.shared("p", text) for text in texts]
    assert lines == [
        "shared |c a:1.0 |u persona=p",
        "shared |c a=true |u persona=p",
        "shared |c a:1 |u persona=p",
        "shared |c a:1.0 |u persona=p",
    ]
    ids, action_lines = cached.actions('[{"id": "a", "features": {"new": true}}, {"id": "b"}]')
    assert ids == ("a", "b") and action_lines == ["|a id=a new=true", "|a id=b"]
