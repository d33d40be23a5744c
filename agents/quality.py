"""Quality of what a policy generates: catalogue spread, and fidelity to a known user model.

On synthetic data the true user model (``recgym.make_synthetic(...).user_model``) scores any
generated continuation exactly. :func:`oracle_continuation_loglik` is the mean per-step true
log-likelihood of policy-generated continuations of real prefixes, and :func:`cascading_error`
follows it step by step: as the policy conditions on its *own* earlier items its states drift
from real ones, and a gap that grows with the step is the compounding (cascading) error
EB-SeqGAN targets.

A "policy" here is an ``agents.SequencePolicy``, a ``recgym.RecommenderPolicy`` (softmax of
scores with its temperature, or greedy) or any ``Recommender`` (``softmax`` of its scores):
the user model itself is a Recommender whose softmax is the truth, i.e. the ideal policy.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from agents.actions import next_log_probs, sample_items
from agents.checkpoint import draw_seed
from agents.policy import SequencePolicy
from recgym._torch_io import evaluating
from recgym.env import BatchedRecEnv
from recgym.env_config import EnvConfig
from recgym.reference import HitReward
from recgym.rollout import RecommenderPolicy, mask_scores
from recgym.rollout import gini as gini_of_counts
from recgym.splits import Split


# ----------------------------------------------------------------------------- catalogue
def item_counts(actions: Tensor, n_items: int) -> Tensor:
    """``(n_items,)`` how often each item ``1..n_items`` appears in ``actions`` (any shape)."""
    if not isinstance(n_items, int) or n_items < 1:
        raise ValueError(f"n_items must be an int >= 1; got {n_items!r}")
    flat = actions.flatten()
    if flat.numel() and (int(flat.min()) < 1 or int(flat.max()) > n_items):
        raise ValueError(
            f"actions must be item ids in [1, {n_items}]; "
            f"got [{int(flat.min())}, {int(flat.max())}]"
        )
    return torch.bincount(flat, minlength=n_items + 1)[1:]


def catalogue_coverage(actions: Tensor, n_items: int) -> float:
    """Fraction of the ``n_items`` items recommended at least once in ``actions``."""
    return float((item_counts(actions, n_items) > 0).float().mean())


def gini(actions: Tensor, n_items: int) -> float:
    """Gini coefficient of the item counts of ``actions`` over all ``n_items`` items.

    0 = every item recommended equally often, -> 1 = everything on one item.

    >>> gini(torch.tensor([1, 2, 3, 4]), n_items=4)
    0.0
    >>> round(gini(torch.tensor([1, 1, 1, 1]), n_items=4), 2)
    0.75
    """
    return gini_of_counts(item_counts(actions, n_items).float())


# ----------------------------------------------------------------------------- policies
def policy_log_probs(
    policy: object, history: Tensor, user: Tensor, *, exclude_seen: bool = False
) -> Tensor:
    """``(B, n_items + 1)`` log pi(. | history) of any supported policy (padding ``-inf``).

    Args:
        policy: a ``SequencePolicy`` (its newest ``max_len`` items are read), a
            ``RecommenderPolicy`` (its own temperature, ``greedy`` and ``exclude_seen``) or any
            object with ``score(history, user)``.
        history: ``(B, L)`` left-padded histories.
        user: ``(B,)`` users.
        exclude_seen: mask the history's items (``SequencePolicy`` and plain recommenders).
    """
    if isinstance(policy, SequencePolicy):
        with evaluating(policy):
            return next_log_probs(policy, history, exclude_seen=exclude_seen)
    if isinstance(policy, RecommenderPolicy):
        scores = policy.recommender.score(history, user)
        scores = mask_scores(scores, history, exclude_seen=policy.exclude_seen)
        if policy.greedy:
            best = scores.argmax(dim=1, keepdim=True)
            return torch.full_like(scores, -math.inf).scatter_(1, best, 0.0)
        return torch.log_softmax(scores / policy.temperature, dim=1)
    if callable(getattr(policy, "score", None)):
        scores = mask_scores(policy.score(history, user), history, exclude_seen=exclude_seen)
        return torch.log_softmax(scores, dim=1)
    raise TypeError(
        "policy must be a SequencePolicy, a RecommenderPolicy or have score(history, user); "
        f"got {type(policy).__name__}"
    )


@torch.no_grad()
def real_prefixes(
    split: Split,
    n_users: int,
    max_len: int,
    generator: torch.Generator,
    *,
    stage: str = "train",
) -> tuple[Tensor, Tensor]:
    """``n_users`` real prefixes cut uniformly in ``stage`` sequences (env ``start="random"``).

    Returns:
        ``(history (n_users, max_len), users (n_users,))`` on ``generator.device``.
    """
    config = EnvConfig(max_len=max_len, horizon=1, stage=stage, start="random")
    env = BatchedRecEnv(
        split, HitReward(), config, batch_size=n_users, device=generator.device,
        seed=draw_seed(generator),
    )  # fmt: skip
    env.reset()
    return env.state.history, env.state.user


@torch.no_grad()
def generate_continuations(
    policy: object,
    history: Tensor,
    user: Tensor,
    n_steps: int,
    generator: torch.Generator,
    *,
    exclude_seen: bool = False,
) -> Tensor:
    """``(B, n_steps)`` items the policy samples after each history (window widened)."""
    state = F.pad(history, (n_steps, 0))
    items = []
    for _ in range(n_steps):
        item = sample_items(
            policy_log_probs(policy, state, user, exclude_seen=exclude_seen), generator
        )
        state = torch.cat([state[:, 1:], item.unsqueeze(1)], dim=1)
        items.append(item)
    return torch.stack(items, dim=1) if items else history.new_zeros(history.shape[0], 0)


# ----------------------------------------------------------------------------- oracle fidelity
@torch.no_grad()
def oracle_continuation_loglik(
    policy: object,
    user_model: object,
    split: Split,
    *,
    n_steps: int = 10,
    n_users: int = 512,
    max_len: int = 50,
    generator: torch.Generator | None = None,
    seed: int = 0,
    exclude_seen: bool = False,
    log_floor: float = -30.0,
) -> float:
    """Mean per-step true log-likelihood of ``n_steps``-item policy continuations of real prefixes.

    The prefixes are cut uniformly in real training sequences; each generated item is scored by
    ``user_model.continuation_log_prob`` given the prefix and the items generated before it.
    Items the true user can never pick (a repeat: ``-inf``) count as ``log_floor``. The ideal
    policy scores ``-H``, the mean entropy of the user model's own next-item distribution.

    Args:
        policy: see the module docstring.
        user_model: the truth: ``continuation_log_prob(history, continuation, user)``.
        split: where the real prefixes come from (its training segments).
        n_steps: continuation length.
        n_users: prefixes (one per sampled session).
        max_len: prefix window.
        generator: draws prefixes and items (default: a new one on the user model's device
            seeded with ``seed``, so repeated calls compare policies on the same prefixes).
        seed: used when ``generator`` is ``None``.
        exclude_seen: mask seen items when sampling from a ``SequencePolicy``/recommender.
        log_floor: lower clamp of each step's log-likelihood.
    """
    generator = _generator(user_model, generator, seed)
    history, users = real_prefixes(split, n_users, max_len, generator)
    continuation = generate_continuations(
        policy, history, users, n_steps, generator, exclude_seen=exclude_seen
    )
    log_lik = user_model.continuation_log_prob(history, continuation, users)
    return float(log_lik.clamp(min=log_floor).mean())


@torch.no_grad()
def cascading_error(
    policy: object,
    user_model: object,
    split: Split,
    *,
    max_steps: int = 10,
    n_users: int = 512,
    max_len: int = 50,
    generator: torch.Generator | None = None,
    seed: int = 0,
    exclude_seen: bool = False,
    log_floor: float = -30.0,
) -> pd.DataFrame:
    """Per-step fidelity of policy-generated continuations of real prefixes, ``t = 1..max_steps``.

    At step ``t`` the policy ``pi`` and the true user ``p`` are compared *at the states the
    policy itself reached* (prefix + its ``t - 1`` earlier items), with exact expectations over
    the step-``t`` item (``log p`` clamped at ``log_floor``):

    - ``policy_loglik``: ``E_{a ~ pi} log p(a | s_t)``, the true log-likelihood of its choice;
    - ``oracle_loglik``: ``E_{a ~ p} log p(a | s_t) = -H(p)``, the user's own at those states;
    - ``loglik_gap``: their difference; ``reverse_kl``: ``KL(pi || p)``; ``forward_kl``:
      ``KL(p || pi)`` (``log pi`` clamped too);
    - ``oracle_state_kl``: ``KL(p || pi)`` at states the *true user* reached (teacher forcing):
      no compounding, so ``forward_kl - oracle_state_kl`` isolates the cascading part;
    - ``sampled_loglik``, ``repeat_rate``: the sampled item's clamped ``log p`` and how often
      it repeats an item of the state (impossible for the true user).

    Returns:
        A frame with one row per step and the columns above (plus ``step``). The ideal policy
        (``policy=user_model``) has zero gap and zero KL at every step.
    """
    generator = _generator(user_model, generator, seed)
    history, users = real_prefixes(split, n_users, max_len, generator)
    policy_state = oracle_state = F.pad(history, (max_steps, 0))  # widened: nothing falls out
    rows = []
    for step in range(1, max_steps + 1):
        log_p = user_model.log_prob(policy_state, users)
        log_pi = policy_log_probs(policy, policy_state, users, exclude_seen=exclude_seen)
        row = _compare(log_p, log_pi, log_floor)
        action = sample_items(log_pi, generator)
        chosen = log_p.gather(1, action.unsqueeze(1)).squeeze(1)
        row["sampled_loglik"] = float(chosen.clamp(min=log_floor).mean())
        row["repeat_rate"] = float((policy_state == action.unsqueeze(1)).any(dim=1).float().mean())
        policy_state = torch.cat([policy_state[:, 1:], action.unsqueeze(1)], dim=1)
        log_p_true = user_model.log_prob(oracle_state, users)
        log_pi_true = policy_log_probs(policy, oracle_state, users, exclude_seen=exclude_seen)
        row["oracle_state_kl"] = _compare(log_p_true, log_pi_true, log_floor)["forward_kl"]
        true_item = sample_items(log_p_true, generator)
        oracle_state = torch.cat([oracle_state[:, 1:], true_item.unsqueeze(1)], dim=1)
        rows.append({"step": step, **row})
    columns = ["step", "policy_loglik", "oracle_loglik", "loglik_gap", "reverse_kl", "forward_kl"]
    return pd.DataFrame(rows)[columns + ["oracle_state_kl", "sampled_loglik", "repeat_rate"]]


def _compare(log_p: Tensor, log_pi: Tensor, log_floor: float) -> dict[str, float]:
    """Batch means of expected log-likelihoods and KLs between ``p`` and ``pi`` (``(B, N)``)."""
    p, pi = log_p.exp(), log_pi.exp()
    log_p_c, log_pi_c = log_p.clamp(min=log_floor), log_pi.clamp(min=log_floor)
    zero = torch.zeros_like(p)
    policy_ll = (pi * log_p_c).sum(1)
    oracle_ll = torch.where(p > 0, p * log_p_c, zero).sum(1)
    reverse_kl = torch.where(pi > 0, pi * (log_pi - log_p_c), zero).sum(1)
    forward_kl = torch.where(p > 0, p * (log_p - log_pi_c), zero).sum(1)
    return {
        "policy_loglik": float(policy_ll.mean()),
        "oracle_loglik": float(oracle_ll.mean()),
        "loglik_gap": float((oracle_ll - policy_ll).mean()),
        "reverse_kl": float(reverse_kl.mean()),
        "forward_kl": float(forward_kl.mean()),
    }


def _generator(user_model: object, generator: torch.Generator | None, seed: int) -> torch.Generator:
    if generator is not None:
        return generator
    device = getattr(user_model, "device", torch.device("cpu"))
    return torch.Generator(device=device).manual_seed(int(seed))
