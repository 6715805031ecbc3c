"""Feature importance by ablation: discovery, the ablated featurizing, the payload, and a
seeded log whose best action depends on ``page`` only (so ``page`` matters, noise not)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from learnloop.errors import InvalidInput
from offline_learner.importance import (
    ABLATED_PERSONA,
    Ablation,
    ablations,
    discover_features,
    importance,
)
from schemas.events import DecisionEvent, JoinedExample
from schemas.features import Action, Context

START = datetime(2026, 11, 2, 8, tzinfo=UTC)
PAGES = ("home", "cart", "search")
ACTIONS = [Action(id=f"a{i}", features={"kind": f"k{i}"}) for i in range(3)]
VW_ARGS = "--cb_explore_adf --epsilon 0.1 -q ca -q ua"


def shop_log(n: int, seed: int, extra: dict[str, object] | None = None) -> list[JoinedExample]:
    """A uniform-random logging policy over three actions; the page's action (home: a0,
    cart: a1, search: a2) earns 1 with probability 0.8, any other 0.2. ``noise`` and
    the nested ``geo`` group, and the persona, are drawn independently of the reward."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        page = rng.randrange(3)
        features: dict[str, object] = {
            "page": PAGES[page],
            "noise": f"n{rng.randrange(5)}",
            "geo": {"region": rng.choice(("eu", "us"))},
            **(extra or {}),
        }
        chosen = rng.randrange(3)
        reward = float(rng.random() < (0.8 if chosen == page else 0.2))
        when = START + timedelta(seconds=10 * i)
        decision = DecisionEvent(
            event_id=f"d{i}",
            timestamp=when,
            decision_point="homepage",
            context=Context(features=features),
            persona=rng.choice(("builder", "browser")),
            actions=ACTIONS,
            chosen_index=chosen,
            probabilities=[1 / 3] * 3,
            model_version="logging",
        )
        out.append(
            JoinedExample(
                event_id=f"d{i}",
                timestamp=when + timedelta(seconds=20),
                decision=decision,
                reward=reward,
                close_reason="outcome" if reward else "default",
            )
        )
    return out


@pytest.mark.parametrize(
    ("cut", "features", "persona", "expected_features", "expected_persona"),
    [
        (Ablation("c", "namespace"), {"page": "home", "geo": {"r": "eu"}}, "p", {}, "p"),
        (Ablation("u", "namespace"), {"page": "home"}, "p", {"page": "home"}, ABLATED_PERSONA),
        (
            Ablation("geo", "feature"),
            {"page": "home", "geo": {"r": "eu"}},
            "p",
            {"page": "home"},
            "p",
        ),
        (Ablation("hour", "feature"), {"page": "home"}, "p", {"page": "home"}, "p"),
    ],
)
def test_an_ablation_removes_exactly_its_group(
    cut: Ablation,
    features: dict[str, object],
    persona: str,
    expected_features: dict[str, object],
    expected_persona: str,
) -> None:
    assert cut.features(features) == expected_features
    assert cut.persona(persona) == expected_persona


def test_discovery_counts_top_level_keys_and_caps_to_the_most_frequent() -> None:
    log = shop_log(20, seed=1) + shop_log(5, seed=2, extra={"hour": 9, "device": "ios"})
    found = discover_features(log)
    assert found.groups[:3] == ["geo", "noise", "page"]  # 25 each, ties by name
    assert found.counts == {"geo": 25, "noise": 25, "page": 25, "device": 5, "hour": 5}
    capped = discover_features(log, limit=2)
    assert capped.groups == ["geo", "noise"] and capped.seen == 5


def test_bad_arguments_are_refused_with_what_to_do() -> None:
    log = shop_log(10, seed=1)
    with pytest.raises(InvalidInput, match="not offered"):
        importance(log, VW_ARGS, primary="MIPS")
    with pytest.raises(InvalidInput, match="--cb_explore_adf"):
        importance(log, "--cb_adf", features=["page"])
    with pytest.raises(InvalidInput, match="'a' is what the policy chooses"):
        ablations(["page"], namespaces=["a"])
    with pytest.raises(InvalidInput, match="at least 2"):
        importance([], VW_ARGS, features=["page"])


@pytest.fixture(scope="module")
def result():  # type: ignore[no-untyped-def]
    return importance(iter(shop_log(3000, seed=7)), VW_ARGS)


def test_the_feature_the_reward_depends_on_matters_and_noise_does_not(result) -> None:  # type: ignore[no-untyped-def]
    page, context = result.drop_of("page"), result.drop_of("c")
    # Without page the best the policy can do is 0.4 a decision; with it, about 0.75.
    assert page.lower > 0.25, page
    assert context.lower > 0.25, context
    for noise in ("noise", "geo", "u"):
        drop = result.drop_of(noise)
        assert drop.lower <= 0.0 <= drop.upper, (noise, drop)
        assert abs(drop.value) < 0.02, (noise, drop)
    assert result.full.value > 0.6


