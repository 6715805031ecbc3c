"""The reward model DM, DR and SNDR need: r̂(x, a) for every offered action, learned
progressively on the replayed examples, one model shared by all candidates.

A VW ``--cb_adf`` regressor with ``--cb_type mtr`` (importance-weighted regression on
the logged action's cost), over the same namespaces as the policies. VW's ``dm``
cb_type under ``cb_adf`` did not converge on a deterministic reward in our check,
``mtr`` did (see tests/unit/test_replay.py). Like the candidates, the model predicts
an example *before* learning from it, so its prediction for example ``i`` never saw
``i``'s reward.
"""

from __future__ import annotations

import pylibvw
import vowpalwabbit

from learnloop.errors import InvalidInput

DEFAULT_REWARD_MODEL_ARGS = "--cb_adf --cb_type mtr -q ca -q ua"

_CB_LABEL = vowpalwabbit.LabelType.CONTEXTUAL_BANDIT


class RewardModel:
    """Progressive per-action reward predictions from labelled ADF lines.

    Parameters
    ----------
    vw_args:
        VW arguments of the regressor; must contain ``--cb_adf``.
    reward_range:
        ``(low, high)`` to clip predictions into (a regressor can overshoot the
        reward's true bounds early on); ``None`` leaves them as they are.
    """

    def __init__(
        self,
        vw_args: str = DEFAULT_REWARD_MODEL_ARGS,
        reward_range: tuple[float, float] | None = None,
    ) -> None:
        if "--cb_adf" not in vw_args.split():
            raise InvalidInput(f"reward model arguments {vw_args!r} must contain --cb_adf")
        if reward_range is not None and not reward_range[0] <= reward_range[1]:
            raise InvalidInput(f"reward_range {reward_range} must be (low, high) with low <= high")
        self.vw_args = vw_args
        self.reward_range = reward_range
        try:
            self._ws = vowpalwabbit.Workspace(f"{vw_args} --quiet")
        except RuntimeError as error:
            raise InvalidInput(
                f"VW refused the reward model arguments {vw_args!r}: {error}"
            ) from None

    def learn(self, labelled: list[str]) -> list[float]:
        """Predicted reward of each action before learning ``labelled`` (cost = -reward).

        Goes through ``pylibvw`` directly: ``Workspace.parse`` wraps every line in a
        Python ``Example``, which costs as much as VW's own parse and learn here (the
        replay calls this once per example; same predictions, about twice the speed).
        """
        ws = self._ws
        examples = ws._parse("\n".join(labelled))
        try:
            pylibvw.vw.learn_multi(ws, examples)
            scores = examples[0].get_action_scores()
        finally:
            pylibvw.vw._finish_example_multi_ex(ws, examples)
        if self.reward_range is None:
            return [-s for s in scores]
        low, high = self.reward_range
        return [min(max(-s, low), high) for s in scores]

    def predict(self, lines: list[str]) -> list[float]:
        """Predicted reward of each action of unlabelled lines, without learning."""
        examples = self._ws.parse(lines, _CB_LABEL)
        try:
            self._ws.predict(examples)
            scores = examples[0].get_action_scores()
        finally:
            self._ws.finish_example(examples)
        return [-s for s in scores]

    def close(self) -> None:
        self._ws.finish()
