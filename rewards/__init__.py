"""Learned reward models (discriminators) for recgym environments.

Every model here is a ``recgym.types.RewardFn``: pass it to any recgym environment. See
``docs/rewards.md`` for the interface, the reward forms, and pre-training recipes.

- :class:`RewardModel`: the base class (``rewards.base``).
- :class:`MultiFactorDiscriminator`: MFGAN's per-factor self-attention discriminators.
- :class:`EnergyDiscriminator`: EB-SeqGAN's energy network (reward ``-E``).
- :class:`RewardFormWrapper`, :class:`NormalizedReward`, :class:`WeightedSum`,
  :class:`DifferenceReward`: wrappers.
- :class:`HitReward`, :class:`OracleReward`, :class:`FrozenRecommenderReward`: references.
- Negative samplers and :func:`pretrain_discriminator` for pre-training.
- :func:`factor_scores_frame`, :func:`plot_factor_scores`: which factor drives the reward.
"""

from __future__ import annotations

from recgym._torch_io import atomic_torch_save, evaluating
from recgym.reference import HitReward, OracleReward
from rewards.attention import SelfAttentionEncoder
from rewards.base import (
    REWARD_FORMS,
    RewardForm,
    RewardModel,
    auc,
    logits_to_reward,
    separation_accuracy,
)
from rewards.energy import EnergyConfig, EnergyDiscriminator
from rewards.frozen import FrozenRecommenderReward
from rewards.interpret import factor_scores_frame, plot_factor_scores
from rewards.multifactor import MultiFactorConfig, MultiFactorDiscriminator, combine
from rewards.negatives import (
    ContinuationSampler,
    NegativeSampler,
    PolicySampler,
    ReplaceLastSampler,
    real_sequences,
)
from rewards.pretrain import PretrainConfig, PretrainResult, pretrain_discriminator
from rewards.wrappers import (
    DifferenceReward,
    NormalizedReward,
    RewardFormWrapper,
    WeightedSum,
)

__all__ = [
    "REWARD_FORMS",
    "ContinuationSampler",
    "DifferenceReward",
    "EnergyConfig",
    "EnergyDiscriminator",
    "FrozenRecommenderReward",
    "HitReward",
    "MultiFactorConfig",
    "MultiFactorDiscriminator",
    "NegativeSampler",
    "NormalizedReward",
    "OracleReward",
    "PolicySampler",
    "PretrainConfig",
    "PretrainResult",
    "ReplaceLastSampler",
    "RewardForm",
    "RewardFormWrapper",
    "RewardModel",
    "SelfAttentionEncoder",
    "WeightedSum",
    "atomic_torch_save",
    "auc",
    "combine",
    "evaluating",
    "factor_scores_frame",
    "logits_to_reward",
    "plot_factor_scores",
    "pretrain_discriminator",
    "real_sequences",
    "separation_accuracy",
]
