"""The batched next-item environment: B user sessions stepped at once as tensors on one device.

State = each user's left-padded item history, action = the recommended next item, transition =
the item is appended (deterministic). Randomness only enters at reset (which user, and for
``start="random"`` where in the user's real sequence the session starts), through the env's own
``torch.Generator``.

The dynamics are pure tensor functions (``recgym.dynamics``: ``start_sessions``, ``advance``,
``replace_rows``) that treat every row independently, so a batched step equals B single
steps by construction. The Gymnasium and SB3 shells in ``recgym.gym_env``/``recgym.sb3`` only
convert types around :class:`BatchedRecEnv`.

There are no terminal states: a user can always be recommended one more item, so
``terminated`` is always ``False`` and episodes end by truncation after ``horizon`` steps.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor

from recgym._checks import is_int
from recgym.device import resolve_device
from recgym.dynamics import Sessions, advance, replace_rows, start_sessions, start_table
from recgym.env_config import EnvConfig
from recgym.errors import NotResetError, RewardError
from recgym.splits import Split
from recgym.types import RewardFn, SessionState, as_reward_output


# ----------------------------------------------------------------------------- the environment
class BatchedRecEnv:
    """B next-item recommendation sessions over a split, stepped together on ``device``.

    Example::

        env = BatchedRecEnv(split, HitReward(), EnvConfig(horizon=5), batch_size=256)
        obs, info = env.reset(seed=0)  # obs: (256, max_len) int64
        action = torch.randint(1, env.n_items + 1, (256,))
        obs, reward, terminated, truncated, info = env.step(action)
        obs, info = env.reset_where(truncated)  # autoreset the finished sessions

    Returned tensors are shared with the env's state (no copies, for speed): do not modify
    them in place.

    Args:
        split: the users' sequences and their train/valid/test boundaries.
        reward_fn: any :class:`recgym.types.RewardFn`; called once per step for the batch.
        config: start/end settings (default ``EnvConfig()``).
        batch_size: number of sessions B.
        device: where every tensor lives (CUDA requested but absent raises).
        seed: seed of the env's generator; ``None`` seeds it non-deterministically.

    Raises:
        ValueError: no user can start a session with this split and config.
    """

    def __init__(
        self,
        split: Split,
        reward_fn: RewardFn,
        config: EnvConfig | None = None,
        *,
        batch_size: int,
        device: torch.device | str = "cpu",
        seed: int | None = None,
    ) -> None:
        if not isinstance(split, Split):
            raise TypeError(f"split must be a recgym.Split; got {type(split).__name__}")
        if not callable(reward_fn):
            raise TypeError(f"reward_fn must be callable (a RewardFn); got {reward_fn!r}")
        self.config = EnvConfig() if config is None else config
        if not isinstance(self.config, EnvConfig):
            raise TypeError(f"config must be an EnvConfig; got {type(config).__name__}")
        if not is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
        self.split = split
        self.reward_fn = reward_fn
        self.batch_size = int(batch_size)
        self.device = _canonical(resolve_device(device))
        self._items, self._offsets = split.dataset.tensors(self.device)
        self._table = start_table(split, self.config, self.device)
        if len(self._table.eligible_users) == 0:
            raise ValueError(
                f"no user of {split!r} can start a session with start={self.config.start!r}, "
                f"stage={self.config.stage!r}: each needs {self._table.requirement}. Use another "
                "start mode, a smaller start_len/min_start_len, or another split."
            )
        self._generator = torch.Generator(device=self.device)
        self._seed(seed)
        self._sessions: Sessions | None = None
        self._true_item: Tensor | None = None

    # ------------------------------------------------------------------ properties
    @property
    def n_items(self) -> int:
        """Number of real items; actions are ids in ``1..n_items``."""
        return self.split.dataset.n_items

    @property
    def n_users(self) -> int:
        """Number of users in the dataset (eligible or not)."""
        return self.split.dataset.n_users

    @property
    def max_len(self) -> int:
        """History window ``L``."""
        return self.config.max_len

    @property
    def eligible_users(self) -> Tensor:
        """``(n_eligible,)`` users that can start a session under this config."""
        return self._table.eligible_users

    @property
    def sessions(self) -> Sessions:
        """The full session state (including cursors); raises before ``reset()``."""
        if self._sessions is None:
            raise NotResetError("call reset() before step(); the env has no sessions yet")
        return self._sessions

    @property
    def state(self) -> SessionState:
        """The :class:`SessionState` a reward function sees at the current step."""
        s = self.sessions
        return SessionState(
            history=s.history, length=s.length, user=s.user, step=s.step, target=s.target
        )

    # ------------------------------------------------------------------ reset
    def reset(
        self, *, seed: int | None = None, users: Tensor | np.ndarray | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Start B new sessions.

        Args:
            seed: reseeds the env's generator; ``None`` continues its stream (Gymnasium).
            users: ``(B,)`` user indices to pin; default draws uniformly from eligible users.

        Returns:
            ``(obs, info)``: ``obs`` the ``(B, L)`` histories, ``info`` dict of ``(B,)``
            tensors ``"user"``, ``"step"``, ``"true_item"`` (0) and ``"next_true_item"``.

        Raises:
            ValueError: ``users`` has the wrong shape, or names an unknown or ineligible user.
        """
        if seed is not None:
            self._seed(seed)
        pinned = None if users is None else self._check_users(users)
        self._sessions = self._fresh_sessions(pinned, self.batch_size)
        self._true_item = torch.zeros_like(self._sessions.user)
        return self._sessions.history, self._info()

    def reset_where(self, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Restart only the sessions where ``mask`` is true (autoreset); others are unchanged.

        Only the K restarted rows draw from the generator and gather histories, so steps where
        no session ended cost one host sync and nothing else.

        Args:
            mask: ``(B,)`` bool tensor on the env's device.

        Returns:
            ``(obs, info)`` for all B sessions, as :meth:`reset` (``true_item`` is 0 on reset
            rows and the last step's logged item elsewhere).
        """
        old = self.sessions
        shape = (self.batch_size,)
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != shape:
            got = f"{type(mask).__name__} {getattr(mask, 'dtype', '')}"
            got += f" of shape {tuple(getattr(mask, 'shape', ()))}"
            raise ValueError(f"mask must be a bool tensor of shape {shape}; got {got}")
        if mask.device != self.device:
            raise ValueError(f"mask is on {mask.device} but the env is on {self.device}")
        rows = torch.nonzero(mask).squeeze(1)  # (K,)
        if len(rows):
            self._sessions = replace_rows(old, rows, self._fresh_sessions(None, len(rows)))
            self._true_item = self._true_item.index_fill(0, rows, 0)
        return self._sessions.history, self._info()

    # ------------------------------------------------------------------ step
    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """Recommend one item per session, reward it, append it.

        Args:
            action: ``(B,)`` int64 item ids in ``1..n_items`` on the env's device.

        Returns:
            ``(obs, reward, terminated, truncated, info)``: ``(B, L)`` histories after the
            append, ``(B,)`` float rewards, ``(B,)`` bool (always false: no terminal states),
            ``(B,)`` bool ``step >= horizon``, and a dict of ``(B,)`` tensors: ``"user"``,
            ``"step"``, ``"true_item"`` (logged item at the position just filled, 0 if none),
            ``"next_true_item"``, plus ``"reward/<name>"`` per reward-breakdown entry.

        Raises:
            NotResetError: called before :meth:`reset`.
            TypeError, ValueError: ``action`` has the wrong type, dtype, shape, device or ids.
            RewardError: the reward function returned an invalid reward.
        """
        sessions = self.sessions
        self._check_action(action)
        state = self.state
        before = _fields_of(state, clone=True) if self.config.check_rewards else None
        with torch.no_grad():  # rewards are constants for the policy update
            out = self.reward_fn(state, action)
        if before is not None:
            self._check_unchanged(state, before)
        reward, breakdown = self._check_reward(out)
        self._sessions = advance(sessions, action, self._items)
        self._true_item = sessions.target
        truncated = self._sessions.step >= self.config.horizon
        info = self._info()
        for name, value in breakdown.items():
            info[f"reward/{name}"] = value
        return self._sessions.history, reward, torch.zeros_like(truncated), truncated, info

    # ------------------------------------------------------------------ helpers
    def _seed(self, seed: int | None) -> None:
        if seed is None:
            self._generator.seed()  # OS entropy; never the global torch RNG
            return
        if not is_int(seed) or seed < 0:
            raise TypeError(f"seed must be a non-negative int or None; got {seed!r}")
        self._generator.manual_seed(int(seed))

    def _fresh_sessions(self, users: Tensor | None, n_sessions: int) -> Sessions:
        table, shape = self._table, (n_sessions,)
        if users is None:
            n = len(table.eligible_users)
            pick = torch.randint(n, shape, generator=self._generator, device=self.device)
            users = table.eligible_users[pick]
        cuts = table.lo[users]
        if self.config.start == "random":
            u = torch.rand(
                shape, generator=self._generator, device=self.device, dtype=torch.float64
            )
            cuts = cuts + (u * table.span[users]).long()
        return start_sessions(
            self._items, self._offsets, users, cuts, table.end[users], self.config.max_len
        )

    def _check_users(self, users: Tensor | np.ndarray) -> Tensor:
        array = np.asarray(users.cpu() if isinstance(users, Tensor) else users)
        if array.shape != (self.batch_size,) or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"users must be {self.batch_size} integer user indices (shape "
                f"({self.batch_size},)); got shape {array.shape}, dtype {array.dtype}"
            )
        bad = (array < 0) | (array >= self.n_users)
        if bad.any():
            raise ValueError(
                f"user {int(array[bad][0])} is not a user index in [0, {self.n_users - 1}]"
            )
        ineligible = ~self._table.eligible[array]
        if ineligible.any():
            u = int(array[ineligible][0])
            raise ValueError(
                f"user {u} cannot start a session with start={self.config.start!r} on "
                f"stage={self.config.stage!r}: it has {self._visible(u)} visible item(s) and "
                f"needs {self._table.requirement}"
            )
        return torch.as_tensor(array, dtype=torch.int64, device=self.device)

    def _visible(self, user: int) -> int:
        return int(self._table.end[user]) - int(self.split.dataset.offsets[user])

    def _check_action(self, action: Tensor) -> None:
        b, n = self.batch_size, self.n_items
        expected = f"action must have shape ({b},) and item ids in [1, {n}]"
        if not isinstance(action, Tensor):
            raise TypeError(f"{expected} as a torch.Tensor; got {type(action).__name__}")
        if action.shape != (b,):
            raise ValueError(f"{expected}; got shape {tuple(action.shape)}")
        if action.dtype != torch.int64:
            raise TypeError(f"{expected} with dtype torch.int64; got dtype {action.dtype}")
        if action.device != self.device:
            raise ValueError(
                f"{expected} on the env's device {self.device}; got device {action.device}"
            )
        low, high = torch.aminmax(action)
        low, high = int(low), int(high)
        if low < 1 or high > n:
            raise ValueError(f"{expected} (0 is padding); got ids in [{low}, {high}]")

    def _check_unchanged(self, state: SessionState, before: dict[str, Tensor]) -> None:
        """A reward function that writes into the state would corrupt the sessions silently."""
        now = _fields_of(state, clone=False)
        changed = [name for name, then in before.items() if not torch.equal(now[name], then)]
        if changed:
            fn = getattr(self.reward_fn, "__name__", type(self.reward_fn).__name__)
            raise RewardError(
                f"reward function {fn} wrote into the state it was given ({changed}); reward "
                "functions must not modify it: work on a copy (state.history.clone())"
            )

    def _check_reward(self, out: object) -> tuple[Tensor, dict[str, Tensor]]:
        try:
            reward, breakdown = as_reward_output(out)
        except TypeError as err:
            raise RewardError(str(err)) from err
        if not self.config.check_rewards:
            return reward, breakdown
        for name, value in [("reward", reward), *breakdown.items()]:
            problem = self._reward_problem(value)
            if problem:
                fn = getattr(self.reward_fn, "__name__", type(self.reward_fn).__name__)
                part = "" if name == "reward" else f" (breakdown entry {name!r})"
                raise RewardError(
                    f"reward function {fn} returned {problem}{part}; expected a finite float "
                    f"tensor of shape ({self.batch_size},) on {self.device}"
                )
        return reward, breakdown

    def _reward_problem(self, value: object) -> str | None:
        if not isinstance(value, Tensor):
            return f"a {type(value).__name__}, not a tensor"
        if value.shape != (self.batch_size,):
            return f"shape {tuple(value.shape)}"
        if not value.dtype.is_floating_point:
            return f"dtype {value.dtype}"
        if value.device != self.device:
            return f"a tensor on {value.device}"
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            rows = torch.nonzero(~finite).flatten()
            first = int(rows[0])
            return f"{len(rows)} non-finite value(s), e.g. {float(value[first])} in row {first}"
        return None

    def _info(self) -> dict[str, Tensor]:
        s = self._sessions
        return {
            "user": s.user,
            "step": s.step,
            "true_item": self._true_item,
            "next_true_item": s.target,
        }

    def __repr__(self) -> str:
        c = self.config
        return (
            f"BatchedRecEnv(dataset={self.split.dataset.name!r}, batch_size={self.batch_size}, "
            f"n_items={self.n_items}, max_len={c.max_len}, horizon={c.horizon}, "
            f"stage={c.stage!r}, start={c.start!r}, device={str(self.device)!r})"
        )


def _canonical(device: torch.device) -> torch.device:
    # Tensors on "cuda" report "cuda:0"; pin the index so device comparisons are exact.
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _fields_of(state: SessionState, *, clone: bool) -> dict[str, Tensor]:
    """The state's tensors by field name (cloned: a snapshot to compare against)."""
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    return {k: v.clone() for k, v in fields.items()} if clone else fields
