"""Gymnasium shells over :class:`recgym.env.BatchedRecEnv`: type conversion only, no dynamics.

**Action mapping.** Gymnasium/SB3 actions are ``Discrete(n_items)`` indices ``0..n_items - 1``
and the recommended item is ``action + 1`` (:func:`action_to_item`): SB3 samples ``Discrete``
from 0 and ignores ``start``, so this keeps item 0 (padding) unreachable.

**Observations** are the ``(max_len,)`` left-padded int64 histories in
``Box(0, n_items, (max_len,), int64)`` (``0`` = padding). A ``MultiDiscrete`` space would be
one-hot encoded by SB3 into ``max_len * (n_items + 1)`` inputs.

``register_envs()`` registers ``"recgym/NextItem-v0"`` for ``gymnasium.make`` (the single env)
and ``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")`` (the batched one).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from recgym.env import BatchedRecEnv
from recgym.env_config import EnvConfig
from recgym.errors import NotResetError
from recgym.reference import HitReward
from recgym.splits import Split, leave_one_out
from recgym.types import RewardFn

ENV_ID = "recgym/NextItem-v0"


def action_to_item(action: Any) -> Any:
    """Gymnasium action index(es) ``0..n_items - 1`` -> item id(s) ``1..n_items``."""
    return action + 1


def item_to_action(item: Any) -> Any:
    """Item id(s) ``1..n_items`` -> Gymnasium action index(es) ``0..n_items - 1``."""
    return item - 1


def observation_space(n_items: int, max_len: int) -> spaces.Box:
    """``Box(0, n_items, (max_len,), int64)``: one left-padded history."""
    return spaces.Box(0, n_items, (max_len,), np.int64)


def _default_core_args(
    split: Split | None, reward_fn: RewardFn | None, device: torch.device | str
) -> tuple[Split, RewardFn]:
    if split is None:
        from recgym.synthetic import make_synthetic  # lazy: only the default needs it

        split = leave_one_out(make_synthetic(device=device).dataset)
    return split, HitReward() if reward_fn is None else reward_fn


def _pinned_users(options: dict[str, Any] | None, n: int) -> np.ndarray | None:
    """``options["user"]`` as ``(n,)`` int64 user indices, or ``None`` when not pinned.

    Raises:
        TypeError: not integers (a string, a float such as ``2.9``, a bool).
        ValueError: not ``n`` of them.
    """
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"options must be a dict or None; got {type(options).__name__}")
    if not options or options.get("user") is None:
        return None
    value = options["user"]
    users = np.asarray(value)
    if users.dtype == bool or not np.issubdtype(users.dtype, np.integer):
        raise TypeError(
            f"options['user'] must be {'an int' if n == 1 else f'{n} ints'} (dataset user "
            f"indices); got {value!r} of dtype {users.dtype}"
        )
    if users.size != n:
        raise ValueError(
            f"options['user'] must hold {n} user index(es), one per session; got {users.size}"
        )
    return users.astype(np.int64).reshape(n)


def _check_render_mode(render_mode: str | None, modes: list[str]) -> None:
    if render_mode is not None and render_mode not in modes:
        raise ValueError(f"render_mode must be None or one of {modes}; got {render_mode!r}")


def _history_text(history: np.ndarray, user: int, step: int, horizon: int, nxt: int) -> str:
    items = " ".join(str(i) for i in history[history > 0][-10:])
    more = "... " if (history > 0).sum() > 10 else ""
    return f"user {user} step {step}/{horizon}: [{more}{items}] next logged item: {nxt or '-'}"


class NextItemEnv(gym.Env[np.ndarray, np.int64]):
    """One next-item recommendation session (B = 1 over :class:`BatchedRecEnv`).

    ## Observation
    ``Box(0, n_items, (max_len,), int64)``: the user's last ``max_len`` items, left-padded
    with 0.

    ## Action
    ``Discrete(n_items)``; the recommended item is ``action + 1`` (see :func:`action_to_item`).

    ## Reward
    ``reward_fn(state, item)`` (default :class:`recgym.reference.HitReward`).

    ## Episode end
    Never terminated (a user can always get one more recommendation); truncated after
    ``config.horizon`` steps.

    ## Reset options
    ``{"user": u}`` pins the user (else uniform over users that can start).

    ## Info
    ``user``, ``step``, ``true_item`` (the logged item at the position just filled, 0 if
    none), ``next_true_item`` and ``reward/<name>`` per reward-breakdown entry.

    Args:
        split: users and their train/valid/test boundaries; ``None`` uses the embedded synthetic
            dataset (``recgym.synthetic.make_synthetic``) with a leave-one-out split.
        reward_fn: any :class:`recgym.types.RewardFn`; ``None`` = ``HitReward()``.
        config: :class:`recgym.env.EnvConfig` (default ``EnvConfig()``).
        device: torch device of the core.
        render_mode: ``None`` or ``"ansi"`` (a one-line text of the history).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        split: Split | None = None,
        reward_fn: RewardFn | None = None,
        config: EnvConfig | None = None,
        *,
        device: torch.device | str = "cpu",
        render_mode: str | None = None,
    ) -> None:
        _check_render_mode(render_mode, self.metadata["render_modes"])
        split, reward_fn = _default_core_args(split, reward_fn, device)
        self.core = BatchedRecEnv(split, reward_fn, config, batch_size=1, device=device)
        self.render_mode = render_mode
        self.observation_space = observation_space(self.core.n_items, self.core.max_len)
        self.action_space = spaces.Discrete(self.core.n_items)
        self._obs: np.ndarray | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a session; ``options={"user": u}`` pins the user."""
        super().reset(seed=seed)
        obs, info = self.core.reset(seed=seed, users=_pinned_users(options, 1))
        return self._observe(obs), _scalar_info(info)

    def step(self, action: int | np.integer) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Recommend item ``action + 1``."""
        if self._obs is None:
            raise NotResetError("call reset() before step()")
        if not self.action_space.contains(action):
            n = self.core.n_items
            raise ValueError(
                f"action must be an int in [0, {n - 1}] (Discrete({n}); the recommended item "
                f"is action + 1); got {action!r}"
            )
        item = torch.tensor([action_to_item(int(action))], device=self.core.device)
        obs, reward, terminated, truncated, info = self.core.step(item)
        return (
            self._observe(obs),
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            _scalar_info(info),
        )

    def render(self) -> str | None:
        """``"ansi"``: a one-line text of the current session; otherwise ``None``."""
        if self.render_mode != "ansi" or self._obs is None:
            return None
        s = self.core.sessions
        return _history_text(
            self._obs, int(s.user[0]), int(s.step[0]), self.core.config.horizon, int(s.target[0])
        )

    def _observe(self, obs: torch.Tensor) -> np.ndarray:
        # A copy: the core's tensors must not be mutated through the returned array.
        self._obs = obs[0].cpu().numpy().copy()
        return self._obs.copy()


