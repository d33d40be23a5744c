"""Sampling from sequence policies: masked next-item log-probabilities and continuations.

Shared by the policy-gradient trainer, the adversarial loop (negatives = policy continuations)
and the quality metrics (oracle log-likelihood of generated continuations).
"""

from __future__ import annotations

import torch
from torch import Tensor

from agents.policy import SequencePolicy
from recgym._torch_io import evaluating
from recgym.rollout import mask_scores


def action_logits(logits: Tensor, history: Tensor, *, exclude_seen: bool = False) -> Tensor:
    """Float ``(B, n_items + 1)`` logits with padding and, optionally, seen items at ``-inf``.

    The rule is :func:`recgym.rollout.mask_scores` (a fully seen window keeps every item), the
    one every next-item choice uses.
    """
    return mask_scores(logits, history, exclude_seen=exclude_seen)


def next_log_probs(
    policy: SequencePolicy, history: Tensor, *, exclude_seen: bool = False
) -> Tensor:
    """``(B, n_items + 1)`` log pi(. | history) (padding ``-inf``), window cut to ``max_len``."""
    window = history[:, -policy.max_len :]
    logits = action_logits(policy(window), window, exclude_seen=exclude_seen)
    return torch.log_softmax(logits, dim=1)


def sample_items(log_probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """``(B,)`` one draw per row of ``(B, n_items + 1)`` log-probabilities."""
    return torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(1)


@torch.no_grad()
def sample_continuations(
    policy: SequencePolicy,
    history: Tensor,
    n_steps: int,
    generator: torch.Generator | None,
    *,
    exclude_seen: bool = False,
) -> Tensor:
    """Continue each left-padded ``(B, L)`` history by ``n_steps`` policy samples, ``(B, n_steps)``.

    The window slides like the env's (``L`` columns); the policy runs in eval mode. This is the
    ``generate_fn`` of ``rewards.ContinuationSampler``.
    """
    items = []
    with evaluating(policy):
        for _ in range(n_steps):
            item = sample_items(
                next_log_probs(policy, history, exclude_seen=exclude_seen), generator
            )
            history = torch.cat([history[:, 1:], item.unsqueeze(1)], dim=1)
            items.append(item)
    if not items:
        return history.new_zeros(history.shape[0], 0)
    return torch.stack(items, dim=1)
