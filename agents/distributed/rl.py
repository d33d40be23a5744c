"""Policy gradient and the adversarial loop under DDP: sharded envs, DDP views, synced updates.

- :func:`shard_env`: a ``BatchedRecEnv`` whose sessions start only from this rank's disjoint,
  seeded share of the eligible users (each rank's env steps its own users);
- :class:`DDPPolicyView`: what the policy-gradient losses call as "the policy": ``view(x)``
  runs the DDP-wrapped ``policy(x)``, every other attribute is the policy's;
- :func:`ddp_reward_update`: :meth:`rewards.base.RewardModel.update` with the loss computed
  through the reward model's own DDP wrapper, so its gradients are all-reduced too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from agents.distributed.group import all_reduce_mean_metrics, wrap_ddp
from agents.distributed.shard import shard_users
from agents.distributed.training import synced_step


def shard_env(env: Any, *, seed: int) -> Any:
    """Restrict ``env``'s session starts to this rank's share of its eligible users (in place).

    Args:
        env: a ``recgym.BatchedRecEnv``.
        seed: seeds the user permutation (the same on every rank).

    Returns:
        ``env``; ``env.eligible_users`` is now ``(ceil(U / W),)`` or one fewer.

    Raises:
        ValueError: more ranks than eligible users.
    """
    table = env._table  # the env's start table (recgym.dynamics._StartTable, a NamedTuple)
    users = shard_users(table.eligible_users, seed=seed)
    eligible = np.zeros_like(table.eligible)
    eligible[users.cpu().numpy()] = True
    env._table = table._replace(eligible_users=users, eligible=eligible)
    return env


class DDPPolicyView:
    """A policy whose ``__call__`` goes through its DDP wrapper (one forward per backward).

    The policy-gradient losses call ``policy(flat)`` once and read ``policy.max_len``; handing
    them this view makes that one forward DDP's, so ``backward`` all-reduces the gradients.
    """

    def __init__(self, policy: nn.Module, device: torch.device) -> None:
        self.policy = policy
        self.ddp = wrap_ddp(policy, lambda model, history: model(history), device)

    def __call__(self, history: Tensor) -> Tensor:
        """``(N, L) -> (N, n_items + 1)`` logits through DDP."""
        return self.ddp(history)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)


def reward_ddp(reward_model: nn.Module, device: torch.device) -> nn.Module:
    """The reward model's own DDP wrapper: ``wrapper(real, fake) = reward_model.loss(...)``."""
    return wrap_ddp(reward_model, lambda model, real, fake: model.loss(real, fake), device)


def ddp_reward_update(
    reward_model: Any, wrapper: nn.Module, real: Tensor, fake: Tensor, *, max_grad_norm=5.0
) -> dict[str, float]:
    """:meth:`rewards.base.RewardModel.update` on this rank's ``(B, L)`` real and fake rows,
    gradients all-reduced through ``wrapper``; metrics are the mean over ranks."""
    reward_model.check_history(real)
    reward_model.check_history(fake)
    if len(real) == 0 or len(fake) == 0:
        raise ValueError(f"a reward-model update needs real and fake rows on every rank; got "
                         f"shapes {tuple(real.shape)} and {tuple(fake.shape)}")  # fmt: skip
    reward_model.train()
    loss = synced_step(wrapper, (real, fake), reward_model.optimizer, reward_model.parameters(),
                       max_grad_norm=max_grad_norm, what=f"{type(reward_model).__name__}.loss",
                       hint="lower the reward model's learning rate")  # fmt: skip
    metrics = reward_model.evaluate(real, fake)
    metrics["disc/loss"] = loss
    return all_reduce_mean_metrics(metrics)


def check_adversarial_distributed(config: Any, gen_algo: Any) -> None:
    """Raise for what the data-parallel adversarial loop does not do (on every rank alike)."""
    if gen_algo is not None or config.generator_update != "policy_gradient":
        raise ValueError("AdversarialTrainer(distributed=True) trains the generator by its "
                         "built-in policy gradient only; got gen_algo or generator_update="
                         f"{config.generator_update!r}")  # fmt: skip


def shard_rows(rows: Tensor, *, seed: int) -> Tensor:
    """This rank's disjoint seeded share of the rows of ``(N, L)`` (e.g. real sequences)."""
    index = shard_users(torch.arange(len(rows)), seed=seed).to(rows.device)
    return rows[index]


def rank_states(generators: dict[str, torch.Generator], rng: np.random.Generator) -> dict:
    """This rank's generator and numpy states (to gather into a checkpoint)."""
    return {"generators": {k: g.get_state() for k, g in generators.items()},
            "numpy_rng": dict(rng.bit_generator.state)}  # fmt: skip


def restore_rank_states(
    state: dict, generators: dict[str, torch.Generator], rng: np.random.Generator
) -> None:
    """Restore :func:`rank_states` (this rank's entry of a checkpoint's ``ranks``)."""
    for name, generator in generators.items():
        generator.set_state(state["generators"][name])
    rng.bit_generator.state = dict(state["numpy_rng"])
