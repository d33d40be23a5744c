"""stable-baselines3 integration: sequence-encoder features extractors and a reward-model callback.

**Features extractors.** recgym observations are ``Box(0, n_items, (max_len,), int64)``
left-padded histories, which SB3 hands to the network as *float* tensors. The extractors here
turn them back into item ids (exactly: ids below ``2**24`` are exact in float32, and non-integer
values raise) and return a :class:`~agents.policy.SequencePolicy` encoder's state at the newest
position, ``(B, D)``. SB3's actor and critic heads sit on top::

    PPO("MlpPolicy", venv, policy_kwargs={
        "features_extractor_class": SASRecFeaturesExtractor,
        "features_extractor_kwargs": {"config": SASRecConfig(dim=32)},
    })

**Adversarial rewards.** :class:`RewardModelCallback` trains a learned reward model (a
``rewards.RewardModel``) on the sequences the agent generates: after every N rollouts it
appends each buffered action (item = action + 1) to its observation, samples as many real
sequences, and calls ``reward_model.update(real, fake)``. The environment must reward with the
*same* object, so the updated rewards take effect at the next rollout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import Tensor

from agents.policy import SequencePolicy
from recgym._checks import check_positive_int
from recgym.gym_env import action_to_item
from recgym.types import append_items
from rewards.base import RewardModel
from rewards.wrappers import uses_model

FLOAT32_EXACT = 2**24
"""Item ids must stay below this to survive SB3's float32 observations exactly."""

RealSampler = Callable[[int, torch.Generator], Tensor]


# ---------------------------------------------------------------------- observations
def history_space_size(observation_space: spaces.Space) -> tuple[int, int]:
    """``(n_items, max_len)`` of a recgym history space ``Box(0, n_items, (max_len,))``."""
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        raise TypeError(
            "observation_space must be recgym's history space Box(0, n_items, (max_len,), "
            f"int64); got {observation_space!r}"
        )
    n_items = int(np.max(observation_space.high))
    if int(np.min(observation_space.low)) != 0 or n_items < 1:
        raise ValueError(
            "observation_space must span item ids [0, n_items] (0 = padding); "
            f"got {observation_space!r}"
        )
    return n_items, int(observation_space.shape[0])


def observations_to_history(observations: Tensor, n_items: int) -> Tensor:
    """SB3 observations ``(B, L)`` (float or int) -> ``(B, L)`` int64 item ids, checked.

    Raises:
        ValueError: not 2-D, not integral (e.g. a ``VecNormalize`` in between), or outside
            ``[0, n_items]``.
    """
    if observations.dim() != 2:
        raise ValueError(
            f"observations must be (B, max_len) histories; got shape {tuple(observations.shape)}"
        )
    history = observations.round().long()  # exact for ids < 2**24 (float32)
    if history.numel() == 0:
        return history
    integral = not observations.is_floating_point() or bool((history == observations).all())
    low, high = int(history.min()), int(history.max())
    if not integral or low < 0 or high > n_items:
        hint = "" if integral else " with non-integers (normalised? drop VecNormalize's norm_obs)"
        raise ValueError(
            f"observations must be item ids in [0, {n_items}] (0 = padding); got values in "
            f"[{float(observations.min())}, {float(observations.max())}]{hint}"
        )
    return history


# ---------------------------------------------------------------------- features extractors
class PolicyFeaturesExtractor(BaseFeaturesExtractor):
    """Features = a :class:`SequencePolicy`'s encoder state at the newest position, ``(B, D)``.

    Args:
        observation_space: recgym's ``Box(0, n_items, (max_len,), int64)``.
        policy: the encoder; its ``n_items`` must match the space and its ``max_len`` must be
            at least the space's (it is trained by the SB3 algorithm's optimiser).
    """

    def __init__(self, observation_space: spaces.Box, *, policy: SequencePolicy) -> None:
        n_items, max_len = history_space_size(observation_space)
        if not isinstance(policy, SequencePolicy):
            raise TypeError(f"policy must be an agents SequencePolicy; got {type(policy).__name__}")
        if policy.n_items != n_items or policy.max_len < max_len:
            raise ValueError(
                f"the policy (n_items={policy.n_items}, max_len={policy.max_len}) does not fit "
                f"the observations (n_items={n_items}, max_len={max_len}): build it with "
                f"n_items={n_items} and max_len >= {max_len}"
            )
        if n_items >= FLOAT32_EXACT:
            raise ValueError(
                f"n_items={n_items} >= 2**24: ids are not exact in SB3's float32 observations"
            )
        super().__init__(observation_space, features_dim=policy.item_embedding.embedding_dim)
        self.policy = policy
        self.n_items = n_items

    def forward(self, observations: Tensor) -> Tensor:
        """``(B, max_len)`` float observations -> ``(B, D)`` newest-position states."""
        history = observations_to_history(observations, self.n_items)
        return self.policy.encode(history)[:, -1]


