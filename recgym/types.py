"""The contracts shared by every layer: the batched session state and the reward-function protocol.

``rewards`` and ``agents`` build on these types; the environment never names a reward class, it
calls any object satisfying :class:`RewardFn`.

Conventions: item ids are ``1..n_items`` and ``0`` is padding. Histories are *left*-padded, so
the newest item of every row is always in the last column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

PAD = 0
"""The padding item id. It is never a valid action and never a real item."""


@dataclass(frozen=True)
class SessionState:
    """The batched state of B user sessions, all tensors on one device.

    Attributes:
        history: ``(B, L)`` int64 item ids, left-padded with ``0``; the newest item is
            ``history[:, -1]``. ``L`` is the environment's ``max_len``: older items fall off.
        length: ``(B,)`` int64 number of real (non-padding) items in ``history`` (``<= L``).
        user: ``(B,)`` int64 dataset user index of each session.
        step: ``(B,)`` int64 number of actions taken since the session's reset.
        target: ``(B,)`` int64 the user's true next item in the logged sequence at this step,
            ``0`` when the real sequence has no next item (or it lies outside the split).
    """

    history: Tensor
    length: Tensor
    user: Tensor
    step: Tensor
    target: Tensor

    @property
    def batch_size(self) -> int:
        """Number of sessions B."""
        return int(self.history.shape[0])

    @property
    def max_len(self) -> int:
        """History window L."""
        return int(self.history.shape[1])

    @property
    def device(self) -> torch.device:
        """The device every tensor of the state lives on."""
        return self.history.device

    def index(self, rows: Tensor) -> SessionState:
        """Return the sub-batch selected by ``rows`` (a ``(B,)`` bool mask or ``(K,)`` indices)."""
        return SessionState(
            history=self.history[rows],
            length=self.length[rows],
            user=self.user[rows],
            step=self.step[rows],
            target=self.target[rows],
        )


class RewardOutput(NamedTuple):
    """A reward with an optional per-part breakdown.

    Attributes:
        reward: ``(B,)`` float rewards.
        breakdown: name -> ``(B,)`` float tensor, e.g. one entry per item factor of a
            multi-factor discriminator. Empty when the reward has no parts.
    """

    reward: Tensor
    breakdown: dict[str, Tensor]


@runtime_checkable
class RewardFn(Protocol):
    """Anything that rewards a batch of recommendations.

    Called once per environment step for the whole batch, *before* the transition: ``state`` is
    the history the recommendation was made for and ``action`` the recommended items.

    Args:
        state: the batched :class:`SessionState` before the action is appended.
        action: ``(B,)`` int64 item ids in ``1..n_items``, on ``state.device``.

    Returns:
        ``(B,)`` float tensor of finite rewards on ``state.device``, or a :class:`RewardOutput`
        (also accepted: a ``(reward, breakdown)`` tuple).
    """

    def __call__(self, state: SessionState, action: Tensor) -> Tensor | RewardOutput: ...


@runtime_checkable
class Recommender(Protocol):
    """Anything that scores every item as the next one for a batch of users.

    ``recgym.evaluate`` ranks with it; sequential models use ``history``, user-embedding models
    (MF-BPR) use ``user``.

    Args:
        history: ``(B, L)`` int64 left-padded histories (``0`` = padding).
        user: ``(B,)`` int64 dataset user indices.

    Returns:
        ``(B, n_items + 1)`` float scores; column ``0`` (padding) is ignored.

    An optional class attribute ``padding_invariant = True`` declares that dropping
    all-padding columns from the left of ``history`` changes no score; ``recgym.evaluate`` then
    scores short histories in trimmed chunks (``recgym.length_chunks``), which on sparse
    data skips most of the window.
    """

    def score(self, history: Tensor, user: Tensor) -> Tensor:
        """``(B, n_items + 1)`` scores of ``(B, L)`` histories and ``(B,)`` users."""
        ...


def append_items(history: Tensor, length: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
    """Append one item to each left-padded history (the deterministic transition).

    Args:
        history: ``(B, L)`` int64 left-padded histories.
        length: ``(B,)`` int64 real lengths.
        items: ``(B,)`` int64 items to append.

    Returns:
        ``(history', length')``: the window shifted left by one with ``items`` in the last
        column, and ``min(length + 1, L)``.

    >>> history, length = append_items(torch.tensor([[0, 5, 7]]), torch.tensor([2]),
    ...                                torch.tensor([9]))
    >>> history.tolist(), length.tolist()
    ([[5, 7, 9]], [3])
    """
    new_history = torch.cat([history[:, 1:], items.to(history.dtype).unsqueeze(1)], dim=1)
    new_length = torch.clamp(length + 1, max=history.shape[1])
    return new_history, new_length


def as_reward_output(out: Tensor | RewardOutput | tuple) -> RewardOutput:
    """Normalise a reward function's return value to a :class:`RewardOutput`.

    Raises:
        TypeError: a tuple that is not ``(reward, breakdown mapping or None)``.
    """
    if isinstance(out, RewardOutput):
        return out
    if isinstance(out, tuple):
        if len(out) != 2 or not (out[1] is None or isinstance(out[1], Mapping)):
            kinds = [type(x).__name__ for x in out]
            raise TypeError(
                "a reward function returns a (B,) tensor, a RewardOutput or a (reward, "
                f"breakdown dict) pair; got a tuple of {kinds}"
            )
        return RewardOutput(out[0], dict(out[1] or {}))
    return RewardOutput(out, {})