def test_the_payload_has_the_shape_reports_read(result) -> None:  # type: ignore[no-untyped-def]
    payload = result.to_dict()
    assert payload["kind"] == "importance" and payload["primary"] == "SNIPS"
    assert payload["dataset"]["rows"] == 3000 and payload["vw_args"] == VW_ARGS
    assert (payload["groups_seen"], payload["limit"]) == (3, 30)
    names = [(f["name"], f["group"]) for f in payload["features"]]
    assert set(names) == {
        ("c", "namespace"),
        ("u", "namespace"),
        ("page", "feature"),
        ("noise", "feature"),
        ("geo", "feature"),
    }
    drops = [f["drop"]["value"] for f in payload["features"]]
    assert drops == sorted(drops, reverse=True)
    keys = {
        "estimator",
        "value",
        "lower",
        "upper",
        "level",
        "interval",
        "n",
        "effective_sample_size",
        "max_weight",
    }
    assert set(payload["full"]) == keys
    assert all(set(f["estimate"]) == keys == set(f["drop"]) for f in payload["features"])
    first = payload["features"][0]
    # The drop is the paired difference: full minus without, value for value.
    assert first["drop"]["value"] == pytest.approx(
        payload["full"]["value"] - first["estimate"]["value"]
    )


def test_a_reward_model_estimator_gives_the_same_verdicts() -> None:
    found = importance(
        shop_log(1500, seed=11),
        VW_ARGS,
        features=["page", "noise"],
        namespaces=[],
        primary="dr",
        reward_range=(0.0, 1.0),
    )
    assert found.primary == "DR" and found.full.estimator == "dr"
    assert found.drop_of("page").lower > 0.15
    noise = found.drop_of("noise")
    assert noise.lower <= 0.0 <= noise.upper


# --- learnloop offline importance ------------------------------------------------------


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from offline_learner.dataset import Dataset

    path = tmp_path_factory.mktemp("importance") / "dataset"
    Dataset.from_examples(shop_log(1200, seed=5)).write_parquet(path)
    return path


def run_cli(*args: str) -> Result:
    from runtime.cli import cli

    return CliRunner().invoke(cli, ["offline", "importance", *args])


def test_the_command_prints_the_payload_and_writes_the_report(
    parquet_dir: Path, tmp_path: Path
) -> None:
    report = tmp_path / "importance.html"
    result = run_cli(
        str(parquet_dir),
        "--vw-args",
        VW_ARGS,
        "--features",
        "page, noise",
        "--no-namespaces",
        "--report",
        str(report),
        "--json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [f["name"] for f in payload["features"]] == ["page", "noise"]
    assert payload["features"][0]["drop"]["lower"] > 0.1
    assert payload["dataset"]["rows"] == 1200
    page = report.read_text(encoding="utf-8")
    assert "Feature importance" in page and "<svg" in page
    assert "needed" in result.stderr and "report:" in result.stderr


def test_the_command_takes_the_decision_points_vw_args(parquet_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "points.toml"
    config.write_text(
        '[[decision_points]]\nname = "homepage"\nvw_args = "--cb_explore_adf --epsilon 0.2 -q ca"\n'
    )
    result = run_cli(
        str(parquet_dir),
        "--decision-point",
        "homepage",
        "--config",
        str(config),
        "--data-dir",
        str(tmp_path / "no-service"),
        "--features",
        "page",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["vw_args"] == "--cb_explore_adf --epsilon 0.2 -q ca"
    unknown = run_cli(
        str(parquet_dir),
        "--decision-point",
        "checkout",
        "--config",
        str(config),
        "--data-dir",
        str(tmp_path / "no-service"),
    )
    assert unknown.exit_code == 2 and "unknown decision point 'checkout'" in unknown.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--features", "page"], "give --vw-args, or --decision-point"),
        (["--vw-args", "--cb_adf", "--features", "page"], "lack --cb_explore_adf"),
        (["--vw-args", VW_ARGS, "--primary", "median"], "not offered"),
    ],
)
def test_the_command_refuses_bad_input(parquet_dir: Path, args: list[str], message: str) -> None:
    result = run_cli(str(parquet_dir), *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_the_command_refuses_a_missing_dataset(tmp_path: Path) -> None:
    result = run_cli(str(tmp_path / "nothing.parquet"), "--vw-args", VW_ARGS)
    assert result.exit_code == 2 and "no dataset at" in result.stderr
