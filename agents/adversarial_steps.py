"""The parts of an adversarial round: policy negatives, one reward-model step, validation.

:class:`agents.adversarial.AdversarialTrainer` composes these; they are public so a custom loop
(a notebook, an SB3 callback) can reuse exactly the same steps.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from agents.actions import next_log_probs, sample_continuations
from agents.checkpoint import forked_global_rng
from agents.policy import SequencePolicy
from agents.quality import catalogue_coverage
from recgym._checks import check_n_items
from recgym._torch_io import evaluating
from recgym.env import BatchedRecEnv
from recgym.env_config import EnvConfig
from recgym.splits import Split
from rewards.base import RewardModel
from rewards.negatives import ContinuationSampler, real_sequences
from rewards.wrappers import DifferenceReward, RewardFormWrapper, uses_model


@runtime_checkable
class GeneratorAlgorithm(Protocol):
    """What the adversarial loop needs of a generator update (imitation's ``gen_algo``).

    :class:`agents.reinforce.PolicyGradientTrainer` (REINFORCE / PPO on a ``BatchedRecEnv``
    that rewards with the reward model) and :class:`agents.weighted_mle.WeightedMLEGenerator`
    (MFGAN's official update) are two; any object with these members plugs in.

    Attributes:
        policy: the :class:`SequencePolicy` it trains (the loop's negatives come from it).
    """

    policy: SequencePolicy

    def step(self) -> dict[str, float]:
        """One generator update; returns float metrics (logged per round, averaged)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs besides the policy weights (``weights_only``)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        ...


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


class GreedyTopKNegatives:
    """The official MFGAN fakes: each real sequence with its last item replaced by each of the
    policy's greedy top-``k`` next items (never the real one, nor a seen one with
    ``exclude_seen``), ``k`` fakes per real, grouped by real: ``(B * k, L)``.

    The reward models' losses average each class on its own, so ``k`` sets how many fakes a
    real sequence is judged against, not the classes' weights.
    """

    def __init__(self, policy: SequencePolicy, k: int, *, exclude_seen: bool) -> None:
        self.policy, self.k, self.exclude_seen = policy, k, exclude_seen

    @torch.no_grad()
    def sample(self, real: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``(B * k, L)`` fakes of ``(B, L)`` real sequences (deterministic: no draw)."""
        prefix = real[:, :-1]
        with evaluating(self.policy):
            log_pi = next_log_probs(self.policy, prefix, exclude_seen=self.exclude_seen)
        log_pi = log_pi.scatter(1, real[:, -1:], float("-inf"))  # a fake is never the real item
        top = log_pi.topk(self.k, dim=1).indices  # (B, k)
        return torch.cat([prefix.repeat_interleave(self.k, 0), top.reshape(-1, 1)], dim=1)


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


# ----------------------------------------------------------------------------- loop health
def heldout_reals(split: Split, max_len: int, n: int, *, seed: int, device: torch.device) -> Tensor:
    """``(n', L)`` real sequences the reward model never trains on, ``n' = min(n, n_users)``.

    Each is a user's history followed by the user's *validation* item: the reward model trains on
    train-segment sequences only, so none of these rows is in its training data. A seeded draw
    of users, fixed for the whole run.
    """
    pool = real_sequences(split, max_len, stage="valid", device=device)
    rows = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n]
    return pool[rows.to(device)]


def heldout_metrics(
    reward_model: RewardModel, heldout: Tensor, sampler: Any, *, seed: int
) -> dict[str, float]:
    """AUC and accuracy of the reward model on the held-out reals vs the policy's fakes of them.

    The fakes are redrawn with the same seed every call (the same ``k``, the same noise), so
    from round to round only the policy and the reward model change, not the sample.
    """
    generator = torch.Generator(device=heldout.device).manual_seed(seed)
    with forked_global_rng(seed, heldout.device):
        fakes = sampler.sample(heldout, generator)
    metrics = reward_model.evaluate(heldout, fakes)
    return {"disc/heldout_auc": metrics["disc/auc"],
            "disc/heldout_accuracy": metrics["disc/accuracy"]}  # fmt: skip


@torch.no_grad()
def policy_drift(
    policy: SequencePolicy,
    start: dict[str, Tensor],
    start_policy: SequencePolicy,
    histories: Tensor,
    *,
    exclude_seen: bool,
) -> dict[str, float]:
    """How far the policy has moved from its start: weights, next-item distributions, entropy.

    Args:
        policy: the policy now.
        start: its ``state_dict`` when the rounds began.
        start_policy: a frozen copy holding ``start``.
        histories: ``(B, L)`` windows the distributions are compared on.
        exclude_seen: mask seen items as the rollouts do.

    Returns:
        ``policy/rel_change`` (``||theta - theta_0|| / ||theta_0||``), ``policy/kl_from_start``
        (mean ``KL(pi || pi_0)``), ``policy/heldout_entropy`` (mean entropy of ``pi``), in nats,
        and ``policy/top1_coverage`` (catalogue share of the greedy items: in every mode, as
        weighted MLE makes no rollouts).
    """
    now = policy.state_dict()
    # one host sync for the whole model, not two per parameter tensor
    moved = torch.stack([(now[k].double() - v.double()).square().sum() for k, v in start.items()])
    scale = torch.stack([v.double().square().sum() for v in start.values()])
    moved, scale = (float(x) for x in torch.stack([moved.sum(), scale.sum()]))
    with evaluating(policy), evaluating(start_policy):
        logp = next_log_probs(policy, histories, exclude_seen=exclude_seen)
        logq = next_log_probs(start_policy, histories, exclude_seen=exclude_seen)
    p = logp.exp()
    kl = torch.where(p > 0, p * (logp - logq), torch.zeros_like(p)).sum(1)
    entropy = -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(1)
    return {
        "policy/rel_change": (moved / max(scale, 1e-30)) ** 0.5,
        "policy/kl_from_start": float(kl.mean()),
        "policy/heldout_entropy": float(entropy.mean()),
        "policy/top1_coverage": catalogue_coverage(logp.argmax(1), policy.n_items),
    }


def discriminator_health(auc: float, *, chance: float, saturated: float) -> str | None:
    """A warning text when a held-out AUC says the discriminator stopped being informative."""
    if auc < chance:
        return (
            f"held-out discriminator AUC {auc:.3f} < {chance}: the reward model is at or below "
            "chance and its rewards carry no signal (raise d_steps or disc_lr)"
        )
    if auc > saturated:
        return (f"held-out discriminator AUC {auc:.3f} > {saturated}: the reward model saturates "
                "and its gradients vanish (lower d_steps or disc_lr)")  # fmt: skip
    return None


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


def reward_env(
    split: Split, reward_model: RewardModel, config: Any, *, device: torch.device
) -> BatchedRecEnv:
    """The policy gradient's env of an :class:`AdversarialConfig`: real prefixes of training
    sequences, rewarded by ``reward_model`` read by ``reward_form`` and ``reward_shaping``."""
    c = config
    reward_fn: Any = (
        reward_model if c.reward_form is None else RewardFormWrapper(reward_model, c.reward_form)
    )
    if c.reward_shaping == "difference":
        reward_fn = DifferenceReward(reward_fn)
    env_config = EnvConfig(max_len=c.max_len, horizon=c.horizon, stage="train", start="random")
    return BatchedRecEnv(split, reward_fn, env_config, batch_size=c.rollout_batch_size,
                         device=device, seed=c.seed)  # fmt: skip


def check_env(env: Any, reward_model: RewardModel, config: Any) -> BatchedRecEnv:
    """A user's env for the loop: a ``BatchedRecEnv`` rewarding with ``reward_model``."""
    if not isinstance(env, BatchedRecEnv):
        raise TypeError(f"env must be a recgym BatchedRecEnv; got {type(env).__name__}")
    if config.reward_form is not None or config.reward_shaping != "none":
        raise ValueError(
            "an env passed to AdversarialTrainer brings its own reward: leave reward_form=None "
            f"and reward_shaping='none' (got {config.reward_form!r}, "
            f"{config.reward_shaping!r}) and wrap the reward model in the env instead"
        )
    if not uses_model(env.reward_fn, reward_model):
        raise ValueError(
            f"the env rewards with {env.reward_fn!r}, not with the trainer's reward model: "
            "build it with reward_fn=reward_model (or a wrapper of it)"
        )
    return env


def check_gen_algo(gen_algo: Any, policy: SequencePolicy, config: Any) -> Any:
    """``gen_algo`` checked to be a :class:`GeneratorAlgorithm` of ``policy`` (``None`` passes)."""
    if gen_algo is None:
        return None
    if not isinstance(gen_algo, GeneratorAlgorithm):
        raise TypeError(
            "gen_algo must have policy, step(), state_dict() and load_state_dict() (an "
            f"agents.GeneratorAlgorithm); got {type(gen_algo).__name__}"
        )
    if gen_algo.policy is not policy:
        raise ValueError("gen_algo must train the trainer's own policy (gen_algo.policy)")
    if config.generator_update != "policy_gradient":
        raise ValueError(
            "gen_algo replaces the config's generator_update: leave it at its default "
            f"'policy_gradient'; got {config.generator_update!r}"
        )
    return gen_algo
