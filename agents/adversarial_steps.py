"""The parts of an adversarial round: policy negatives, one reward-model step, validation.

:class:`agents.adversarial.AdversarialTrainer` composes these; they are public so a custom loop
(a notebook, an SB3 callback) can reuse exactly the same steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents.actions import sample_continuations
from agents.policy import SequencePolicy
from recgym._checks import check_n_items
from recgym.splits import Split
from rewards.base import RewardModel
from rewards.negatives import ContinuationSampler


class PolicyNegatives:
    """Fakes from real sequences: the newest ``k`` items replaced by a policy continuation.

    ``k`` is drawn uniformly in ``1..max_steps`` per call from the given generator, so the
    reward model sees fakes with as many generated items as the g-step rollouts produce.
    """

    def __init__(self, policy: SequencePolicy, max_steps: int, *, exclude_seen: bool) -> None:
        self.policy, self.max_steps, self.exclude_seen = policy, max_steps, exclude_seen

    def _generate(self, prefix: Tensor, n_steps: int, generator: torch.Generator) -> Tensor:
        return sample_continuations(
            self.policy, prefix, n_steps, generator, exclude_seen=self.exclude_seen
        )

    def sample(self, real: Tensor, generator: torch.Generator) -> Tensor:
        """``(B, L)`` fakes of ``(B, L)`` real sequences."""
        k = 1 + int(torch.randint(self.max_steps, (1,), generator=generator, device=real.device))
        return ContinuationSampler(self._generate, k).sample(real, generator)


def discriminator_step(
    reward_model: RewardModel,
    real_pool: Tensor,
    sampler: PolicyNegatives,
    *,
    batch_size: int,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> dict[str, float]:
    """One ``reward_model.update`` on a random batch of real sequences vs fresh fakes."""
    rows = rng.choice(len(real_pool), size=min(batch_size, len(real_pool)), replace=False)
    real = real_pool[torch.as_tensor(rows, device=real_pool.device)]
    return reward_model.update(real, sampler.sample(real, generator))


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    """Key-wise mean of metric dicts."""
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]} if rows else {}


# ----------------------------------------------------------------------------- helpers
def check_components(policy: object, reward_model: object, split: object) -> None:
    """Type-check a trainer's parts and that their ``n_items`` agree with the dataset."""
    if not isinstance(policy, SequencePolicy):
        raise TypeError(f"policy must be an agents.SequencePolicy; got {type(policy).__name__}")
    if not isinstance(reward_model, RewardModel):
        raise TypeError(
            f"reward_model must be a rewards.RewardModel; got {type(reward_model).__name__}"
        )
    if not isinstance(split, Split):
        raise TypeError(f"split must be a recgym.Split; got {type(split).__name__}")
    check_n_items("policy", policy.n_items, split.dataset.n_items)
    check_n_items("reward_model", reward_model.n_items, split.dataset.n_items)


def summary_writer(log_dir: str | None) -> Any:
    """A TensorBoard writer for ``log_dir`` (``None``: no logging, returns ``None``)."""
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))