class SASRecFeaturesExtractor(PolicyFeaturesExtractor):
    """A SASRec encoder (``agents.sasrec``) as SB3 features extractor.

    Args:
        observation_space: recgym's history space.
        config: a ``SASRecConfig``; ``None`` = defaults with ``max_len`` of the space.
        n_items: catalogue size; ``None`` = read from the space.
    """

    def __init__(
        self, observation_space: spaces.Box, *, config: Any = None, n_items: int | None = None
    ) -> None:
        from agents.sasrec import SASRecConfig, SASRecPolicy

        policy = _build_policy(observation_space, SASRecPolicy, SASRecConfig, config, n_items)
        super().__init__(observation_space, policy=policy)


class GRUFeaturesExtractor(PolicyFeaturesExtractor):
    """A GRU4Rec encoder (``agents.gru``) as SB3 features extractor.

    Args:
        observation_space: recgym's history space.
        config: a ``GRUConfig``; ``None`` = defaults with ``max_len`` of the space.
        n_items: catalogue size; ``None`` = read from the space.
    """

    def __init__(
        self, observation_space: spaces.Box, *, config: Any = None, n_items: int | None = None
    ) -> None:
        from agents.gru import GRUConfig, GRUPolicy

        policy = _build_policy(observation_space, GRUPolicy, GRUConfig, config, n_items)
        super().__init__(observation_space, policy=policy)


def _build_policy(
    observation_space: spaces.Box,
    policy_cls: type[SequencePolicy],
    config_cls: type,
    config: Any,
    n_items: int | None,
) -> SequencePolicy:
    space_items, max_len = history_space_size(observation_space)
    if n_items is not None and n_items != space_items:
        raise ValueError(
            f"n_items={n_items} does not match the observation space's n_items={space_items}"
        )
    if config is None:
        config = config_cls(max_len=max_len)
    if not isinstance(config, config_cls):
        raise TypeError(f"config must be a {config_cls.__name__}; got {type(config).__name__}")
    return policy_cls(config, n_items=space_items)


