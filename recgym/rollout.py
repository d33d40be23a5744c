"""Rollouts on the batched environment with simple, non-learned policies.

Any :class:`recgym.types.Recommender` becomes a policy (greedy or softmax sampling over its
scores, padding and optionally already-seen items masked). :func:`rollout` runs one episode
for every session of a :class:`recgym.env.BatchedRecEnv` and returns the actions, rewards and
logged items as ``(B, T)`` tensors, with the usual health metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from recgym.env import BatchedRecEnv
from recgym.types import Recommender, SessionState


class Policy(Protocol):
    """Anything that picks one item per session: ``act(state, generator) -> (B,)`` item ids."""

    def act(self, state: SessionState, generator: torch.Generator | None = None) -> Tensor:
        """One item per session, ``(B,)`` int64 in ``1..n_items``."""
        ...


def mask_scores(scores: Tensor, history: Tensor, *, exclude_seen: bool) -> Tensor:
    """Set padding (column 0) and, optionally, items in ``history`` to ``-inf``.

    The one masking rule of every next-item choice in recgym (the policies' ``act`` and
    ``log_prob``, the rollouts, the quality metrics, the reward models' negatives): a row whose
    window holds every item keeps all items (a repeat is then unavoidable) rather than becoming
    an all-``-inf`` row with no valid action. Differentiable in ``scores``.

    Args:
        scores: ``(B, n_items + 1)`` float scores.
        history: ``(B, L)`` left-padded item ids.
        exclude_seen: also mask the items of each history.

    Returns:
        A masked float copy of ``scores``.
    """
    pad = torch.arange(scores.shape[1], device=scores.device) == 0
    masked = scores.float().masked_fill(pad, float("-inf"))
    if not exclude_seen:
        return masked
    unseen = masked.scatter(1, history, float("-inf"))
    return torch.where(torch.isinf(unseen).all(dim=1, keepdim=True), masked, unseen)


class RecommenderPolicy:
    """Recommend by a :class:`Recommender`'s scores: argmax, or a sample of ``softmax(s / T)``.

    Args:
        recommender: anything with ``score(history, user) -> (B, n_items + 1)``.
        greedy: take the best item; otherwise sample with temperature ``temperature``.
        temperature: softmax temperature when sampling (``> 0``).
        exclude_seen: never recommend an item already in the history window.
    """

    def __init__(
        self,
        recommender: Recommender,
        *,
        greedy: bool = True,
        temperature: float = 1.0,
        exclude_seen: bool = True,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {temperature}")
        self.recommender = recommender
        self.greedy = greedy
        self.temperature = temperature
        self.exclude_seen = exclude_seen

    @torch.no_grad()
    def act(self, state: SessionState, generator: torch.Generator | None = None) -> Tensor:
        """Pick one item per session, ``(B,)`` int64 in ``1..n_items``."""
        scores = self.recommender.score(state.history, state.user)
        scores = mask_scores(scores, state.history, exclude_seen=self.exclude_seen)
        if self.greedy:
            return scores.argmax(dim=1)
        probs = torch.softmax(scores / self.temperature, dim=1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)


class UniformPolicy:
    """Recommend uniformly at random among items ``1..n_items`` (optionally unseen ones)."""

    def __init__(self, n_items: int, *, exclude_seen: bool = True) -> None:
        if n_items < 1:
            raise ValueError(f"n_items must be >= 1; got {n_items}")
        self.n_items = n_items
        self.exclude_seen = exclude_seen

    @torch.no_grad()
    def act(self, state: SessionState, generator: torch.Generator | None = None) -> Tensor:
        """Pick one item per session, ``(B,)`` int64 in ``1..n_items``."""
        scores = torch.zeros(state.batch_size, self.n_items + 1, device=state.device)
        probs = torch.softmax(mask_scores(scores, state.history, exclude_seen=self.exclude_seen), 1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)


@dataclass(frozen=True)
class RolloutResult:
    """One episode per session.

    Attributes:
        users: ``(B,)`` user of each session.
        actions: ``(B, T)`` recommended items.
        rewards: ``(B, T)`` rewards.
        true_items: ``(B, T)`` the logged item at each step (``0`` when there is none).
        breakdown: name -> ``(B, T)`` per-part rewards.
        n_items: catalogue size (for coverage).
    """

    users: Tensor
    actions: Tensor
    rewards: Tensor
    true_items: Tensor
    n_items: int
    breakdown: dict[str, Tensor] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Mean reward, return, hit rate against logged items, catalogue coverage and Gini."""
        has_truth = self.true_items > 0
        hits = (self.actions == self.true_items) & has_truth
        counts = torch.bincount(self.actions.flatten(), minlength=self.n_items + 1)[1:]
        return {
            "reward/mean": float(self.rewards.mean()),
            "reward/return": float(self.rewards.sum(1).mean()),
            "hit_rate": float(hits.sum()) / max(1, int(has_truth.sum())),
            "coverage": float((counts > 0).float().mean()),
            "gini": gini(counts.float()),
        }


def gini(counts: Tensor) -> float:
    """Gini coefficient of a non-negative count vector (0 = perfectly even, ->1 = concentrated)."""
    x = counts.flatten().double().sort().values
    n, total = x.numel(), x.sum()
    if n == 0 or total == 0:
        return 0.0
    index = torch.arange(1, n + 1, dtype=x.dtype, device=x.device)
    return float((2 * (index * x).sum()) / (n * total) - (n + 1) / n)


@torch.no_grad()
def rollout(
    env: BatchedRecEnv,
    policy: Policy,
    *,
    n_steps: int | None = None,
    seed: int | None = None,
    users: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> RolloutResult:
    """Reset every session of ``env`` and run ``policy`` for one episode.

    Args:
        env: the batched environment.
        policy: picks items from the state.
        n_steps: steps to run (default and maximum: the env's horizon).
        seed: reseeds the env's reset generator (Gymnasium semantics).
        users: ``(B,)`` users to start from (default: sampled by the env).
        generator: passed to the policy for sampling.

    Returns:
        The episode's :class:`RolloutResult`.
    """
    horizon = env.config.horizon
    n_steps = horizon if n_steps is None else n_steps
    if not 1 <= n_steps <= horizon:
        raise ValueError(f"n_steps must be in [1, horizon={horizon}]; got {n_steps}")
    env.reset(seed=seed, users=users)
    user = env.state.user.clone()
    actions, rewards, truths, parts = [], [], [], {}
    for _ in range(n_steps):
        action = policy.act(env.state, generator)
        _, reward, _, _, info = env.step(action)
        actions.append(action)
        rewards.append(reward)
        truths.append(info["true_item"])
        for key, value in info.items():
            if key.startswith("reward/"):
                parts.setdefault(key, []).append(value)
    return RolloutResult(
        users=user,
        actions=torch.stack(actions, 1),
        rewards=torch.stack(rewards, 1),
        true_items=torch.stack(truths, 1),
        n_items=env.n_items,
        breakdown={k: torch.stack(v, 1) for k, v in parts.items()},
    )
