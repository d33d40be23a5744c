"""An SB3 actor as a recgym policy, and an SB3 actor that starts as a recgym policy.

SB3's ``ActorCriticPolicy`` over recgym's history space, with a :class:`~agents.sb3.
PolicyFeaturesExtractor` and ``net_arch=dict(pi=[], vf=[...])``, scores the ``n_items`` actions
(item = action + 1) by ``action_net(encoder state)``. Two helpers connect it to the rest of
recgym:

- :func:`start_actor_from` sets ``action_net`` to the encoder's own tied item table, so the SB3
  actor's distribution starts *exactly* as the :class:`SequencePolicy` it encodes with (an
  MLE start for GAIL-style fine-tuning; build the policy with ``ortho_init=False``, or SB3
  re-initialises the encoder's linear layers);
- :class:`SB3ActorPolicy` reads the SB3 actor as a :class:`SequencePolicy`, so that
  ``recgym.evaluate``, :func:`agents.cascading_error` and the adversarial loop's negatives
  measure it like any recgym policy.

Example::

    encoder = mle_policy  # a trained SASRecPolicy
    model = PPO("MlpPolicy", SB3VecEnv(env), policy_kwargs={
        "features_extractor_class": PolicyFeaturesExtractor,
        "features_extractor_kwargs": {"policy": encoder},
        "net_arch": {"pi": [], "vf": [64]}, "ortho_init": False})
    start_actor_from(model.policy)
    model.learn(100_000, callback=RewardModelCallback(reward_model, real_sampler=real))
    cascading_error(SB3ActorPolicy(model.policy), user_model, split)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from agents.policy import SequencePolicy
from agents.sb3 import PolicyFeaturesExtractor, history_space_size
from recgym.errors import RecGymError


def _encoder_of(sb3_policy: Any) -> SequencePolicy:
    extractor = getattr(sb3_policy, "pi_features_extractor", None)
    if not isinstance(extractor, PolicyFeaturesExtractor):
        raise TypeError(
            "the SB3 policy must encode with agents.sb3.PolicyFeaturesExtractor (or the SASRec / "
            f"GRU extractors); got {type(extractor).__name__}"
        )
    return extractor.policy


def _check_linear_actor(sb3_policy: Any, dim: int) -> None:
    policy_net = getattr(getattr(sb3_policy, "mlp_extractor", None), "policy_net", None)
    action_net = getattr(sb3_policy, "action_net", None)
    if policy_net is None or len(policy_net) != 0 or not isinstance(action_net, nn.Linear):
        raise ValueError(
            "the SB3 actor must be a linear head on the encoder state: build it with "
            "policy_kwargs net_arch=dict(pi=[], vf=[...]) and a Discrete action space"
        )
    if action_net.in_features != dim:
        raise ValueError(
            f"the actor's head reads {action_net.in_features} features but the encoder's state "
            f"has {dim}"
        )


@torch.no_grad()
def start_actor_from(sb3_policy: Any) -> None:
    """Make the SB3 actor's logits the encoder's tied item scores (in place).

    ``action_net.weight <- item_embedding.weight[1:]`` (action ``a`` is item ``a + 1``) and its
    bias ``<- 0``, so ``pi_SB3(a | h) = pi_encoder(a + 1 | h)`` before any update (the two
    tables are separate parameters afterwards).

    Raises:
        TypeError: the policy does not encode with a :class:`PolicyFeaturesExtractor`.
        ValueError: the actor is not a linear head on the encoder's state.
    """
    encoder = _encoder_of(sb3_policy)
    table = encoder.item_embedding.weight
    _check_linear_actor(sb3_policy, table.shape[1])
    if sb3_policy.action_net.out_features != encoder.n_items:
        raise ValueError(
            f"the actor has {sb3_policy.action_net.out_features} actions but the encoder "
            f"scores {encoder.n_items} items"
        )
    sb3_policy.action_net.weight.copy_(table[1:])
    sb3_policy.action_net.bias.zero_()


class SB3ActorPolicy(SequencePolicy):
    """The actor of an SB3 ``ActorCriticPolicy`` read as a recgym :class:`SequencePolicy`.

    ``forward(history)`` gives the actor's logits of item ``a + 1`` for action ``a``, ``(B, n_items
    + 1)`` with column 0 (padding) masked by the usual rule; histories shorter than the
    observation width are left-padded. Only the newest position is scored: :meth:`encode` and
    hence all-position MLE are not available. The SB3 policy is a submodule (``train()`` /
    ``eval()`` reach it); its weights are shared, not copied.

    Args:
        sb3_policy: ``model.policy`` of an SB3 algorithm over recgym's history space whose
            features extractor is a :class:`PolicyFeaturesExtractor`.
    """

    def __init__(self, sb3_policy: Any) -> None:
        encoder = _encoder_of(sb3_policy)
        n_items, width = history_space_size(sb3_policy.observation_space)
        super().__init__(n_items=n_items, max_len=width)
        self.sb3_policy = sb3_policy
        self.item_embedding = encoder.item_embedding  # shared: the device and the input table

    def encode(self, history: Tensor, *, delta: Tensor | None = None) -> Tensor:
        raise RecGymError(
            "an SB3 actor scores only the newest position: use forward(history), not encode()"
        )

    def forward(self, history: Tensor, *, delta: Tensor | None = None) -> Tensor:
        """``(B, L) -> (B, n_items + 1)`` actor logits (``L <= max_len``; no ``delta``)."""
        if delta is not None:
            raise RecGymError("an SB3 actor has no embedding perturbation: pass delta=None")
        self.check_history(history)
        if history.shape[1] < self.max_len:
            history = nn.functional.pad(history, (self.max_len - history.shape[1], 0))
        logits = self.sb3_policy.get_distribution(history).distribution.logits  # (B, n_items)
        return nn.functional.pad(logits, (1, 0))  # column 0: padding, masked downstream

    def all_logits(self, history: Tensor, *, delta: Tensor | None = None) -> Tensor:
        raise RecGymError("an SB3 actor scores only the newest position: use forward(history)")
