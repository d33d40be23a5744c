"""Policy gradient (REINFORCE) for next-item policies over the batched recgym environment.

One update (:meth:`PolicyGradientTrainer.step`) reads like a page::

    rollout = collect_rollouts(env, policy, generator)        # (T, B) actions, rewards, ...
    returns = returns_to_go(rollout.rewards, gamma)           # or SeqGAN Monte-Carlo Q-values
    advantages = returns - baselines(returns, "batch_mean")
    loss, metrics = policy_gradient_loss(policy, rollout, advantages, ...)

Sessions start from *real* prefixes of training sequences (an env with ``start="random"``);
the reward is whatever ``RewardFn`` the env holds (a hit reward, an oracle, a discriminator).
``mc_rollouts > 0`` replaces the returns by SeqGAN's Monte-Carlo estimate of a sequence-level
reward; ``maxent=True`` adds EB-SeqGAN's entropy term ``-alpha log pi(a_t | s_t)`` to every
reward, so the policy maximises ``E[r(S)] + alpha H(pi)`` (the Boltzmann optimum of an energy).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from agents import distributed as ddp
from agents.actions import next_log_probs, sample_items
from agents.checkpoint import draw_seed, forked_global_rng
from agents.distributed.rl import DDPPolicyView, shard_env
from agents.pg_losses import (
    clipped_surrogate_loss,
    gradient_snr,
    kl_to_reference,
    policy_gradient_loss,
)
from agents.policy import SequencePolicy
from recgym._checks import check_float, check_int
from recgym._torch_io import evaluating
from recgym.device import resolve_device
from recgym.env import BatchedRecEnv

Baseline = Literal["batch_mean", "leave_one_out", "none"]
BASELINES: tuple[str, ...] = ("batch_mean", "leave_one_out", "none")


@dataclass(frozen=True, kw_only=True)
class PGConfig:
    """Settings of :class:`PolicyGradientTrainer`.

    Attributes:
        n_steps: rollout horizon ``T`` (``<=`` the env's horizon).
        batch_size: sessions ``B`` per rollout; must equal the env's ``batch_size``.
        gamma: discount of the returns-to-go.
        baseline: ``"batch_mean"`` (mean return of the batch at each step),
            ``"leave_one_out"`` (mean of the *other* sessions: unbiased) or ``"none"``.
        entropy_coef: weight of the entropy bonus in the loss.
        max_grad_norm: gradient-norm clip, ``None`` for none.
        lr: Adam learning rate.
        mle_coef: weight of an MLE term on the real next item of each real prefix (step 0).
        mc_rollouts: SeqGAN Monte-Carlo completions per step (``0`` = plain returns-to-go).
            ``Q_t`` is the mean sequence reward of ``mc_rollouts`` completions of the session
            to the horizon; use with sequence-level reward models.
        maxent: EB-SeqGAN's maximum-entropy objective: reward ``r_t - alpha log pi(a_t|s_t)``.
        alpha: temperature of ``maxent``.
        exclude_seen: never recommend an item already in the history window.
        normalize_advantages: divide advantages by their standard deviation.
        ppo_epochs: ``0``: one REINFORCE step per rollout; ``k >= 1``: ``k`` steps of PPO's
            clipped surrogate on each rollout (the MLE term is not used;
            :func:`agents.pg_losses.clipped_surrogate_loss`).
        clip_ratio: PPO's ``eps``: ratios are clipped to ``[1 - eps, 1 + eps]``.
        kl_coef: weight of a penalty ``KL(pi || pi_ref)`` per rollout state, ``pi_ref`` the
            policy as it was when the trainer was built (:meth:`PolicyGradientTrainer.
            set_reference` moves it): keeps a learned-reward run near its MLE start.
    """

    n_steps: int = 10
    batch_size: int = 256
    gamma: float = 1.0
    baseline: Baseline = "batch_mean"
    entropy_coef: float = 0.0
    max_grad_norm: float | None = 1.0
    lr: float = 1e-3
    mle_coef: float = 0.0
    mc_rollouts: int = 0
    maxent: bool = False
    alpha: float = 0.01
    exclude_seen: bool = False
    normalize_advantages: bool = False
    ppo_epochs: int = 0
    clip_ratio: float = 0.2
    kl_coef: float = 0.0

    def __post_init__(self) -> None:
        check_float(self, "clip_ratio", positive=True)
        if self.ppo_epochs and self.mle_coef:
            raise ValueError("PGConfig.mle_coef is a REINFORCE term: set it to 0 with ppo_epochs")
        for name, low in (("n_steps", 1), ("batch_size", 1), ("mc_rollouts", 0), ("ppo_epochs", 0)):
            check_int(self, name, low)
        for name in (
            "gamma",
            "entropy_coef",
            "mle_coef",
            "alpha",
            "lr",
            "max_grad_norm",
            "kl_coef",
        ):
            positive = name in ("lr", "max_grad_norm")
            check_float(self, name, positive=positive, optional=name == "max_grad_norm")
        if self.gamma > 1.0:
            raise ValueError(f"PGConfig.gamma must be in [0, 1]; got {self.gamma!r}")
        if self.baseline not in BASELINES:
            raise ValueError(f"PGConfig.baseline must be one of {BASELINES}; got {self.baseline!r}")
        if self.baseline == "leave_one_out" and self.batch_size < 2:
            raise ValueError("PGConfig.baseline='leave_one_out' needs batch_size >= 2")
        for name in ("maxent", "exclude_seen", "normalize_advantages"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"PGConfig.{name} must be a bool; got {getattr(self, name)!r}")


class Rollout(NamedTuple):
    """One episode of ``T`` steps for ``B`` sessions (tensors on the env's device).

    Attributes:
        histories: ``(T, B, L)`` the left-padded history each action was chosen for.
        actions: ``(T, B)`` recommended items.
        rewards: ``(T, B)`` rewards from the env's reward function.
        true_items: ``(T, B)`` the user's logged next item at each step (``0`` if none); at
            step 0 the history is a real prefix, so ``true_items[0]`` is its real next item.
        log_probs: ``(T, B)`` ``log pi(a_t | s_t)`` at sampling time (no gradient).
        users: ``(B,)`` user of each session.
    """

    histories: Tensor
    actions: Tensor
    rewards: Tensor
    true_items: Tensor
    log_probs: Tensor
    users: Tensor

    def sequences(self) -> Tensor:
        """``(T, B, L)`` histories *after* each action (the sequences a reward model scored)."""
        return torch.cat([self.histories[..., 1:], self.actions.unsqueeze(-1)], dim=-1)


@torch.no_grad()
def collect_rollouts(
    env: BatchedRecEnv,
    policy: SequencePolicy,
    generator: torch.Generator | None,
    *,
    n_steps: int | None = None,
    seed: int | None = None,
    exclude_seen: bool = False,
) -> Rollout:
    """Reset every session of ``env`` and run the policy (sampling, eval mode) for ``n_steps``.

    Args:
        env: the batched env; use ``EnvConfig(start="random")`` to start from real prefixes.
        policy: the sampling policy, on ``env.device``.
        generator: draws the actions (a ``torch.Generator`` on ``env.device``).
        n_steps: steps ``T`` (default and maximum: the env's horizon).
        seed: reseeds the env's reset generator (``None`` continues its stream).
        exclude_seen: mask the items of each history window.

    Returns:
        The :class:`Rollout`.
    """
    horizon = env.config.horizon
    n_steps = horizon if n_steps is None else n_steps
    if not isinstance(n_steps, int) or not 1 <= n_steps <= horizon:
        raise ValueError(f"n_steps must be an int in [1, horizon={horizon}]; got {n_steps!r}")
    if policy.device != env.device:
        raise ValueError(f"the policy is on {policy.device} but the env is on {env.device}")
    env.reset(seed=seed)
    users = env.state.user
    steps: list[tuple[Tensor, ...]] = []
    with evaluating(policy):
        for _ in range(n_steps):
            state = env.state
            log_probs = next_log_probs(policy, state.history, exclude_seen=exclude_seen)
            action = sample_items(log_probs, generator)
            _, reward, _, _, _ = env.step(action)
            logp = log_probs.gather(1, action.unsqueeze(1)).squeeze(1)
            steps.append((state.history, action, reward.float(), state.target, logp))
    histories, actions, rewards, true_items, log_probs = (
        torch.stack(x) for x in zip(*steps, strict=True)
    )
    return Rollout(histories, actions, rewards, true_items, log_probs, users)


# ----------------------------------------------------------------------------- returns
def returns_to_go(rewards: Tensor, gamma: float = 1.0) -> Tensor:
    """``G_t = sum_{k >= t} gamma^(k - t) r_k`` of ``(T, B)`` rewards, ``(T, B)``.

    >>> returns_to_go(torch.tensor([[1.0], [0.0], [2.0]]), gamma=0.5).flatten().tolist()
    [1.5, 1.0, 2.0]
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (T, B); got shape {tuple(rewards.shape)}")
    out = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):  # T is the short horizon, not the users
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def baselines(returns: Tensor, kind: Baseline = "batch_mean") -> Tensor:
    """Per-step baselines ``(T, B)`` of ``(T, B)`` returns.

    ``"batch_mean"``: the batch mean at each step. ``"leave_one_out"``: the mean over the other
    ``B - 1`` sessions (independent of the session's own action, so the gradient stays
    unbiased). ``"none"``: zeros.
    """
    if returns.dim() != 2:
        raise ValueError(f"returns must be (T, B); got shape {tuple(returns.shape)}")
    if kind == "none":
        return torch.zeros_like(returns)
    if kind == "batch_mean":
        return returns.mean(dim=1, keepdim=True).expand_as(returns)
    if kind == "leave_one_out":
        b = returns.shape[1]
        if b < 2:
            raise ValueError("the leave_one_out baseline needs at least 2 sessions")
        return (returns.sum(dim=1, keepdim=True) - returns) / (b - 1)
    raise ValueError(f"baseline must be one of {BASELINES}; got {kind!r}")


@torch.no_grad()
def mc_q_values(
    policy: SequencePolicy,
    reward_model: object,
    histories: Tensor,
    actions: Tensor,
    *,
    n_rollouts: int,
    horizon: int,
    generator: torch.Generator | None,
    exclude_seen: bool = False,
) -> Tensor:
    """SeqGAN Monte-Carlo Q-values ``(T, B)`` of a sequence-level reward.

    ``Q_t`` is the mean reward of ``n_rollouts`` completions of ``s_t + a_t`` to ``horizon``
    actions, sampled from ``policy``; at the last step (``t = horizon - 1``) there is nothing to
    complete and ``Q_t`` is the reward of the sequence itself. All steps and completions run as
    one batch of ``T * n_rollouts * B`` rows: at completion step ``k`` only rows of steps
    ``t < horizon - k`` are still active, and those are a prefix of the (step-major) batch.

    Args:
        policy: completes the sequences (eval mode).
        reward_model: a ``RewardModel`` (its ``.reward(history)``) or a callable
            ``history (N, L) -> (N,)``: the reward of a finished sequence.
        histories: ``(T, B, L)`` states; actions: ``(T, B)`` the actions taken in them.
        n_rollouts: completions per step (``>= 1``).
        horizon: total actions of a finished sequence (``>= T``).
        generator: draws the completions.
        exclude_seen: mask seen items when completing.
    """
    score = getattr(reward_model, "reward", reward_model)
    if not callable(score):
        raise TypeError(
            f"reward_model must have .reward(history) or be callable; got {reward_model!r}"
        )
    t_len, b, length = histories.shape
    if not isinstance(n_rollouts, int) or n_rollouts < 1 or horizon < t_len:
        raise ValueError(
            f"need n_rollouts >= 1 and horizon >= T={t_len}; got {n_rollouts!r}, {horizon!r}"
        )
    sequences = torch.cat([histories[..., 1:], actions.unsqueeze(-1)], dim=-1)  # (T, B, L)
    n_mc = min(t_len, horizon - 1)  # steps with something left to complete
    rows = sequences[:n_mc].unsqueeze(1).expand(n_mc, n_rollouts, b, length).reshape(-1, length)
    with evaluating(policy):
        for k in range(1, horizon):
            active = min(n_mc, horizon - k) * n_rollouts * b
            if active <= 0:
                break
            log_probs = next_log_probs(policy, rows[:active], exclude_seen=exclude_seen)
            item = sample_items(log_probs, generator)
            rows[:active] = torch.cat([rows[:active, 1:], item.unsqueeze(1)], dim=1)
    q = score(rows).float().view(n_mc, n_rollouts, b).mean(dim=1)
    if n_mc < t_len:  # the final step: its own sequence, no completion
        q = torch.cat([q, score(sequences[n_mc:].reshape(-1, length)).float().view(-1, b)])
    return q


# ----------------------------------------------------------------------------- the loss
# ----------------------------------------------------------------------------- the trainer
class PolicyGradientTrainer:
    """REINFORCE updates of a policy on rollouts of a batched env.

    Every random draw of an update (env resets, actions, completions, dropout) follows the
    trainer's own ``generator``; dropout draws from the global torch RNG inside a fork seeded
    from it, so the caller's global stream is untouched and :meth:`state_dict` (optimiser,
    generator, counter) is all it takes to resume exactly.

    Args:
        policy: the policy to train; moved to ``device``.
        env: the batched env (reward function included); must live on ``device``.
        config: the settings (default ``PGConfig(batch_size=env.batch_size)``).
        device: where everything runs.
        seed: seed of the trainer's generator.
        reward_model: the sequence reward of ``mc_rollouts``; default the env's reward function.
        distributed: data-parallel over the initialised process group (``None`` = when one
            with more than one rank is): the env is restricted to this rank's disjoint share of
            its users (:func:`agents.distributed.rl.shard_env`), each rank rolls out its own
            ``batch_size`` sessions with its own generator, DDP all-reduces the gradients and
            the metrics are the ranks' mean (baselines and advantage normalisation stay per
            rank). Not with ``kl_coef > 0``.
    """

    def __init__(
        self,
        policy: SequencePolicy,
        env: BatchedRecEnv,
        config: PGConfig | None = None,
        *,
        device: torch.device | str = "cpu",
        seed: int = 0,
        reward_model: object | None = None,
        distributed: bool | None = None,
    ) -> None:
        config = PGConfig(batch_size=env.batch_size) if config is None else config
        if not isinstance(config, PGConfig):
            raise TypeError(f"config must be a PGConfig; got {type(config).__name__}")
        if not isinstance(policy, SequencePolicy):
            raise TypeError(f"policy must be an agents.SequencePolicy; got {type(policy).__name__}")
        self.device = resolve_device(device)
        if env.device.type != self.device.type:
            raise ValueError(f"the env is on {env.device} but device={self.device}")
        if config.batch_size != env.batch_size or config.n_steps > env.config.horizon:
            raise ValueError(
                f"PGConfig(batch_size={config.batch_size}, n_steps={config.n_steps}) must match "
                f"the env (batch_size={env.batch_size}, horizon={env.config.horizon} >= n_steps)"
            )
        self.reward_model = env.reward_fn if reward_model is None else reward_model
        if config.mc_rollouts and not hasattr(self.reward_model, "reward"):
            raise ValueError("mc_rollouts > 0 needs a reward_model with .reward(history)")
        self.policy, self.env, self.config = policy.to(env.device), env, config
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
        self.distributed = ddp.is_distributed() if distributed is None else bool(distributed)
        self._loss_policy = self._setup_distributed(seed) if self.distributed else policy
        seed = ddp.rank_seed(seed) if self.distributed else seed
        self.generator = torch.Generator(device=env.device).manual_seed(int(seed))
        self.n_updates = 0
        self.last_rollout: Rollout | None = None
        self.last_advantages: Tensor | None = None
        self.reference: SequencePolicy | None = None  # the KL penalty's frozen reference
        if config.kl_coef > 0:
            self.reference = copy.deepcopy(policy).eval().requires_grad_(False)

    def _setup_distributed(self, seed: int) -> DDPPolicyView:
        if not ddp.is_distributed():
            raise ValueError("distributed=True needs an initialised process group with more "
                             "than one rank (agents.distributed.init_distributed)")  # fmt: skip
        if self.config.kl_coef > 0:
            raise ValueError("PolicyGradientTrainer(distributed=True) does not support "
                             f"kl_coef > 0 yet; got kl_coef={self.config.kl_coef}")  # fmt: skip
        ddp.check_same_config(self.config, what="PGConfig")
        shard_env(self.env, seed=int(seed))
        return DDPPolicyView(self.policy, self.device)

    def step(self) -> dict[str, float]:
        """Collect one rollout and take one gradient step; returns float metrics (under
        ``distributed``, the mean over ranks)."""
        c, seed = self.config, draw_seed(self.generator)
        with forked_global_rng(seed, self.env.device):
            rollout = collect_rollouts(
                self.env, self.policy, self.generator, n_steps=c.n_steps, seed=seed,
                exclude_seen=c.exclude_seen,
            )  # fmt: skip
            returns = self.returns(rollout)
            advantages = returns - baselines(returns, c.baseline)
            if c.normalize_advantages:
                advantages = advantages / (advantages.std() + 1e-8)
            metrics, grad_norm = self._update(rollout, advantages)
        self.n_updates += 1
        self.last_rollout, self.last_advantages = rollout, advantages
        metrics.update(
            {
                "policy/grad_norm": float(grad_norm),
                "policy/return": float(returns[0].mean()),
                "reward/mean": float(rollout.rewards.mean()),
                "reward/std": float(rollout.rewards.std()) if rollout.rewards.numel() > 1 else 0.0,
            }
        )
        return ddp.all_reduce_mean_metrics(metrics) if self.distributed else metrics

    def _update(self, rollout: Rollout, advantages: Tensor) -> tuple[dict[str, float], Tensor]:
        """One REINFORCE step, or ``ppo_epochs`` clipped-surrogate steps, on one rollout."""
        c = self.config
        norm = math.inf if c.max_grad_norm is None else c.max_grad_norm
        for _ in range(max(c.ppo_epochs, 1)):
            if c.ppo_epochs:
                with evaluating(self.policy):  # the rollout's log-probs were taken in eval mode
                    loss, metrics = clipped_surrogate_loss(
                        self._loss_policy, rollout, advantages, clip_ratio=c.clip_ratio,
                        entropy_coef=c.entropy_coef, exclude_seen=c.exclude_seen,
                    )  # fmt: skip
            else:
                self.policy.train()
                loss, metrics = policy_gradient_loss(
                    self._loss_policy, rollout, advantages, entropy_coef=c.entropy_coef,
                    mle_coef=c.mle_coef, exclude_seen=c.exclude_seen,
                )  # fmt: skip
            if self.reference is not None:
                kl = kl_to_reference(self.policy, self.reference, rollout.histories,
                                     exclude_seen=c.exclude_seen)  # fmt: skip
                loss = loss + c.kl_coef * kl
                metrics["policy/kl_to_reference"] = float(kl.detach())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(self.policy.parameters(), norm)
            self.optimizer.step()
        return metrics, grad_norm

    def gradient_snr(self, n_chunks: int = 8) -> float:
        """:func:`agents.pg_losses.gradient_snr` of the last rollout at the current weights
        (``nan`` before the first :meth:`step`); changes no weight, gradient or generator."""
        if self.last_rollout is None or self.last_advantages is None:
            return float("nan")
        return gradient_snr(
            self.policy, self.last_rollout, self.last_advantages, n_chunks=n_chunks,
            entropy_coef=self.config.entropy_coef, exclude_seen=self.config.exclude_seen,
        )  # fmt: skip

    def set_reference(self, state: dict[str, Tensor] | None = None) -> None:
        """Make ``state`` (default: the policy's current weights) the KL penalty's reference."""
        if self.reference is not None:
            self.reference.load_state_dict(self.policy.state_dict() if state is None else state)

    def returns(self, rollout: Rollout) -> Tensor:
        """``(T, B)`` returns: returns-to-go or MC Q-values, plus the MaxEnt term."""
        c = self.config
        bonus = -c.alpha * rollout.log_probs if c.maxent else torch.zeros_like(rollout.rewards)
        if not c.mc_rollouts:
            return returns_to_go(rollout.rewards + bonus, c.gamma)
        q = mc_q_values(
            self.policy, self.reward_model, rollout.histories, rollout.actions,
            n_rollouts=c.mc_rollouts, horizon=c.n_steps, generator=self.generator,
            exclude_seen=c.exclude_seen,
        )  # fmt: skip
        return q + returns_to_go(bonus, c.gamma)

    def state_dict(self) -> dict:
        """Optimiser state, generator state and update counter (``weights_only``-loadable)."""
        state = {
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "n_updates": self.n_updates,
        }
        if self.reference is not None:
            state["reference"] = self.reference.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.n_updates = int(state["n_updates"])
        if self.reference is not None and "reference" in state:
            self.reference.load_state_dict(state["reference"])
