"""The policy-gradient losses of a next-item policy on a ``(T, B)`` rollout.

:func:`policy_gradient_loss` is REINFORCE: one gradient step per rollout. PPO's clipped
surrogate, :func:`clipped_surrogate_loss` (Schulman et al., 2017), reuses a rollout for
``ppo_epochs`` steps while keeping the policy near the one that sampled it::

    L = -mean(min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t)) - c_H H(pi),
    rho_t = pi(a_t | s_t) / pi_old(a_t | s_t).

``pi_old`` is the rollout's ``log_probs``, recorded in eval mode; the surrogate is evaluated in eval
mode too, so that at the first epoch ``rho = 1`` exactly (dropout would make it noise).

:func:`gradient_snr` says whether a rollout's gradient carries signal at all: the diagnostic
behind a learned reward that moves the policy nowhere (or anywhere).
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


def gradient_snr(
    policy: SequencePolicy,
    rollout: Rollout,
    advantages: Tensor,
    *,
    n_chunks: int = 8,
    entropy_coef: float = 0.0,
    exclude_seen: bool = False,
) -> float:
    """Signal-to-noise ratio of the REINFORCE gradient estimated from one rollout.

    The ``B`` sessions are split into ``m = n_chunks`` groups and the gradient ``g_j`` of
    :func:`policy_gradient_loss` on each group is taken in eval mode (no dropout, no draw, the
    policy's ``.grad`` untouched). With ``g`` their mean (the batch's gradient), the variance of
    ``g`` is estimated by ``v = sum_j ||g_j - g||^2 / (m (m - 1))`` and, as
    ``E ||g||^2 = ||grad J||^2 + v``, the ratio is ``(||g||^2 - v) / v``: about ``0`` when the
    batch gradient is noise (an update then moves the policy in a random direction), ``>> 1``
    when it points where the objective improves. PPO's first epoch has the same gradient.

    Returns:
        The ratio (``nan`` when fewer than 2 groups, or no gradient noise at all).
    """
    t_len, b, _ = rollout.histories.shape
    m = min(n_chunks, b)
    if m < 2:
        return float("nan")
    params = [p for p in policy.parameters() if p.requires_grad]
    grads = []
    was_training = policy.training
    policy.eval()
    try:
        for rows in torch.arange(b, device=advantages.device).chunk(m):
            part = type(rollout)(*(x[:, rows] if x.dim() > 1 else x[rows] for x in rollout))
            loss, _ = policy_gradient_loss(
                policy, part, advantages[:, rows], entropy_coef=entropy_coef,
                exclude_seen=exclude_seen,
            )  # fmt: skip
            chunk = torch.autograd.grad(loss, params, allow_unused=True)
            grads.append(torch.cat([
                (torch.zeros_like(p) if g is None else g).reshape(-1)
                for p, g in zip(params, chunk, strict=True)
            ]))  # fmt: skip
    finally:
        policy.train(was_training)
    stacked = torch.stack(grads).double()  # (m, n_params)
    mean = stacked.mean(0)
    noise = float((stacked - mean).square().sum() / (m * (m - 1)))
    if noise <= 0:
        return float("nan")
    return (float(mean.square().sum()) - noise) / noise