def _scalar_info(info: dict[str, torch.Tensor]) -> dict[str, Any]:
    return {key: value[0].item() for key, value in info.items()}


class NextItemVectorEnv(VectorEnv):
    """``num_envs`` sessions in one :class:`BatchedRecEnv`, with numpy in and out.

    Spaces, actions (``item = action + 1``), rewards and info keys are those of
    :class:`NextItemEnv`, batched. Autoreset is ``AutoresetMode.NEXT_STEP`` (Gymnasium's
    default): a session that ended on the previous step is restarted by the next ``step``,
    whose action for it is ignored and whose reward is 0. Info values are ``(num_envs,)``
    arrays with ``"_<key>"`` masks; the ``reward/*`` masks are false on restarted rows.

    Args:
        split, reward_fn, config, device, render_mode: as for :class:`NextItemEnv`.
        num_envs: number of sessions B.
    """

    metadata = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        split: Split | None = None,
        reward_fn: RewardFn | None = None,
        config: EnvConfig | None = None,
        *,
        num_envs: int = 1,
        device: torch.device | str = "cpu",
        render_mode: str | None = None,
    ) -> None:
        _check_render_mode(render_mode, self.metadata["render_modes"])
        split, reward_fn = _default_core_args(split, reward_fn, device)
        self.core = BatchedRecEnv(split, reward_fn, config, batch_size=num_envs, device=device)
        self.num_envs = self.core.batch_size
        self.render_mode = render_mode
        self.single_observation_space = observation_space(self.core.n_items, self.core.max_len)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.single_action_space = spaces.Discrete(self.core.n_items)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._autoreset: torch.Tensor | None = None
        self._all = np.ones(self.num_envs, dtype=bool)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Restart all sessions; ``options={"user": (num_envs,) array}`` pins the users."""
        super().reset(seed=seed)
        obs, info = self.core.reset(seed=seed, users=_pinned_users(options, self.num_envs))
        self._autoreset = torch.zeros(self.num_envs, dtype=torch.bool, device=self.core.device)
        return _numpy(obs), self._vector_info(info, None)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Recommend items ``actions + 1``; restarts sessions that ended on the last step."""
        if self._autoreset is None:
            raise NotResetError("call reset() before step()")
        items = torch.from_numpy(action_to_item(self._check_actions(actions))).to(self.core.device)
        obs, reward, terminated, truncated, info = self.core.step(items)
        restarted = self._autoreset
        if bool(restarted.any()):
            obs, reset_info = self.core.reset_where(restarted)
            info.update(reset_info)
            keep = ~restarted
            reward = torch.where(keep, reward, 0.0)
            terminated, truncated = terminated & keep, truncated & keep
        self._autoreset = terminated | truncated
        info = self._vector_info(info, ~restarted)
        return _numpy(obs), _numpy(reward), _numpy(terminated), _numpy(truncated), info

    def render(self) -> tuple[str, ...] | None:
        """``"ansi"``: one line per session; otherwise ``None``."""
        if self.render_mode != "ansi" or self._autoreset is None:
            return None
        s, horizon = self.core.sessions, self.core.config.horizon
        history, user, step, target = (_numpy(t) for t in (s.history, s.user, s.step, s.target))
        return tuple(
            _history_text(history[i], int(user[i]), int(step[i]), horizon, int(target[i]))
            for i in range(self.num_envs)
        )

    def _check_actions(self, actions: Any) -> np.ndarray:
        array = np.asarray(actions)
        n, b = self.core.n_items, self.num_envs
        if array.shape != (b,) or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"actions must be {b} integer actions in [0, {n - 1}] (shape ({b},); item = "
                f"action + 1); got shape {array.shape}, dtype {array.dtype}"
            )
        if array.size and (array.min() < 0 or array.max() >= n):
            raise ValueError(
                f"actions must lie in [0, {n - 1}] (Discrete({n}); item = action + 1); got "
                f"values in [{array.min()}, {array.max()}]"
            )
        return array.astype(np.int64, copy=False)

    def _vector_info(self, info: dict[str, torch.Tensor], stepped: torch.Tensor | None) -> dict:
        out: dict[str, Any] = {}
        mask = None if stepped is None else _numpy(stepped)
        for key, value in info.items():
            out[key] = _numpy(value)
            is_reward_part = key.startswith("reward/") and mask is not None
            out[f"_{key}"] = mask.copy() if is_reward_part else self._all.copy()
        return out


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    # Always a fresh array: on CPU .numpy() would alias the core's state.
    return tensor.detach().cpu().numpy().copy()


def register_envs() -> None:
    """Register ``"recgym/NextItem-v0"`` with Gymnasium (idempotent).

    ``gymnasium.make(ENV_ID, split=..., reward_fn=..., config=...)`` builds a
    :class:`NextItemEnv`; ``gymnasium.make_vec(ENV_ID, num_envs=N,
    vectorization_mode="vector_entry_point", ...)`` a :class:`NextItemVectorEnv`.
    """
    if ENV_ID in gym.registry:
        return
    gym.register(
        id=ENV_ID,
        entry_point="recgym.gym_env:NextItemEnv",
        vector_entry_point="recgym.gym_env:NextItemVectorEnv",
    )
