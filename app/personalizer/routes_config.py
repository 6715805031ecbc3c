"""``configurations/service`` and ``configurations/policy`` (admin key), both API versions.

The service configuration is the loop's decision point plus its settings document
(:mod:`app.personalizer.service_config` maps one onto the other); the policy is the
decision point's ``vw_args``. A change is planned and validated completely before
anything is written, so a refused one changes nothing; after a change this worker
serves the new configuration at once (the others on their next poll).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Final

from fastapi import APIRouter, Request

from app.personalizer.deps import AdminKey, Loop, LoopName, Store
from app.personalizer.errors import PersonalizerError
from app.personalizer.exploration import epsilon_of, explorer, with_epsilon
from app.personalizer.loop import PERSONALIZER_VW_ARGS
from app.personalizer.service_config import (
    ServiceSettings,
    apprentice_metrics,
    exploration_percentage,
    plan_update,
    read_configuration,
)
from learnloop.clock import Clock
from learnloop.errors import InvalidInput
from learnloop.modelstore.base import ModelStore
from learnloop.personalizer_store import PersonalizerStore
from learnloop.policy import VWPolicy
from learnloop.rollback import with_vw_args
from learnloop.settings import Settings
from schemas.config import DecisionPointConfig
from schemas.personalizer_admin import (
    PolicyContract,
    ServiceConfiguration,
    service_configuration_json,
)

router = APIRouter(dependencies=[AdminKey], tags=["Personalizer configuration"])

SETTINGS_KIND: Final = "settings"
SETTINGS_KEY: Final = "service"
INPUT_FORMAT_ARGS: Final = frozenset({"--dsjson", "--json"})
"""Personalizer's policies name its input format; learnloop feeds VW its own text format."""


def is_stable(request: Request) -> bool:
    """Whether the call came in through ``/v1.0`` (else it is the preview API).

    Judged on the path below the mount (``root_path``), so a loop named ``v1.0`` under
    ``/loops/{loop}/personalizer`` is not mistaken for the version.
    """
    path = str(request.scope.get("path", ""))
    root = str(request.scope.get("root_path", ""))
    below = path[len(root) :] if root and path.startswith(root) else path
    return below == "/v1.0" or below.startswith("/v1.0/")


async def load_settings(store: PersonalizerStore, loop: str) -> ServiceSettings:
    return ServiceSettings.load(await store.get(loop, SETTINGS_KIND, SETTINGS_KEY))


async def save_settings(store: PersonalizerStore, loop: str, settings: ServiceSettings) -> None:
    await store.put(loop, SETTINGS_KIND, SETTINGS_KEY, settings.document())


def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def apply_config(
    request: Request, before: DecisionPointConfig, after: DecisionPointConfig
) -> None:
    """Write a changed decision point and serve it from this worker at once."""
    if after == before:
        return
    await request.app.state.decision_points.put(after)
    registry = getattr(request.app.state, "registry", None)
    if registry is not None:
        await registry.refresh(after.name)


# -- service configuration ---------------------------------------------------------------


async def _answer(
    request: Request, config: DecisionPointConfig, settings: ServiceSettings
) -> dict[str, Any]:
    models: ModelStore = request.app.state.models
    history = await models.history(config.name, limit=2)
    current = history[0].release.metrics if history else None
    previous = history[1].release.metrics if len(history) > 1 else None
    apprentice = apprentice_metrics(config, settings, current, previous, now=_clock(request).now())
    app_settings: Settings = request.app.state.settings
    answer = read_configuration(
        config,
        settings,
        export_every=timedelta(seconds=app_settings.release_every_seconds),
        apprentice=apprentice,
    )
    return service_configuration_json(answer, stable=is_stable(request))


@router.get("/configurations/service", summary="The service configuration")
async def get_service_configuration(
    request: Request, config: Loop, name: LoopName, store: Store
) -> dict[str, Any]:
    return await _answer(request, config, await load_settings(store, name))