# ---------------------------------------------------------------------- reward-model callback
class RewardModelCallback(BaseCallback):
    """Train a learned reward model on the agent's rollouts (adversarial / GAIL-style training).

    After every ``update_every_n_rollouts`` rollouts of an on-policy algorithm (PPO, A2C), the
    generated sequences are the buffered observations with their actions appended (item =
    action + 1, :func:`recgym.action_to_item`). ``n_updates`` times, ``batch_size`` of them and
    ``batch_size`` real sequences go through ``reward_model.update(real, fake)``; the mean
    metrics are logged as ``disc/...`` (``disc/loss``, ``disc/auc``, ``disc/accuracy`` ...).

    The environment must reward with this very ``reward_model`` (directly or through reward
    wrappers), so that its new weights change the rewards of the next rollout; this is checked
    at the start of training when the environment exposes its reward function.

    Args:
        reward_model: the ``rewards.RewardModel`` to train (with its own optimiser).
        real_sampler: real sequences: a ``(N, L')`` int64 tensor to sample rows from (e.g.
            ``rewards.real_sequences(split, max_len)``), or a callable
            ``(n, generator) -> (n, L')``. Rows are cut or left-padded to the observation width.
        batch_size: real and generated sequences per update.
        n_updates: discriminator updates per training round.
        update_every_n_rollouts: rollouts between training rounds.
        seed: seeds the generator of the minibatch draws.
        verbose: ``1`` prints the metrics after every round.

    Attributes:
        n_rounds: training rounds done so far.
        last_metrics: the mean metrics of the latest round.
    """

    def __init__(
        self,
        reward_model: RewardModel,
        *,
        real_sampler: Tensor | RealSampler,
        batch_size: int = 256,
        n_updates: int = 1,
        update_every_n_rollouts: int = 1,
        seed: int = 0,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if not isinstance(reward_model, RewardModel):
            raise TypeError(
                f"reward_model must be a rewards.RewardModel; got {type(reward_model).__name__}"
            )
        for name, value in (
            ("batch_size", batch_size),
            ("n_updates", n_updates),
            ("update_every_n_rollouts", update_every_n_rollouts),
        ):
            check_positive_int(name, value)
        if isinstance(real_sampler, Tensor):
            reward_model.check_history(real_sampler.to(reward_model.device))
            if len(real_sampler) == 0:
                raise ValueError("real_sampler holds no sequences; got shape (0, L)")
        elif not callable(real_sampler):
            raise TypeError(
                "real_sampler must be a (N, L) int64 tensor of real sequences or a callable "
                f"(n, generator) -> (n, L); got {type(real_sampler).__name__}"
            )
        self.reward_model = reward_model
        self.real_sampler = real_sampler
        self.batch_size, self.n_updates = batch_size, n_updates
        self.update_every_n_rollouts = update_every_n_rollouts
        self.seed = seed
        self.n_rollouts = 0
        self.n_rounds = 0
        self.last_metrics: dict[str, float] = {}
        self._generator: torch.Generator | None = None

    def _init_callback(self) -> None:
        if getattr(self.model, "rollout_buffer", None) is None:
            raise TypeError(
                f"RewardModelCallback needs an on-policy algorithm with a rollout buffer (PPO, "
                f"A2C); got {type(self.model).__name__}"
            )
        device = self.reward_model.device
        self._generator = torch.Generator(device=device).manual_seed(self.seed)
        if isinstance(self.real_sampler, Tensor):  # moved once, not every round
            self.real_sampler = self.real_sampler.to(device)
        for reward_fn in _env_reward_fns(self.training_env):
            if not uses_model(reward_fn, self.reward_model):
                raise ValueError(
                    f"the environment rewards with {reward_fn!r}, not with this callback's "
                    "reward model: build the env with reward_fn=reward_model so that the "
                    "updated rewards take effect"
                )

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.n_rollouts += 1
        if self.n_rollouts % self.update_every_n_rollouts:
            return
        fake_pool = self.generated_sequences()
        sums: dict[str, float] = {}
        for _ in range(self.n_updates):
            pick = torch.randint(
                len(fake_pool), (self.batch_size,), generator=self._generator,
                device=fake_pool.device,
            )  # fmt: skip
            real = self.sample_real(self.batch_size, fake_pool.shape[1])
            for key, value in self.reward_model.update(real, fake_pool[pick]).items():
                sums[key] = sums.get(key, 0.0) + float(value)
        self.n_rounds += 1
        self.last_metrics = {key: value / self.n_updates for key, value in sums.items()}
        for key, value in self.last_metrics.items():
            self.logger.record(key if key.startswith("disc/") else f"disc/{key}", value)
        self.logger.record("disc/rounds", self.n_rounds)
        if self.verbose:
            shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(self.last_metrics.items()))
            print(f"RewardModelCallback round {self.n_rounds}: {shown}")

    def generated_sequences(self) -> Tensor:
        """``(n_steps * n_envs, L)`` buffered observations with their actions' items appended."""
        buffer = self.model.rollout_buffer
        device = self.reward_model.device
        obs = torch.as_tensor(buffer.observations, device=device)
        obs = obs.reshape(-1, obs.shape[-1])
        history = observations_to_history(obs, self.reward_model.n_items)
        actions = np.asarray(buffer.actions).reshape(-1).astype(np.int64)
        items = torch.as_tensor(action_to_item(actions), device=device)
        fake, _ = append_items(history, (history > 0).sum(1), items)
        return fake

    def sample_real(self, n: int, width: int) -> Tensor:
        """``(n, width)`` real sequences from :attr:`real_sampler` (cut or left-padded)."""
        device = self.reward_model.device
        if isinstance(self.real_sampler, Tensor):
            pool = self.real_sampler
            pick = torch.randint(len(pool), (n,), generator=self._generator, device=device)
            real = pool.to(device)[pick]  # a no-op after _init_callback
        else:
            real = self.real_sampler(n, self._generator)
            if not isinstance(real, Tensor) or real.dim() != 2 or real.shape[0] != n:
                got = tuple(real.shape) if isinstance(real, Tensor) else type(real).__name__
                raise ValueError(f"real_sampler must return a ({n}, L) int64 tensor; got {got}")
            real = real.to(device)
        if real.shape[1] >= width:
            return real[:, real.shape[1] - width :]
        return torch.nn.functional.pad(real, (width - real.shape[1], 0))


def _env_reward_fns(venv: Any) -> list[Any]:
    """The reward functions of a VecEnv's recgym cores, or ``[]`` when they are not reachable."""
    while hasattr(venv, "venv"):  # VecEnvWrapper chain (VecMonitor, VecNormalize ...)
        venv = venv.venv
    core = getattr(venv, "env", None)
    if core is not None and hasattr(core, "reward_fn"):  # recgym.sb3.SB3VecEnv
        return [core.reward_fn]
    try:
        cores = venv.get_attr("core")  # DummyVecEnv over recgym.NextItemEnv
    except Exception:  # noqa: BLE001 - not a recgym env: nothing to check
        return []
    return [c.reward_fn for c in cores if hasattr(c, "reward_fn")]
