"""The policy-gradient losses of a next-item policy on a ``(T, B)`` rollout.

:func:`policy_gradient_loss` is REINFORCE: one gradient step per rollout. PPO's clipped
surrogate, :func:`clipped_surrogate_loss` (Schulman et al., 2017), reuses a rollout for
``ppo_epochs`` steps while keeping the policy near the one that sampled it::

    L = -mean(min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t)) - c_H H(pi),
    rho_t = pi(a_t | s_t) / pi_old(a_t | s_t).

``pi_old`` is the rollout's ``log_probs``, recorded in eval mode; the surrogate is evaluated in eval
mode too, so that at the first epoch ``rho = 1`` exactly (dropout would make it noise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from agents.actions import action_logits
from agents.policy import SequencePolicy

if TYPE_CHECKING:
    from agents.reinforce import Rollout


def policy_gradient_loss(
    policy: SequencePolicy,
    rollout: Rollout,
    advantages: Tensor,
    *,
    entropy_coef: float = 0.0,
    mle_coef: float = 0.0,
    exclude_seen: bool = False,
) -> tuple[Tensor, dict[str, float]]:
    """REINFORCE loss ``-mean(A_t log pi(a_t|s_t)) - c_H H(pi) + c_MLE NLL(real next item)``.

    All ``T * B`` states go through the policy in one batched forward pass. The MLE term uses
    step 0 only, where the history is a real prefix and ``true_items[0]`` its real next item.

    Returns:
        ``(loss, metrics)``: a differentiable scalar and ``"policy/pg_loss"``,
        ``"policy/entropy"``, ``"policy/mle_loss"``, ``"policy/loss"`` floats.
    """
    t_len, b, length = rollout.histories.shape
    if advantages.shape != (t_len, b):
        raise ValueError(f"advantages must be (T, B)=({t_len}, {b}); got {tuple(advantages.shape)}")
    flat = rollout.histories.reshape(t_len * b, length)[:, -policy.max_len :]
    logits = action_logits(policy(flat), flat)  # (T * B, n_items + 1)
    log_pi = torch.log_softmax(action_logits(logits, flat, exclude_seen=exclude_seen), dim=1)
    logp = log_pi.gather(1, rollout.actions.reshape(-1, 1)).squeeze(1)
    # Masked entries: p = 0 and log p = -inf; zero them *before* the product (a where() after
    # it would still send NaN gradients through the masked branch).
    safe_log_pi = log_pi.masked_fill(torch.isinf(log_pi), 0.0)
    entropy = -(log_pi.exp() * safe_log_pi).sum(1).mean()
    pg_loss = -(advantages.reshape(-1).detach() * logp).mean()
    loss = pg_loss - entropy_coef * entropy
    mle_loss = torch.zeros((), device=logits.device)
    target = rollout.true_items[0]
    if mle_coef > 0 and bool((target > 0).any()):
        nll = -torch.log_softmax(logits[:b], dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
        mle_loss = nll[target > 0].mean()
        loss = loss + mle_coef * mle_loss
    metrics = {
        "policy/loss": float(loss.detach()),
        "policy/pg_loss": float(pg_loss.detach()),
        "policy/entropy": float(entropy.detach()),
        "policy/mle_loss": float(mle_loss.detach()),
    }
    return loss, metrics


def clipped_surrogate_loss(
    policy: SequencePolicy,
    rollout: Rollout,
    advantages: Tensor,
    *,
    clip_ratio: float,
    entropy_coef: float = 0.0,
    exclude_seen: bool = False,
) -> tuple[Tensor, dict[str, float]]:
    """PPO's loss on a ``(T, B)`` rollout with ``(T, B)`` advantages.

    Returns:
        ``(loss, metrics)``: a differentiable scalar and ``"policy/loss"``, ``"policy/pg_loss"``,
        ``"policy/entropy"``, ``"policy/clip_fraction"`` (share of ratios outside the clip
        range) and ``"policy/approx_kl"`` (``mean(log pi_old - log pi)``, nats).
    """
    t_len, b, length = rollout.histories.shape
    if advantages.shape != (t_len, b):
        raise ValueError(f"advantages must be (T, B)=({t_len}, {b}); got {tuple(advantages.shape)}")
    flat = rollout.histories.reshape(t_len * b, length)[:, -policy.max_len :]
    log_pi = torch.log_softmax(action_logits(policy(flat), flat, exclude_seen=exclude_seen), dim=1)
    logp = log_pi.gather(1, rollout.actions.reshape(-1, 1)).squeeze(1)
    old = rollout.log_probs.reshape(-1)
    ratio = torch.exp(logp - old)
    adv = advantages.reshape(-1).detach()
    clipped = torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio)
    pg_loss = -torch.minimum(ratio * adv, clipped * adv).mean()
    safe_log_pi = log_pi.masked_fill(torch.isinf(log_pi), 0.0)  # p = 0 there: no NaN gradient
    entropy = -(log_pi.exp() * safe_log_pi).sum(1).mean()
    loss = pg_loss - entropy_coef * entropy
    with torch.no_grad():
        outside = ((ratio < 1.0 - clip_ratio) | (ratio > 1.0 + clip_ratio)).float().mean()
        approx_kl = (old - logp).mean()
    metrics = {
        "policy/loss": float(loss.detach()),
        "policy/pg_loss": float(pg_loss.detach()),
        "policy/entropy": float(entropy.detach()),
        "policy/clip_fraction": float(outside),
        "policy/approx_kl": float(approx_kl),
    }
    return loss, metrics


def kl_to_reference(
    policy: SequencePolicy, reference: SequencePolicy, histories: Tensor, *, exclude_seen: bool
) -> Tensor:
    """Mean ``KL(pi || pi_ref)`` over ``(T, B, L)`` rollout states; differentiable in ``pi``.

    The reference is read in eval mode without gradient; masked items have ``p = 0`` and add
    nothing (zeroed before the product, so no NaN gradient flows through them).
    """
    t_len, b, length = histories.shape
    flat = histories.reshape(t_len * b, length)[:, -policy.max_len :]
    log_pi = torch.log_softmax(action_logits(policy(flat), flat, exclude_seen=exclude_seen), dim=1)
    with torch.no_grad():
        was_training = reference.training
        reference.eval()
        log_ref = torch.log_softmax(
            action_logits(reference(flat), flat, exclude_seen=exclude_seen), dim=1
        )
        reference.train(was_training)
    finite = torch.isfinite(log_pi) & torch.isfinite(log_ref)
    gap = torch.where(finite, log_pi - log_ref, torch.zeros_like(log_pi))
    return (log_pi.exp() * gap).sum(1).mean()