@router.put("/configurations/service", summary="Update the service configuration")
async def put_service_configuration(
    request: Request, body: ServiceConfiguration, config: Loop, name: LoopName, store: Store
) -> dict[str, Any]:
    """Reward wait time, default reward and aggregation, exploration and learning mode
    change the decision point; the other settings are kept and answered."""
    settings = await load_settings(store, name)
    models: ModelStore = request.app.state.models
    current = await models.current(name)
    updated, new_settings = plan_update(
        config,
        settings,
        body,
        stable=is_stable(request),
        now=_clock(request).now(),
        apprentice_counters=None if current is None else dict(current.metrics),
    )
    await apply_config(request, config, updated)
    await save_settings(store, name, new_settings)
    return await _answer(request, updated, new_settings)


# -- policy ------------------------------------------------------------------------------


def policy_arguments(arguments: str) -> str:
    """Personalizer's learning settings as learnloop runs them: input-format flags dropped.

    >>> policy_arguments("--cb_explore_adf --epsilon 0.2 --dsjson --cb_type ips")
    '--cb_explore_adf --epsilon 0.2 --cb_type ips'
    """
    return " ".join(w for w in arguments.split() if w not in INPUT_FORMAT_ARGS)


async def check_policy(config: DecisionPointConfig, arguments: str) -> DecisionPointConfig:
    """``config`` with the policy ``arguments``, or 400 ``InvalidPolicyConfiguration``:
    learnloop's rules (``--cb_explore_adf``, no file arguments) and VW itself must accept
    them."""
    try:
        updated = with_vw_args(config, policy_arguments(arguments))
    except InvalidInput as exc:
        raise PersonalizerError(400, "InvalidPolicyConfiguration", str(exc)) from exc
    try:
        policy = await asyncio.to_thread(VWPolicy, updated.vw_args)
    except Exception as exc:  # VW refuses unknown options and bad values with RuntimeError
        raise PersonalizerError(
            400,
            "InvalidPolicyConfiguration",
            f"Vowpal Wabbit refused the arguments {updated.vw_args!r}: {exc}",
        ) from exc
    policy.close()
    return updated


def _policy(config: DecisionPointConfig, settings: ServiceSettings) -> dict[str, Any]:
    name = settings.policy_name or config.name
    return PolicyContract(name=name[:256], arguments=config.vw_args).model_dump(by_alias=True)


@router.get("/configurations/policy", summary="The learning settings")
async def get_policy(config: Loop, name: LoopName, store: Store) -> dict[str, Any]:
    return _policy(config, await load_settings(store, name))


@router.put("/configurations/policy", summary="Update the learning settings")
async def put_policy(
    request: Request, body: PolicyContract, config: Loop, name: LoopName, store: Store
) -> dict[str, Any]:
    """New ``vw_args`` for the loop. The learner starts a fresh model with them (a model
    trained with other arguments cannot continue), as after any ``vw_args`` change."""
    settings = await load_settings(store, name)
    updated = await check_policy(config, body.arguments)
    new_settings = settings.model_copy(update={"policy_name": body.name})
    if explorer(updated.vw_args) != "epsilon" and explorer(config.vw_args) == "epsilon":
        # keep answering the exploration the loop had, as Personalizer kept the setting
        new_settings = new_settings.model_copy(
            update={"exploration_percentage": epsilon_of(config.vw_args)}
        )
    await apply_config(request, config, updated)
    await save_settings(store, name, new_settings)
    return _policy(updated, new_settings)


@router.delete("/configurations/policy", summary="Reset the learning settings")
async def reset_policy(
    request: Request, config: Loop, name: LoopName, store: Store
) -> dict[str, Any]:
    """Back to Personalizer's default learning settings, keeping the configured
    ``explorationPercentage`` as their ``--epsilon``; answers the policy now in effect."""
    settings = await load_settings(store, name)
    epsilon = exploration_percentage(config, settings)
    updated = with_vw_args(config, with_epsilon(PERSONALIZER_VW_ARGS, epsilon))
    new_settings = settings.model_copy(update={"policy_name": None, "exploration_percentage": None})
    await apply_config(request, config, updated)
    await save_settings(store, name, new_settings)
    return _policy(updated, new_settings)
