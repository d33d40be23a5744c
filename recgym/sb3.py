"""A stable-baselines3 ``VecEnv`` directly over :class:`recgym.env.BatchedRecEnv`.

SB3's own ``DummyVecEnv`` steps N Python envs one by one; this adapter steps all sessions in
one batched call, so PPO/A2C can collect from thousands of sessions. It follows SB3's
conventions: same-step autoreset, the final observation in ``infos[i]["terminal_observation"]``
and ``infos[i]["TimeLimit.truncated"]``. Actions are ``Discrete(n_items)`` indices and the
recommended item is ``action + 1`` (as in :mod:`recgym.gym_env`).

Importing this module imports stable_baselines3; the rest of recgym does not need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from recgym.env import BatchedRecEnv
from recgym.errors import NotResetError
from recgym.gym_env import action_to_item, observation_space


class SB3VecEnv(VecEnv):
    """SB3 view of a :class:`BatchedRecEnv`: ``num_envs = env.batch_size``, numpy in and out.

    Seeds set with ``seed()`` and options set with ``set_options({"user": (B,) array})`` are
    used at the next ``reset()``. ``infos`` are per-session dicts (SB3's API), holding only the
    autoreset keys on finished sessions; the batched core info of the last step (``(B,)``
    tensors: user, step, true_item, next_true_item, reward parts) is in :attr:`last_info`.

    Example::

        venv = SB3VecEnv(BatchedRecEnv(split, HitReward(), batch_size=1024))
        PPO("MlpPolicy", venv, n_steps=32).learn(100_000)

    Args:
        env: the batched core; its device can be CUDA (observations are copied to numpy).
    """

    render_mode: str | None = None

    def __init__(self, env: BatchedRecEnv) -> None:
        if not isinstance(env, BatchedRecEnv):
            raise TypeError(f"env must be a recgym BatchedRecEnv; got {type(env).__name__}")
        self.env = env
        self._actions: np.ndarray | None = None
        self._reset_done = False
        self.last_info: dict[str, torch.Tensor] = {}
        super().__init__(
            env.batch_size,
            observation_space(env.n_items, env.max_len),
            spaces.Discrete(env.n_items),
        )

    def reset(self) -> np.ndarray:
        """Restart every session (with the pending seed/options, if any)."""
        seed, options = self._seeds[0], self._options[0]
        users = options.get("user") if options else None
        obs, self.last_info = self.env.reset(seed=seed, users=users)
        self._reset_seeds()
        self._reset_options()
        self._reset_done = True
        return _numpy(obs)

    def step_async(self, actions: np.ndarray) -> None:
        """Store ``(num_envs,)`` action indices for :meth:`step_wait`."""
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        """Step all sessions; restart the finished ones in the same call (SB3 convention)."""
        if not self._reset_done:
            raise NotResetError("call reset() before step()")
        if self._actions is None:
            raise RuntimeError("step_async(actions) must be called before step_wait()")
        actions, self._actions = self._actions, None
        items = self._to_items(actions)
        obs, reward, terminated, truncated, self.last_info = self.env.step(items)
        done = terminated | truncated
        obs_np, done_np = _numpy(obs), _numpy(done)
        # SB3's API is a list of per-env dicts; only finished sessions carry anything.
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done_np.any():
            time_limit = _numpy(truncated & ~terminated)
            for i in np.flatnonzero(done_np):
                infos[i]["terminal_observation"] = obs_np[i]
                infos[i]["TimeLimit.truncated"] = bool(time_limit[i])
            obs, reset_info = self.env.reset_where(done)
            self.last_info.update(reset_info)
            obs_np = _numpy(obs)
        return obs_np, _numpy(reward).astype(np.float32), done_np, infos

    def _to_items(self, actions: np.ndarray) -> torch.Tensor:
        n, b = self.env.n_items, self.num_envs
        actions = actions.reshape(-1) if actions.shape == (b, 1) else actions
        if actions.shape != (b,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(
                f"actions must be {b} integer actions in [0, {n - 1}] (item = action + 1); got "
                f"shape {actions.shape}, dtype {actions.dtype}"
            )
        items = torch.from_numpy(action_to_item(actions.astype(np.int64)))
        return items.to(self.env.device)

    def close(self) -> None:
        """Nothing to release."""

    # The core is one object, not num_envs sub-envs: attribute access is shared by all indices.
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """``getattr(core, attr_name)`` once per index (the adapter's own as fallback)."""
        target = self.env if hasattr(self.env, attr_name) else self
        value = getattr(target, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of the core (shared by every session)."""
        setattr(self.env, attr_name, value)

    def env_method(
        self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs
    ) -> list[Any]:
        """Call a core method once; its result is repeated per index."""
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        """The core is never wrapped by Gymnasium wrappers."""
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        """No image rendering."""
        return [None for _ in self._get_indices(None)]


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()
